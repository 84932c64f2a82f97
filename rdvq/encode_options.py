"""Encoder-side choices that are not part of a trained model.

One object travels from the CLI or the API down to the codec family and its entropy model. Each
model declares which options it supports (:attr:`IndexEntropyModel.options`) and refuses the
others, so asking a model for something it cannot do is a one-line error, not a silent no-op.
Whatever a decoder needs to follow a choice (``top_k``, ``search_width``, the slice count, the completion mode and
its seed) is written into the file by the model that uses it; ``rdo_lambda`` changes only which
indices the encoder sends, so files made with it decode with the unchanged decoder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Literal

from rdvq.coding.candidate_search import check_search_width
from rdvq.errors import ConfigError

Completion = Literal["argmax", "sample"]
COMPLETIONS = ("argmax", "sample")
MAX_SEED = (1 << 32) - 1


@dataclass(frozen=True)
class EncodeOptions:
    """``top_k``: bounded tail floor, only the ``top_k`` most likely indices of a position get
    modelled mass (None: every index is modelled).

    ``slices``: test-time rate control, code only the first ``slices`` slices of a slice-ordered
    model and let the decoder complete the rest (None: all slices). ``completion``: how the rest is
    completed, the most likely index (``argmax``) or a draw from the model (``sample``) with the
    generator seeded by ``seed``, which the file records.

    ``rdo_lambda``: entropy-constrained index selection, each position takes
    ``argmin_k ||y - e_k||^2 + rdo_lambda * (-log2 q(k))`` instead of the nearest codeword
    (None: nearest codeword).
    """

    top_k: int | None = None
    search_width: int | None = None
    slices: int | None = None
    completion: Completion = "argmax"
    seed: int = 0
    rdo_lambda: float | None = None

    def __post_init__(self) -> None:
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError(f"top_k must be >= 1, got {self.top_k}")
        check_search_width(self.top_k, self.search_width)
        if self.slices is not None and self.slices < 1:
            raise ConfigError(f"slices must be >= 1, got {self.slices}")
        if self.completion not in COMPLETIONS:
            raise ConfigError(f"completion must be argmax or sample, got {self.completion!r}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"seed must be in [0, {MAX_SEED}], got {self.seed}")
        if self.rdo_lambda is not None and not (math.isfinite(self.rdo_lambda) and self.rdo_lambda >= 0):
            raise ConfigError(f"rdo_lambda must be a finite number >= 0, got {self.rdo_lambda}")

    def requested(self) -> set[str]:
        """Names of the options set away from their defaults."""
        return {f.name for f in fields(self) if getattr(self, f.name) != f.default}

    def check_supported(self, supported: frozenset[str], owner: str) -> None:
        """Refuse options that ``owner`` (a model's name, for the message) does not implement."""
        unsupported = sorted(self.requested() - supported)
        if unsupported:
            flags = ", ".join("--" + name.replace("_", "-") for name in unsupported)
            raise ConfigError(f"{owner} does not support {flags}")
