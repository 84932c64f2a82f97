"""What a codec family provides to :class:`~rdvq.codec.image_codec.ImageCodec`.

A family turns a padded image into integer symbols, the symbols into streams and back, and the
symbols into an image: analysis -> symbols -> streams -> synthesis. Everything around that (the
container, the fingerprint, size limits, the symbol checksum, typed errors, files) is shared.
The VQ tokenizer with an index entropy model is one family (:mod:`rdvq.codec.vq`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from rdvq.encode_options import EncodeOptions


@dataclass
class CodedSymbols:
    """One image's symbols as a family coded them."""

    model_id: int
    parameters: tuple[int, ...]  # header fields owned by the model
    streams: list[bytes]
    symbols: list[torch.Tensor]  # integer tensors, exactly as the decoder will produce them


class LatentCodec(nn.Module):
    """Base class of codec families. ``family`` names it in checkpoints and files.

    Every tensor of the module (its ``state_dict``) and its :meth:`description` define the model
    fingerprint, so a file decodes only with the weights and configuration that made it.
    """

    family: ClassVar[str]

    @property
    def stride(self) -> int:
        """Padded image sides are multiples of this."""
        raise NotImplementedError

    def description(self) -> dict[str, Any]:
        """The configuration parts of the checkpoint's codec description (plain dicts)."""
        raise NotImplementedError

    @classmethod
    def from_checkpoint(
        cls, description: dict[str, Any], state_dict: dict[str, torch.Tensor], source: str, engine: str
    ) -> "LatentCodec":
        """The family's codec from a checkpoint's description and weights."""
        raise NotImplementedError

    def analyze(self, padded: torch.Tensor) -> Any:
        """Analysis of one padded image (1, 3, H, W) in [0, 1]: whatever :meth:`encode` needs."""
        raise NotImplementedError

    def encode(self, analysis: Any, options: EncodeOptions) -> CodedSymbols:
        raise NotImplementedError

    def estimate_bits(self, analysis: Any, symbols: list[torch.Tensor]) -> float:
        """The model's own estimate of the bits of ``symbols`` (what training minimizes)."""
        raise NotImplementedError

    def decode(
        self, model_id: int, parameters: tuple[int, ...], streams: list[bytes], padded: tuple[int, int]
    ) -> list[torch.Tensor]:
        """Symbols from streams, validating ``model_id`` and ``parameters`` (typed errors)."""
        raise NotImplementedError

    def synthesize(self, symbols: list[torch.Tensor], padded: tuple[int, int]) -> torch.Tensor:
        """The padded image (1, 3, H, W), unclamped."""
        raise NotImplementedError
