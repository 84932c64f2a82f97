"""Dispatch between implementations of the probability engine, in memory-bounded row chunks.

All implementations return identical integer tables (see :mod:`rdvq.coding.probability`), so the
choice of engine changes speed only, never the bitstream.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import torch

from rdvq.coding import probability as ref
from rdvq.coding.probability import FixedPointCodebook, GaussianParameters
from rdvq.coding.tables import FrequencyTable
from rdvq.errors import ConfigError

EngineName = Literal["auto", "torch"]


class ProbabilityEngine:
    """Turns logits or Gaussians into frequency tables, ``max_elements`` table cells at a time.

    ``top_k`` enables the bounded tail floor: only the ``top_k`` most likely symbols of each
    position get modelled mass, which keeps coding fast and compact for very large codebooks.
    """

    def __init__(self, name: EngineName = "auto", top_k: int | None = None, max_elements: int = 1 << 22) -> None:
        if name not in ("auto", "torch"):
            raise ConfigError(f"unknown probability engine {name!r} (choose auto or torch)")
        if top_k is not None and top_k < 1:
            raise ConfigError(f"top_k must be >= 1, got {top_k}")
        self.name = name
        self.top_k = top_k
        self.max_elements = max_elements

    def rows_per_chunk(self, alphabet_size: int) -> int:
        return max(1, self.max_elements // alphabet_size)

    def logit_tables(self, logits: torch.Tensor) -> Iterator[FrequencyTable]:
        """Tables for (N, K) logits, one chunk of rows at a time."""
        step = self.rows_per_chunk(logits.shape[-1])
        for start in range(0, logits.shape[0], step):
            yield ref.frequency_table(ref.logit_buckets(logits[start : start + step]), self.top_k)

    def gaussian_tables(self, params: GaussianParameters, codebook: FixedPointCodebook) -> Iterator[FrequencyTable]:
        """Tables for per-position Gaussians over a fixed-point codebook, one chunk of rows at a time."""
        step = self.rows_per_chunk(codebook.size)
        for start in range(0, params.num_positions, step):
            chunk = params[start : start + step]
            yield ref.frequency_table(ref.gaussian_buckets(chunk, codebook), self.top_k)
