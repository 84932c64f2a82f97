"""Probability engine (torch reference): per-position scores -> exact integer frequency tables.

Encoder and decoder must derive bit-identical tables, and the Triton kernel must agree with this
reference bit for bit. Every step after the first quantization is therefore integer arithmetic,
which is exact whatever the reduction order, device or library:

1. *Buckets.* Each symbol's log-probability gap to the most likely symbol is quantized to
   ``q = floor(gap * 64)`` (1/64 nat), clamped to ``NUM_BUCKETS - 1``. From logits the gap is
   ``(max - logit)`` in float32; from a Gaussian in embedding space it is
   ``(d_k - d_min) * c`` where ``d`` are *integer* squared distances between a fixed-point mean
   and a fixed-point codebook and ``c = 64 / (2 sigma^2 4^S)`` is one float32 per position.
2. *Weights.* ``w = WEIGHTS[q] ~ 2^30 exp(-q/64)``, a fixed integer table (zero far in the tail).
3. *Candidates.* With a bounded tail floor (``top_k``) only the ``top_k`` smallest keys
   ``(q, index)`` keep their weight; every other symbol gets just the floor.
4. *Frequencies* at ``PRECISION = 24`` bits: every symbol gets 1, candidates share the free mass
   ``F = 2^24 - K`` as ``floor(F w / Z)``, and the remainder goes one unit each to the most likely
   symbols in key order (ties broken by the lower index). Totals are exactly ``2^24``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from decimal import Decimal, localcontext

import torch

from rdvq.coding.tables import FrequencyTable
from rdvq.errors import ProbabilityError

from rdvq.coding.format import BUCKETS_PER_NAT, CODEBOOK_BITS, DIM_WEIGHT_BITS, NUM_BUCKETS, PRECISION, WEIGHT_BITS

TOTAL = 1 << PRECISION
MAX_CODEBOOK_SIZE = TOTAL - 2
# Fixed point for codebooks: the largest |component| maps to at most 2^CODEBOOK_BITS. Means are
# clamped to the largest range that keeps every integer distance below 2^53 (see mean_bits), so
# float64 matmuls of these integers are exact, in any reduction order.
MAX_DIM = 1024
SIGMA_RANGE = (1e-6, 1e6)


def _weight_table() -> torch.Tensor:
    """round(2^30 exp(-q/64)) with decimal arithmetic, so the table is the same on every machine.

    Powers of one 60-digit exp(-1/64) (a product of q factors is off by far less than the 10^-30
    that could move a rounding), instead of 2048 exponentials: importing stays cheap. The process's
    decimal context is untouched."""
    with localcontext() as context:
        context.prec = 60
        step = (Decimal(-1) / BUCKETS_PER_NAT).exp()
        value = Decimal(2) ** WEIGHT_BITS
        values = []
        for _ in range(NUM_BUCKETS):
            values.append(int(value.to_integral_value()))
            value *= step
    return torch.tensor(values, dtype=torch.int64)


WEIGHTS = _weight_table()


# ---------------------------------------------------------------------------------------- buckets
def require_finite(name: str, tensor: torch.Tensor) -> None:
    if not torch.isfinite(tensor).all():
        raise ProbabilityError(f"{name} contain NaN or infinite values; refusing to build a distribution from them")


def logit_buckets(logits: torch.Tensor) -> torch.Tensor:
    """(N, K) float logits -> (N, K) int32 buckets. Shift-invariant; huge finite logits are fine."""
    require_finite("logits", logits)
    logits = logits.to(torch.float32)
    gap = (logits.max(dim=-1, keepdim=True).values - logits) * BUCKETS_PER_NAT
    return gap.clamp(max=NUM_BUCKETS - 1).floor().to(torch.int32)


@dataclass(frozen=True)
class FixedPointCodebook:
    """A codebook rounded to integers: ``values = round(codewords * 2^exponent)``."""

    values: torch.Tensor  # (K, D) int64
    exponent: int

    @classmethod
    def from_codewords(cls, codewords: torch.Tensor) -> "FixedPointCodebook":
        codewords = codewords.detach().to(torch.float64)
        require_finite("codewords", codewords)
        if codewords.shape[-1] > MAX_DIM:
            raise ProbabilityError(f"embedding dimension {codewords.shape[-1]} exceeds {MAX_DIM}")
        exponent = fixed_point_exponent(codewords)
        return cls(values=torch.round(codewords * 2.0**exponent).to(torch.int64), exponent=exponent)

    @property
    def size(self) -> int:
        return self.values.shape[0]

    @functools.cached_property
    def _float64(self) -> tuple[torch.Tensor, torch.Tensor]:
        values = self.values.to(torch.float64)
        return values, values.square().sum(-1)

    def float64_values(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The values as float64 (exact) and their squared norms, converted once per codebook (a
        large codebook is coded in many small chunks)."""
        values, norms = self._float64
        return values.to(device), norms.to(device)


