"""The one interface every index entropy model implements, for training and for the codec.

Training calls the model on batches and gets differentiable bits. The codec calls
:meth:`IndexEntropyModel.compress`, which returns everything the file needs from the model (its
streams and its own header parameters) together with the index maps the *decoder* will produce:
a model may send fewer indices than it was given and let the decoder complete the rest, or pick
other indices than the nearest codewords, so the codec checks and reconstructs from what
``compress`` says the decoder sees, never from the encoder's input. :meth:`decompress` reads the
same streams and parameters back and validates them: a parameter or stream count this model does
not write is an :class:`~rdvq.errors.InvalidHeaderError`. A model declares its header fields as data
(:attr:`IndexEntropyModel.header`, a :class:`~rdvq.coding.header.HeaderSchema`).

Each model owns the range coder of its streams, so it may evaluate its network between decoding
steps (a masked transformer decodes slice by slice).

Adding a model: one module with a config dataclass (a ``kind: Literal[...]`` field first) and a
subclass of :class:`IndexEntropyModel` (its ``kind``, ``model_id``, ``header`` and ``options``), plus
one entry in :mod:`rdvq.entropy.registry`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from rdvq.coding import FixedPointCodebook, ProbabilityEngine
from rdvq.coding.engine import EngineName
from rdvq.coding.header import HeaderSchema
from rdvq.config_dict import DictConfig
from rdvq.encode_options import EncodeOptions
from rdvq.errors import InvalidHeaderError

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
    """What compress/decompress need besides the model: the engine choice and the codebooks."""

    engine_name: EngineName
    codebooks: list[FixedPointCodebook]  # per branch
    codewords: list[torch.Tensor]  # per branch, float, on the model's device

    def engine(self, top_k: int | None = None, search_width: int | None = None) -> ProbabilityEngine:
        return ProbabilityEngine(self.engine_name, top_k=top_k, search_width=search_width)


@dataclass
class CompressedIndices:
    """One image's indices as a model coded them."""

    streams: list[bytes]
    parameters: tuple[int, ...]  # the model's header fields (unsigned integers)
    indices: list[torch.Tensor]  # per branch (1, h, w): exactly what decompress will return


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
    """Base class.

    ``kind`` names the model in configs, ``model_id`` in the bitstream (it never changes for a
    model), ``config_class`` is its configuration dataclass, ``header`` the fields it writes into
    the container and ``options`` the encoder options (:class:`~rdvq.encode_options.EncodeOptions`
    fields) it implements. Every model writes one stream.
    """

    kind: ClassVar[str]
    model_id: ClassVar[int]
    config_class: ClassVar[type[DictConfig]]
    header: ClassVar[HeaderSchema]
    options: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def build(cls, config: Any, codebook_sizes: list[int], dim: int, coding_only: bool = False) -> "IndexEntropyModel":
        """A model for branches with these codebook sizes and embedding dimension. ``coding_only``:
        for a codec that loads trained weights and tables (it may skip what only training needs)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ training
    def forward(self, branches: list[BranchBatch]) -> RateEstimate:
        raise NotImplementedError

    def observe(self, branches: list[BranchBatch]) -> None:
        """Called on every training batch; models fitted by counting update here."""

    def aux_parameters(self) -> list[nn.Parameter]:
        """Parameters trained only by :meth:`aux_loss` (with their own learning rate)."""
        return []

    def aux_loss(self) -> torch.Tensor:
        """A loss that fits :meth:`aux_parameters`, independent of the data (zero if there are none)."""
        return torch.zeros(())

    # ------------------------------------------------------------------ coding
    def update_tables(self) -> None:
        """Refresh derived coding tables after the parameters changed (before any real coding)."""

    def compress(self, branches: list[BranchBatch], context: CodingContext, options: EncodeOptions) -> CompressedIndices:
        """Code one image's indices (batch size 1)."""
        raise NotImplementedError

    def decompress(
        self, streams: list[bytes], parameters: tuple[int, ...], shapes: list[tuple[int, int]], context: CodingContext
    ) -> list[torch.Tensor]:
        """Decode one image's index maps, each (1, h, w), given the branch shapes."""
        raise NotImplementedError

    # ------------------------------------------------------------------ header checks
    def read_header(self, streams: list[bytes], parameters: tuple[int, ...]) -> dict[str, int | None]:
        """The file's named header values, or :class:`InvalidHeaderError` for a stream count, a
        parameter count or a value this model never writes."""
        if len(streams) != 1:
            raise InvalidHeaderError(f"file has {len(streams)} streams; entropy model {self.kind} writes 1")
        return self.header.unpack(parameters)
