"""Uniform index coding: log2 K bits per index. The reference every saving is measured against."""

from __future__ import annotations

import math

import torch

from rdvq.coding import IndexDecoder, IndexEncoder
from rdvq.coding.probability import frequencies, logit_buckets
from rdvq.entropy.base import BranchBatch, CodingContext, IndexEntropyModel, RateEstimate


def uniform_row(size: int) -> torch.Tensor:
    return frequencies(logit_buckets(torch.zeros(1, size)))[0]


class UniformModel(IndexEntropyModel):
    model_id = 0
    kind = "uniform"

    def forward(self, branches: list[BranchBatch]) -> RateEstimate:
        bits = [
            torch.full(
                (b.indices.shape[0],), b.indices[0].numel() * math.log2(b.codewords.shape[0]), device=b.indices.device
            )
            for b in branches
        ]
        return RateEstimate(index_bits=bits, side_bits=[torch.zeros_like(x) for x in bits])

    def compress(self, branches: list[BranchBatch], encoder: IndexEncoder, context: CodingContext) -> list[bytes]:
        for branch in branches:
            encoder.encode_iid(branch.indices, uniform_row(branch.codewords.shape[0]))
        return []

    def decompress(
        self, side_streams: list[bytes], shapes: list[tuple[int, int]], decoder: IndexDecoder, context: CodingContext
    ) -> list[torch.Tensor]:
        return [
            decoder.decode_iid(h * w, uniform_row(codewords.shape[0])).reshape(1, h, w)
            for (h, w), codewords in zip(shapes, context.codewords)
        ]