def fixed_point_exponent(codewords: torch.Tensor) -> int:
    """``e`` such that ``codewords * 2^e`` has its largest component in (2^(CODEBOOK_BITS-1), 2^CODEBOOK_BITS]."""
    peak = float(codewords.detach().abs().max()) if codewords.numel() else 0.0
    return CODEBOOK_BITS - (math.ceil(math.log2(peak)) if peak > 0 else 0)


def mean_limit(codewords: torch.Tensor, diagonal: bool) -> float:
    """The largest |mean component|, in the codewords' own units, that the tables represent
    (:func:`mean_bits` in fixed point). Coded means are clamped there, so a rate estimate that is
    to match the files must clamp them there too."""
    return 2.0 ** (mean_bits(codewords.shape[-1], diagonal) - fixed_point_exponent(codewords))


def mean_bits(dim: int, diagonal: bool) -> int:
    """Fixed-point means are clamped to +-2^mean_bits: with codewords below 2^CODEBOOK_BITS, every
    distance sum_d w_d (e_d - mu_d)^2 <= dim * 2^weight_bits * 2^(2 mean_bits + 1) stays < 2^53.
    (32 dims: 2^23 isotropic, i.e. 2048 times the codebook's largest component; 2^17 diagonal.)"""
    weight_bits = DIM_WEIGHT_BITS if diagonal else 0
    return (52 - weight_bits - dim.bit_length()) // 2


@dataclass(frozen=True)
class GaussianParameters:
    """Per-position Gaussian in fixed point: integer mean, optional integer per-dimension weights,
    and the float32 factor ``scale`` turning integer distances into 1/64-nat buckets."""

    mean: torch.Tensor  # (N, D) int64
    scale: torch.Tensor  # (N,) float32
    dim_weights: torch.Tensor | None  # (N, D) int64 in [1, 2^16] for the diagonal variant

    @classmethod
    def from_float(cls, mean: torch.Tensor, sigma: torch.Tensor, codebook: FixedPointCodebook) -> "GaussianParameters":
        """``mean`` (N, D); ``sigma`` (N,) isotropic or (N, D) diagonal."""
        require_finite("means", mean)
        require_finite("scales", sigma)
        if (sigma <= 0).any():
            raise ProbabilityError("scales must be positive")
        one = 2.0**codebook.exponent
        limit = float(2 ** mean_bits(mean.shape[-1], diagonal=sigma.dim() == 2))
        fixed_mean = torch.round(mean.detach().to(torch.float64) * one).clamp(-limit, limit).to(torch.int64)
        sigma = sigma.detach().to(torch.float64).clamp(*SIGMA_RANGE)
        dim_weights = None
        if sigma.dim() == 2:  # diagonal: integer weights relative to the smallest sigma of the row
            smallest = sigma.min(dim=-1).values
            ratio = (smallest.unsqueeze(-1) / sigma).square() * 2.0**DIM_WEIGHT_BITS
            dim_weights = torch.round(ratio).clamp(1, 2**DIM_WEIGHT_BITS).to(torch.int64)
            scale = BUCKETS_PER_NAT / (2.0 * smallest.square() * one * one * 2.0**DIM_WEIGHT_BITS)
        else:
            scale = BUCKETS_PER_NAT / (2.0 * sigma.square() * one * one)
        return cls(mean=fixed_mean, scale=scale.to(torch.float32), dim_weights=dim_weights)

    def __getitem__(self, rows: slice) -> "GaussianParameters":
        return GaussianParameters(
            mean=self.mean[rows],
            scale=self.scale[rows],
            dim_weights=None if self.dim_weights is None else self.dim_weights[rows],
        )

    @property
    def num_positions(self) -> int:
        return self.mean.shape[0]


def relative_distances(
    params: GaussianParameters, codebook: FixedPointCodebook, out: torch.Tensor | None = None
) -> torch.Tensor:
    """(N, K) float64 ``d_k - sum_d w_d mu_d^2``: the distances without their per-row constant
    (into ``out`` when given). Exact: every product and partial sum is an integer below 2^53
    (see :func:`mean_bits`)."""
    e, norms = codebook.float64_values(params.mean.device)
    mu = params.mean.to(torch.float64)
    if params.dim_weights is None:
        return torch.addmm(norms, mu, e.t(), alpha=-2.0, out=out)
    w = params.dim_weights.to(torch.float64)
    return torch.addmm(w @ e.square().t(), w * mu, e.t(), alpha=-2.0, out=out)


def integer_distances(params: GaussianParameters, codebook: FixedPointCodebook) -> torch.Tensor:
    """(N, K) int64 exact (weighted) squared distances ``sum_d w_d (e_kd - mu_d)^2``."""
    mu = params.mean.to(torch.float64)
    weights = 1.0 if params.dim_weights is None else params.dim_weights.to(torch.float64)
    constant = (weights * mu.square()).sum(-1, keepdim=True)
    return (relative_distances(params, codebook) + constant).to(torch.int64)


