"""Entropy-model configuration and construction from a tokenizer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from rdvq.config_dict import DictConfig
from rdvq.entropy.base import IndexEntropyModel
from rdvq.entropy.hypervq import HyperVQModel
from rdvq.entropy.static_table import StaticTableModel
from rdvq.entropy.uniform import UniformModel
from rdvq.errors import ConfigError
from rdvq.tokenizer import Tokenizer


@dataclass
class EntropyModelConfig(DictConfig):
    """``kind`` picks the model; ``hyper_*`` and ``sigma`` apply to hypervq, ``smoothing`` to static
    (add-``smoothing`` counts so codes never seen in training stay codable)."""

    section: ClassVar[str] = "entropy_model"

    kind: Literal["uniform", "static", "hypervq"] = "hypervq"
    hyper_channels: int = 32
    hyper_hidden: int = 96
    sigma: Literal["scalar", "diagonal"] = "scalar"
    smoothing: float = 0.5

    def __post_init__(self) -> None:
        if self.kind not in ("uniform", "static", "hypervq"):
            raise ConfigError(f"entropy_model.kind must be uniform, static or hypervq, got {self.kind!r}")
        if self.sigma not in ("scalar", "diagonal"):
            raise ConfigError(f"entropy_model.sigma must be scalar or diagonal, got {self.sigma!r}")
        # CompressAI's rANS mishandles streams of fewer than two symbols: keep >= 2 channels.
        if self.hyper_channels < 2 or self.hyper_hidden < 1:
            raise ConfigError("entropy_model.hyper_channels must be >= 2 and hyper_hidden >= 1")
        if self.smoothing <= 0:
            raise ConfigError("entropy_model.smoothing must be > 0")


def build_entropy_model(config: EntropyModelConfig, tokenizer: Tokenizer) -> IndexEntropyModel:
    sizes = [tokenizer.quantizer(b).codebook_size for b in tokenizer.branches]
    if config.kind == "uniform":
        return UniformModel()
    if config.kind == "static":
        return StaticTableModel(sizes, smoothing=config.smoothing)
    return HyperVQModel(
        num_branches=len(tokenizer.branches),
        dim=tokenizer.config.embed_dim,
        channels=config.hyper_channels,
        hidden=config.hyper_hidden,
        diagonal=config.sigma == "diagonal",
    )
