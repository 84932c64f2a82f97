"""Uniform index coding: log2 K bits per index. The reference every saving is measured against."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from rdvq.coding import IndexDecoder, IndexEncoder
from rdvq.coding.header import HeaderSchema
from rdvq.coding.probability import frequencies, logit_buckets
from rdvq.config_dict import DictConfig
from rdvq.encode_options import EncodeOptions
from rdvq.entropy.base import BranchBatch, CodingContext, CompressedIndices, IndexEntropyModel, RateEstimate


@dataclass
class UniformConfig(DictConfig):
    section: ClassVar[str] = "entropy_model (uniform)"

    kind: Literal["uniform"] = "uniform"


def uniform_row(size: int) -> torch.Tensor:
    return frequencies(logit_buckets(torch.zeros(1, size)))[0]


class UniformModel(IndexEntropyModel):
    kind = "uniform"
    model_id = 0
    header = HeaderSchema("entropy model uniform")
    config_class = UniformConfig

    @classmethod
    def build(cls, config: UniformConfig, codebook_sizes: list[int], dim: int, coding_only: bool = False) -> "UniformModel":
        return cls()

    def forward(self, branches: list[BranchBatch]) -> RateEstimate:
        bits = [
            torch.full(
                (b.indices.shape[0],), b.indices[0].numel() * math.log2(b.codewords.shape[0]), device=b.indices.device
            )
            for b in branches
        ]
        return RateEstimate(index_bits=bits, side_bits=[torch.zeros_like(x) for x in bits])

    def compress(self, branches: list[BranchBatch], context: CodingContext, options: EncodeOptions) -> CompressedIndices:
        encoder = IndexEncoder()
        for branch in branches:
            encoder.encode_iid(branch.indices, uniform_row(branch.codewords.shape[0]))
        return CompressedIndices(streams=[encoder.finish()], parameters=self.header.pack(), indices=[b.indices for b in branches])

    def decompress(
        self, streams: list[bytes], parameters: tuple[int, ...], shapes: list[tuple[int, int]], context: CodingContext
    ) -> list[torch.Tensor]:
        self.read_header(streams, parameters)
        decoder = IndexDecoder(streams[0])
        return [
            decoder.decode_iid(h * w, uniform_row(codewords.shape[0])).reshape(1, h, w)
            for (h, w), codewords in zip(shapes, context.codewords)
        ]