def gaussian_buckets(params: GaussianParameters, codebook: FixedPointCodebook) -> torch.Tensor:
    """(N, K) int32 buckets of the Gaussian ``softmax(-||e_k - mu||^2 / (2 sigma^2))``.

    ``d_k - d_min`` is an exact integer held in float64; converting it to float32 rounds exactly
    as converting the int64 value would (what the Triton kernel does)."""
    d = relative_distances(params, codebook)
    gap = d.sub_(d.min(dim=-1, keepdim=True).values).to(torch.float32).mul_(params.scale.unsqueeze(-1))
    return gap.clamp_(max=NUM_BUCKETS - 1).floor_().to(torch.int32)


# ---------------------------------------------------------------------------------- frequencies
def _first_keys(buckets: torch.Tensor, cumulative: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Mask of the ``count`` (per row) smallest keys ``(bucket, index)``, from the bucket histogram."""
    threshold = (cumulative < count.unsqueeze(-1)).sum(-1)  # first bucket reaching `count`
    below = torch.where(
        threshold > 0, cumulative.gather(-1, (threshold - 1).clamp_min(0).unsqueeze(-1)).squeeze(-1), 0
    )
    at_threshold = buckets == threshold.unsqueeze(-1)
    rank_in_tie = at_threshold.cumsum(-1) - 1  # rank by index among equal buckets
    return (buckets < threshold.unsqueeze(-1)) | (at_threshold & (rank_in_tie < (count - below).unsqueeze(-1)))


def _frequencies_of(buckets: torch.Tensor, cumulative: torch.Tensor, free: int) -> torch.Tensor:
    """Frequencies of the modelled symbols ``buckets`` (a row's candidates, in index order):
    ``1 + floor(free w / Z)``, plus one unit each for the remainder's smallest keys. The bonus keys
    always lie among the candidates, so the row's full histogram ranks them correctly."""
    weights = WEIGHTS.to(buckets.device)[buckets]
    share = free * weights // weights.sum(-1, keepdim=True)
    remainder = free - share.sum(-1)
    return 1 + share + _first_keys(buckets, cumulative, remainder).to(torch.int64)


def frequency_table(buckets: torch.Tensor, top_k: int | None = None) -> FrequencyTable:
    """(N, K) buckets -> frequencies at ``PRECISION`` bits, each >= 1, rows summing to ``TOTAL``.

    Full rows when every symbol is modelled; with the tail floor, the compact form (the ``top_k``
    candidates in index order and their frequencies; every other symbol has frequency 1), computed
    without any N x K integer arithmetic past the candidate selection."""
    n, k_size = buckets.shape
    if not 1 <= k_size <= MAX_CODEBOOK_SIZE:
        raise ProbabilityError(f"alphabet size {k_size} outside [1, {MAX_CODEBOOK_SIZE}]")
    if top_k is not None and top_k < 1:
        raise ProbabilityError(f"top_k must be >= 1, got {top_k}")
    buckets = buckets.to(torch.int64)
    histogram = torch.zeros(n, NUM_BUCKETS, dtype=torch.int64, device=buckets.device)
    histogram.scatter_add_(-1, buckets, torch.ones_like(buckets))
    cumulative = histogram.cumsum(-1)
    free = TOTAL - k_size
    keep = min(top_k or k_size, k_size)
    if keep == k_size:
        return FrequencyTable(freqs=_frequencies_of(buckets, cumulative, free), alphabet_size=k_size)
    mask = _first_keys(buckets, cumulative, torch.full((n,), keep, device=buckets.device))
    candidates = mask.nonzero()[:, 1].reshape(n, keep)  # row by row, columns ascending
    freqs = _frequencies_of(buckets.gather(-1, candidates), cumulative, free)
    return FrequencyTable(freqs=freqs, alphabet_size=k_size, candidates=candidates)


def frequencies(buckets: torch.Tensor, top_k: int | None = None) -> torch.Tensor:
    """(N, K) int64 frequencies: :func:`frequency_table` expanded to full rows."""
    return frequency_table(buckets, top_k).full()


def cdf_rows(freqs: torch.Tensor) -> torch.Tensor:
    """(N, K) frequencies -> (N, K+1) cumulative table starting at 0 and ending at ``TOTAL``."""
    return torch.nn.functional.pad(freqs.cumsum(-1), (1, 0))


def symbol_intervals(freqs: torch.Tensor, symbols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(start, frequency) of each row's symbol: what an arithmetic coder consumes for encoding."""
    cdf = cdf_rows(freqs)
    start = cdf.gather(-1, symbols.unsqueeze(-1).to(torch.int64)).squeeze(-1)
    return start, freqs.gather(-1, symbols.unsqueeze(-1).to(torch.int64)).squeeze(-1)


def ideal_bits(freqs: torch.Tensor, symbols: torch.Tensor) -> torch.Tensor:
    """Exact code length -log2(f / 2^24) each symbol costs with these tables (before coder overhead)."""
    _, f = symbol_intervals(freqs, symbols)
    return PRECISION - torch.log2(f.to(torch.float64))
