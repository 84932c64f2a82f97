"""Gaussian masses of quantization cells, and exact rate-distortion searches over grids of cells.

A latent's rate is ``-log2`` of the mass of ``N(0, scale)`` (residuals are taken around the
predicted mean) over its decision cell. Minimising ``(r - level)^2 + lambda * bits`` over the
levels of a uniform grid whose cells have equal width is a convex problem in the level's position:
a squared error plus minus the log of a log-concave function (a Gaussian convolved with the
cell's indicator). :func:`grid_minimum` solves it exactly by bisection, for all latents at once.
Rounding (USQ) uses it directly (:func:`rounding_minima`); TCQ per quantizer and parity class.
"""

from __future__ import annotations

import math

import torch

LN2 = math.log(2.0)


def cell_bits(low: torch.Tensor, high: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``-log2`` of the mass of ``N(0, scale)`` over ``[low, high]``, accurate far in the tails.

    Cells are reflected onto the negative side, where both ends' normal CDFs are small and exact,
    and the difference is taken in log space (no underflow, no cancellation)."""
    flip = (low + high) > 0
    low, high = torch.where(flip, -high, low), torch.where(flip, -low, high)
    log_high = torch.special.log_ndtr(high / scale)
    log_low = torch.special.log_ndtr(low / scale)
    return -(log_high + torch.log(-torch.expm1(log_low - log_high))) / LN2


def grid_minimum(
    a: torch.Tensor,
    scale: torch.Tensor,
    offset: torch.Tensor,
    step: float,
    half_width: float,
    first: torch.Tensor,
    last: torch.Tensor,
    lmbda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact ``argmin_j (a - level_j)^2 + lmbda * bits_j`` over ``first <= j <= last``.

    ``level_j = step * j + offset`` (non-negative on the searched range) has the cell
    ``[level_j - half_width, level_j + half_width]``. ``a`` (>= 0) and ``scale`` are (X, 1) and
    describe X latents; ``offset`` and ``first`` (C,) describe C grids; ``last`` is (X, C).
    Returns (cost, j), each (X, C); the cost is inf where ``last < first``.

    Beyond the first level at or past ``a`` both terms grow, so the search runs up to there; the
    (latent, grid) pairs with more than one candidate are bisected, the others are done at once.
    """

    def cost_at(j: torch.Tensor, a: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        level = step * j + offset  # the cell mirrored onto the negative side (the same mass)
        log_high = torch.special.log_ndtr((half_width - level) / scale)
        log_low = torch.special.log_ndtr((-half_width - level) / scale)
        bits = -(log_high + torch.log(-torch.expm1(log_low - log_high))) / LN2
        return (a - level).square() + lmbda * bits

    lo = first.expand_as(last).clone()
    hi = torch.minimum(torch.ceil((a - offset) / step).to(torch.int64), last).maximum(lo)
    active = (lo < hi).nonzero()
    rows, cols = active[:, 0], active[:, 1]
    sub_lo, sub_hi = lo[rows, cols], hi[rows, cols]
    sub_a, sub_scale, sub_offset = a[rows, 0], scale[rows, 0], offset.expand(lo.shape[1])[cols]
    while sub_lo.numel():
        mid = torch.div(sub_lo + sub_hi, 2, rounding_mode="floor")
        right = cost_at(mid + 1, sub_a, sub_scale, sub_offset) < cost_at(mid, sub_a, sub_scale, sub_offset)
        sub_lo, sub_hi = torch.where(right, mid + 1, sub_lo), torch.where(right, sub_hi, mid)
        lo[rows, cols] = sub_lo
        still = sub_lo < sub_hi
        rows, cols, sub_lo, sub_hi = rows[still], cols[still], sub_lo[still], sub_hi[still]
        sub_a, sub_scale, sub_offset = sub_a[still], sub_scale[still], sub_offset[still]
    cost = torch.where(last >= first, cost_at(lo, a, scale, offset), torch.inf)
    return cost, lo


def rounding_minima(residuals: torch.Tensor, scales: torch.Tensor, max_index: torch.Tensor, lmbda: float) -> torch.Tensor:
    """Entropy-constrained rounding: per latent, the integer level ``|k| <= max_index`` minimising
    ``(r - k)^2 + lmbda * bits`` under its rounding cell ``[k - 0.5, k + 0.5]`` (exact)."""
    a = residuals.to(torch.float64).abs().reshape(-1, 1)
    scale = scales.to(torch.float64).reshape(-1, 1)
    zero = torch.zeros(1, dtype=torch.int64, device=a.device)
    _, k = grid_minimum(a, scale, zero.to(torch.float64), 1.0, 0.5, zero, max_index.to(torch.int64).reshape(-1, 1), lmbda)
    sign = torch.where(residuals < 0, -1, 1).to(torch.int64).reshape(-1, 1)
    return (sign * k).reshape(residuals.shape)
