"""The one interface every index entropy model implements, for training and for the codec.

Training calls the model on batches and gets differentiable bits. The codec calls
:meth:`IndexEntropyModel.compress` and :meth:`IndexEntropyModel.decompress`, which drive the
shared range coder themselves: a model may evaluate its network between decoding steps (the
masked transformer decodes slice by slice), so nothing assumes that all probabilities are known
before decoding starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from rdvq.coding import FixedPointCodebook, IndexDecoder, IndexEncoder, ProbabilityEngine

LN2 = math.log(2.0)


@dataclass
class BranchBatch:
    """What an entropy model sees of one branch (one index map)."""

    indices: torch.Tensor  # (B, h, w) int64
    latents: torch.Tensor  # (B, D, h, w) the vectors the branch quantized
    codewords: torch.Tensor  # (K, D) the branch's codebook as the decoder sees it
    targets: torch.Tensor | None = None  # (B, h, w, K) soft posterior; None -> hard indices


@dataclass
class RateEstimate:
    """Bits per image, per branch, for the indices and for side information."""

    index_bits: list[torch.Tensor]  # each (B,)
    side_bits: list[torch.Tensor]  # each (B,)

    def total(self) -> torch.Tensor:
        return torch.stack(self.index_bits + self.side_bits).sum(0)


@dataclass
class CodingContext:
    """Everything compress/decompress need besides the model: engine and fixed-point codebooks."""

    engine: ProbabilityEngine
    codebooks: list[FixedPointCodebook]  # per branch
    codewords: list[torch.Tensor]  # per branch, float, on the model's device


def cross_entropy_bits(log_probs: torch.Tensor, branch: BranchBatch) -> torch.Tensor:
    """Bits per image: -sum log2 q(index), or -sum p_soft log2 q with soft targets.

    ``log_probs`` is (B, h, w, K) natural-log probabilities.
    """
    if branch.targets is None:
        nats = -log_probs.gather(-1, branch.indices.unsqueeze(-1)).squeeze(-1)
    else:
        nats = -(branch.targets * log_probs).sum(-1)
    return nats.flatten(1).sum(-1) / LN2


class IndexEntropyModel(nn.Module):
    """Base class. ``model_id`` is what the bitstream records; it never changes for a model."""

    model_id: ClassVar[int]
    kind: ClassVar[str]

    def forward(self, branches: list[BranchBatch]) -> RateEstimate:
        raise NotImplementedError

    def observe(self, branches: list[BranchBatch]) -> None:
        """Called on every training batch; models fitted by counting update here."""

    def update_tables(self) -> None:
        """Refresh derived coding tables after the parameters changed (before any real coding)."""

    def has_coding_tables(self) -> bool:
        """False when the model needs :meth:`update_tables` before it can code."""
        return True

    def compress(self, branches: list[BranchBatch], encoder: IndexEncoder, context: CodingContext) -> list[bytes]:
        """Encode one image's indices into ``encoder``; returns the side-information streams."""
        raise NotImplementedError

    def decompress(
        self, side_streams: list[bytes], shapes: list[tuple[int, int]], decoder: IndexDecoder, context: CodingContext
    ) -> list[torch.Tensor]:
        """Decode one image's index maps, each (1, h, w), given the branch shapes."""
        raise NotImplementedError

    def num_side_streams(self) -> int:
        return 0
