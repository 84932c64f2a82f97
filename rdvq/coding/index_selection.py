"""Entropy-constrained index selection: the encoder trades latent distortion for rate.

Instead of the nearest codeword, a position takes ``argmin_k ||y - e_k||^2 + lambda * bits(k)``,
where ``bits(k) = 24 - log2 f_k`` is the exact code length of ``k`` under the integer frequency
table the range coder is about to use (the bounded tail floor's tail symbols cost 24 bits, which
is what the coder spends on them). The choice changes only which indices are sent; the decoder
needs nothing new. With ``lambda = 0`` it is the nearest codeword, with the same tie rule as the
quantizer (lowest index). With residual VQ each stage's target is the residual the tokenizer
computed from the nearest codewords of the earlier stages, so when selection changes an earlier
stage the later stages optimize against a slightly stale target.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from rdvq.coding.format import PRECISION
from rdvq.coding.range_coder import IndexEncoder
from rdvq.coding.tables import FrequencyTable


def table_bits(table: FrequencyTable) -> torch.Tensor:
    """(N, K) float32 code length in bits of every symbol under ``table``."""
    return (PRECISION - torch.log2(table.full().to(torch.float64))).to(torch.float32)


def select_indices(latents: torch.Tensor, codewords: torch.Tensor, table: FrequencyTable, rdo_lambda: float) -> torch.Tensor:
    """(N,) int64 indices minimizing squared distance + ``rdo_lambda`` * bits for ``latents`` (N, D)
    against ``codewords`` (K, D), with bits from ``table`` (N rows)."""
    codes = codewords.detach().to(torch.float32)
    rows = latents.detach().to(device=codes.device, dtype=torch.float32)
    # ||y||^2 is constant per row; the same expression as the quantizer's nearest-neighbour search.
    cost = torch.addmm(codes.square().sum(-1), rows, codes.t(), alpha=-2.0)
    return (cost + rdo_lambda * table_bits(table).to(codes.device)).argmin(-1)


def encode_selected(
    encoder: IndexEncoder, tables: Iterable[FrequencyTable], latents: torch.Tensor, codewords: torch.Tensor,
    rdo_lambda: float,
) -> torch.Tensor:
    """Select and code the indices of ``latents`` (N, D), table chunk by table chunk as the engine
    yields them (``tables`` cover the N positions in order); returns the (N,) indices sent."""
    chosen, start = [], 0
    for table in tables:
        part = select_indices(latents[start : start + table.num_positions], codewords, table, rdo_lambda)
        encoder.encode(part, table)
        chosen.append(part.cpu())
        start += table.num_positions
    return torch.cat(chosen)
