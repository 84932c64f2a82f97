"""A codec family: the one module that trains, is saved, and codes.

A family turns a padded image into integer symbols, the symbols into streams and back, and the
symbols into an image: analysis -> symbols -> streams -> synthesis. Every training stage holds its
family's :class:`LatentCodec` as ``self.codec``, so checkpoints keep its weights under ``codec.``
whatever the stage, and ``ImageCodec`` (:mod:`rdvq.codec.image_codec`) wraps the same module for
coding. Everything around a family (the container, the fingerprint, size limits, the symbol
checksum, typed errors, files) is shared.

What stages and evaluation need of a family is declared here rather than reached for inside it:
its id, its encoder options, the parts stage D may retrain, the bits of a symbol set (differentiable
in the synthesis side), the refresh of its coding tables, and the parameters only an auxiliary loss
trains. Adding a family: one module with a subclass and one entry in :mod:`rdvq.codec.registry`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from rdvq.checkpointing import CODEC_PREFIX, load_strict
from rdvq.coding.engine import EngineName
from rdvq.encode_options import EncodeOptions


@dataclass
class CodedSymbols:
    """One image's symbols as a family coded them."""

    model_id: int
    parameters: tuple[int, ...]  # header fields owned by the model
    streams: list[bytes]
    symbols: list[torch.Tensor]  # integer tensors, exactly as the decoder will produce them


class LatentCodec(nn.Module):
    """Base class of codec families. ``family`` names it in checkpoints and configs, ``family_id``
    in files (it never changes for a family).

    Every tensor of the module (its ``state_dict``) and its :meth:`description` define the model
    fingerprint, so a file decodes only with the weights and configuration that made it.
    """

    family: ClassVar[str]
    family_id: ClassVar[int]

    @property
    def stride(self) -> int:
        """Padded image sides are multiples of this."""
        raise NotImplementedError

    @property
    def options(self) -> frozenset[str]:
        """The :class:`~rdvq.encode_options.EncodeOptions` fields this codec implements."""
        raise NotImplementedError

    def description(self) -> dict[str, Any]:
        """The configuration parts of the checkpoint's codec description (plain dicts)."""
        raise NotImplementedError

    @classmethod
    def from_description(cls, description: dict[str, Any], source: str, *, coding_only: bool, engine: EngineName = "auto") -> "LatentCodec":
        """An untrained codec of the described configuration. ``coding_only``: for loading trained
        weights and tables to code with (it may leave out what only training needs)."""
        raise NotImplementedError

    @classmethod
    def from_checkpoint(
        cls, description: dict[str, Any], state_dict: dict[str, torch.Tensor], source: str, engine: EngineName = "auto"
    ) -> "LatentCodec":
        """The codec of a checkpoint: its configuration, and every ``codec.`` weight loaded strictly."""
        codec = cls.from_description(description, source, coding_only=True, engine=engine)
        load_strict(codec, state_dict, CODEC_PREFIX, source)
        return codec

    # ------------------------------------------------------------------ training
    def trainable_parts(self) -> dict[str, nn.Module]:
        """What decoder retraining may train: ``decoder`` (the synthesis) and, where the family has
        one, ``hyper_decoder`` (the network predicting the latents' distribution)."""
        raise NotImplementedError

    def aux_parameters(self) -> list[nn.Parameter]:
        """Parameters trained only by :meth:`aux_loss`, on their own optimizer (CompressAI's
        bottleneck quantiles): they never share the model's gradient clipping."""
        return []

    def aux_loss(self) -> torch.Tensor:
        return torch.zeros(())

    def check_codable(self) -> None:
        """Raise :class:`~rdvq.errors.CheckpointError` when this codec cannot code yet."""

    def refresh_tables(self) -> None:
        """Rebuild the coding tables from the current weights (before coding, and in every
        checkpoint, so a file is coded with tables that match the weights it names)."""
        raise NotImplementedError

    def symbol_bits(self, analysis: Any, symbols: list[torch.Tensor]) -> torch.Tensor:
        """Bits per image (B,) of symbol sets under the model, given the analysis they were coded
        from (the model's own rate estimate; differentiable in the networks that predict the
        symbols' distribution)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ coding
    def analyze(self, padded: torch.Tensor) -> Any:
        """Analysis of one padded image (1, 3, H, W) in [0, 1]: whatever :meth:`encode` needs."""
        raise NotImplementedError

    def encode(self, analysis: Any, options: EncodeOptions) -> CodedSymbols:
        raise NotImplementedError

    def decode(
        self, model_id: int, parameters: tuple[int, ...], streams: list[bytes], padded: tuple[int, int]
    ) -> list[torch.Tensor]:
        """Symbols from streams, validating ``model_id`` and ``parameters`` (typed errors)."""
        raise NotImplementedError

    def synthesize(self, symbols: list[torch.Tensor], padded: tuple[int, int]) -> torch.Tensor:
        """The padded image (B, 3, H, W), unclamped, from a batch of symbol sets."""
        raise NotImplementedError
