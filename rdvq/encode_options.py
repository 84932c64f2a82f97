"""Encoder-side choices that are not part of a trained model.

One object travels from the CLI or the API down to the codec family and its entropy model. Each
model declares which options it supports (:attr:`IndexEntropyModel.options`) and refuses the
others, so asking a model for something it cannot do is a one-line error, not a silent no-op.
The options are declared once, here, as data (each field's help, short label and whether ``rdvq
eval`` sweeps it): the ``rdvq compress`` and ``rdvq eval`` flags, the setting labels and the
CSV/JSON columns all come from these fields.
Whatever a decoder needs to follow a choice (``top_k``, ``search_width``, the slice count, the completion mode and
its seed) is written into the file by the model that uses it; ``rdo_lambda`` changes only which
indices the encoder sends, so files made with it decode with the unchanged decoder.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

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

    top_k: int | None = field(default=None, metadata={
        "type": int, "label": "k", "sweep": True,
        "help": "bounded tail floor: model only the k most likely indices per position"})
    search_width: int | None = field(default=None, metadata={
        "type": int, "label": "W",
        "help": "with --top-k (HyperVQ): take the k candidates from about W codewords near each predicted mean, "
                "not from all (faster for large codebooks, costs some rate)"})
    slices: int | None = field(default=None, metadata={
        "type": int, "label": "T", "sweep": True,
        "help": "rate control: code only the first T slices, the decoder completes the rest (default: all)"})
    completion: Completion = field(default="argmax", metadata={
        "type": str, "label": "completion", "choices": COMPLETIONS,
        "help": "how the decoder completes uncoded slices (default: argmax)"})
    seed: int = field(default=0, metadata={"type": int, "label": "seed", "help": "seed of --completion sample, stored in the file"})
    rdo_lambda: float | None = field(default=None, metadata={
        "type": float, "label": "rdo", "sweep": True,
        "help": "entropy-constrained index selection (USQ: rounding; TCQ: the trellis Lagrangian): "
                "argmin distortion + L * bits instead of the nearest value"})

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

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser, sweep: bool = False) -> None:
        """One ``--flag`` per option; with ``sweep``, only the options ``rdvq eval`` sweeps, each
        taking several values (one point per value)."""
        for option in fields(EncodeOptions):
            meta = option.metadata
            if sweep and not meta.get("sweep"):
                continue
            extra: dict[str, Any] = {"nargs": "+"} if sweep else {"default": option.default}
            if "choices" in meta:
                extra["choices"] = meta["choices"]
            help_text = meta["help"] + (" (one point per value)" if sweep else "")
            parser.add_argument("--" + option.name.replace("_", "-"), type=meta["type"], help=help_text, **extra)

    @classmethod
    def from_arguments(cls, args: argparse.Namespace) -> "EncodeOptions":
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})

    @classmethod
    def sweep(cls, args: argparse.Namespace) -> list["EncodeOptions"]:
        """Every combination of the swept options' values (parsed with ``add_arguments(sweep=True)``)."""
        settings = [cls()]
        for option in fields(cls):
            if option.metadata.get("sweep"):
                values = getattr(args, option.name) or [option.default]
                settings = [replace(s, **{option.name: v}) for s in settings for v in values]
        return settings

    def label(self) -> str:
        """``T=8 rdo=0.5 k=64`` for the options set away from their defaults ("default": none)."""
        parts = [f"{f.metadata['label']}={getattr(self, f.name):g}" if isinstance(getattr(self, f.name), float)
                 else f"{f.metadata['label']}={getattr(self, f.name)}" for f in fields(self) if f.name in self.requested()]
        return " ".join(parts) or "default"

    def columns(self) -> dict[str, Any]:
        """Every option as a results column (None: not set, the model's default)."""
        return {f.name: getattr(self, f.name) if f.name in self.requested() else None for f in fields(self)}

    def requested(self) -> set[str]:
        """Names of the options set away from their defaults."""
        return {f.name for f in fields(self) if getattr(self, f.name) != f.default}

    def check_supported(self, supported: frozenset[str], owner: str) -> None:
        """Refuse options that ``owner`` (a model's name, for the message) does not implement."""
        unsupported = sorted(self.requested() - supported)
        if unsupported:
            flags = ", ".join("--" + name.replace("_", "-") for name in unsupported)
            raise ConfigError(f"{owner} does not support {flags}")
