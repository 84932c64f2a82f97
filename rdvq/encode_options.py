"""Encoder-side choices that are not part of a trained model.

One object travels from the CLI or the API down to the entropy model. Each model declares which
options it supports (:attr:`IndexEntropyModel.options`) and refuses the others, so asking a model
for something it cannot do is a one-line error, not a silent no-op. The options a decoder needs
(``top_k`` today) are written into the file by the model that uses them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from rdvq.errors import ConfigError


@dataclass(frozen=True)
class EncodeOptions:
    """``top_k``: bounded tail floor, only the ``top_k`` most likely indices of a position get
    modelled mass (None: every index is modelled)."""

    top_k: int | None = None

    def __post_init__(self) -> None:
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError(f"top_k must be >= 1, got {self.top_k}")

    def requested(self) -> set[str]:
        """Names of the options set away from their defaults."""
        return {f.name for f in fields(self) if getattr(self, f.name) != f.default}

    def check_supported(self, supported: frozenset[str], owner: str) -> None:
        """Refuse options that ``owner`` (a model's name, for the message) does not implement."""
        unsupported = sorted(self.requested() - supported)
        if unsupported:
            flags = ", ".join("--" + name.replace("_", "-") for name in unsupported)
            raise ConfigError(f"{owner} does not support {flags}")
