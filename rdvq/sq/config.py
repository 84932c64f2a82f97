"""Configuration of the scalar-quantization codec: one dataclass, stored in every checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from rdvq.config_dict import DictConfig
from rdvq.errors import ConfigError

QUANTIZERS = ("usq", "tcq4", "tcq8")  # position = the model id files record


@dataclass
class ScalarCodecConfig(DictConfig):
    """A mean-scale hyperprior codec with scalar quantization of its latents.

    ``channels`` is the width of the transforms and of the hyper-latent, ``latent_channels`` the
    number of latent channels. ``quantizer``: ``usq`` rounds each latent around its predicted mean;
    ``tcq4`` / ``tcq8`` quantize with trellis-coded quantization over 4 or 8 states, choosing the
    indices by a Viterbi search that minimises ``(latent error)^2 + trellis_lambda * bits``
    (latent units; ``rdvq compress --rdo-lambda`` overrides it per file). ``trellis_lambda`` is
    used by the TCQ quantizers only.
    """

    section: ClassVar[str] = "codec (scalar quantization)"

    channels: int = 128
    latent_channels: int = 192
    quantizer: Literal["usq", "tcq4", "tcq8"] = "usq"
    trellis_lambda: float = 0.05

    def __post_init__(self) -> None:
        if self.channels < 1 or self.latent_channels < 2 or self.latent_channels % 2:
            raise ConfigError("codec: channels must be >= 1 and latent_channels an even number >= 2")
        if self.quantizer not in QUANTIZERS:
            raise ConfigError(f"codec: quantizer must be one of {', '.join(QUANTIZERS)}, got {self.quantizer!r}")
        if not self.trellis_lambda >= 0:
            raise ConfigError(f"codec: trellis_lambda must be >= 0, got {self.trellis_lambda}")

    @property
    def trellis_states(self) -> int | None:
        """4 or 8 for TCQ, None for rounding."""
        return None if self.quantizer == "usq" else int(self.quantizer[3:])

    @property
    def model_id(self) -> int:
        return QUANTIZERS.index(self.quantizer)
