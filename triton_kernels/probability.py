"""Fused Triton probability engine: scores -> integer frequency tables, bit-exact with the torch
reference in :mod:`rdvq.coding.probability`.

Public entry points (plain Python wrappers; CUDA tensors normally, CPU tensors when Triton's
interpreter is on with ``TRITON_INTERPRET=1``)::

    logit_tables(logits, top_k, mode, symbols=None)
    gaussian_tables(params, codebook, top_k, mode, symbols=None)

``mode="cdf"`` gives (N, K+1) int64 CDF rows (``cdf_rows(frequencies(...))``), ``mode="interval"``
gives ``(start, freq)`` int64 (N,) for the target ``symbols`` (``symbol_intervals``), and
``mode="table"`` gives the :class:`~rdvq.coding.tables.FrequencyTable` of ``frequency_table``:
full rows when every symbol is a candidate, else the compact form, written straight from the
kernel without any N x K buffer.

Kernel design
-------------
One program per row, tiled over the alphabet in ``BLOCK_K`` symbols (any K from 1 to 2^24 - 2),
three passes over the tiles, nothing of size N x K in global memory except a requested full output:

A. *Reference point*: the row's largest logit, or its smallest integer squared distance
   ``d_k = sum_d w_d (e_kd - mu_d)^2`` computed exactly (integers below 2^53, summed in float64:
   GPUs emulate int64 multiplies) from the int32 fixed-point codebook (stored transposed, (D, K),
   so tile loads are coalesced) in ``BLOCK_D`` dimension slices.
B. *Bucket histogram*: each tile's buckets ``q = floor(min(gap, 2047))`` go into a 2048-bin
   histogram held by the program (``tl.histogram``, 8 KiB of shared memory;
   ``RDVQ_TRITON_HISTOGRAM=atomic`` switches to global atomics into an (N, 2048) int32 scratch,
   a fallback in case ``tl.histogram`` misbehaves on some GPU).
   Every symbol of a bucket has the same weight, so the histogram alone gives the candidate
   threshold bucket ``t`` (and how many of its symbols are taken, in index order), the weight
   sum ``Z``, every share ``floor(F w / Z)``, the remainder ``R`` and the bonus threshold.
C. *Output*: the tiles are recomputed in index order; running counts of the symbols already seen
   in the two threshold buckets break ties by index exactly like the reference's cumsum. Each
   symbol's frequency ``1 + share + bonus`` is then stored (full table), prefix-summed (CDF),
   scattered to its slot among the candidates (compact table), or accumulated up to the target
   symbol (interval; this pass stops at the target's tile).

The distances are recomputed in passes B and C instead of being stored: 3x the arithmetic but
no N x K traffic. Block sizes: on a GPU ``BLOCK_K`` = 1024 (at least 128 so no lane of the 4
warps holds a replicated element, at most the next power of two of K), ``BLOCK_D`` = 4, 8 warps
(4 below 1024); on an H200 (sm_90, Triton 3.6) the Gaussian kernel at K = 65536 takes 178
registers and spills none. In the interpreter, where every tile is a round of numpy calls,
``BLOCK_K`` up to 4096 and ``BLOCK_D`` up to 32.

Exactness: bit-exact by construction
------------------------------------
The only floating-point step is the bucket quantization, and it is performed on identical
inputs with identical IEEE operations in both engines:

* logits: ``q = floor(min((max - x) * 64, 2047))`` in float32. The row maximum is exact whatever
  the reduction order (max is associative and commutative), the subtraction and the
  multiplication by 64 are single correctly rounded float32 operations (no fused multiply-add
  can form from a subtract followed by a multiply), overflow to +inf clamps to 2047 on both sides.
* Gaussian: the distances are integers, computed exactly (float64 sums of integers below 2^53
  here, float64 matmuls of them in the reference), so their minimum and difference are exact;
  then one float64 -> float32 conversion and one float32 multiply by the per-row float32
  ``scale``, both IEEE round-to-nearest-even on the CPU (torch, and numpy in the interpreter)
  and on NVIDIA GPUs.
  The PTX Triton 3.6 emits for sm_90 was checked on an H200: ``cvt.rn.f32.f64``, ``mul.f32``
  (round to nearest, nothing to fuse it with) and ``cvt.rmi.ftz.f32.f32`` for the floor, whose
  flush-to-zero only touches subnormals, which floor to 0 either way; the distance sums contract
  to ``fma.rn.f64``, exact on these integers like a separate multiply and add.

Everything after the bucket is integer arithmetic (histogram counts, int64 products up to
F * w < 2^54, floor divisions of non-negative numbers), so summation order, tiling and the
number of programs cannot change a single frequency. What could still make a real GPU differ:
another compiler version or backend that rounds the float64 -> float32 conversion or the float32
multiply differently (e.g. contracts them into something else), distances beyond 2^53 (means
outside the clamp of ``GaussianParameters.from_float``, where neither engine's float64 sums are
exact and they round in different orders), or a hardware fault. None of it goes
unnoticed: the container stores a CRC of the encoder's indices and the decoder checks it (see
``_index_crc`` in :mod:`rdvq.codec.image_codec`), raising ``DecodeMismatchError`` when its
probabilities differed. Inputs where the reference itself would compute NaN (logits that
overflow float32, a non-finite or negative ``scale``) are refused here with ``ProbabilityError``.

Interpreter mode: ``triton.jit`` decides at decoration time whether a function is compiled or
interpreted, and Triton's own standard library (``tl.sum``, ``tl.cumsum``, ``tl.max``, ...) is
decorated when ``triton.language`` is first imported. ``TRITON_INTERPRET=1`` must therefore be in
the environment before anything imports Triton (PyTorch Lightning does, so in practice: before
Python starts). The kernels here follow the mode ``triton.language`` was imported in, and a
launch raises ``ConfigError`` when the variable was changed afterwards instead of failing deep in
Triton (``tests/test_triton_kernel.py`` therefore runs itself in a subprocess).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

from rdvq.coding.probability import (
    BUCKETS_PER_NAT,
    MAX_CODEBOOK_SIZE,
    NUM_BUCKETS,
    TOTAL,
    WEIGHTS,
    FixedPointCodebook,
    GaussianParameters,
)
from rdvq.coding.tables import FrequencyTable
from rdvq.errors import ConfigError, ProbabilityError

Mode = Literal["cdf", "interval", "table"]
_MODE_CDF, _MODE_INTERVAL, _MODE_FULL, _MODE_COMPACT = 0, 1, 2, 3
_INT32_LIMIT = 2**31 - 1
_FAR = tl.constexpr(2**62)  # larger than any distance (a constexpr: kernels may only read those globals)


# ------------------------------------------------------------------------------------- kernels
@triton.jit
def _distances(mean_ptr, dimw_ptr, code_ptr, row, offs, kmask, K, D,
               DIAGONAL: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr):
    """(BLOCK_K,) exact (weighted) squared distances of one tile of codewords, as float64 integers.

    float64, not int64: GPUs emulate 64-bit integer multiplies in several instructions, and every
    value here (the int32 inputs, their differences, each product and each partial sum, all below
    the 2^53 that mean_bits guarantees) is an integer float64 represents exactly, so the sums are
    the exact integer distances whatever the order and whether multiply and add are fused."""
    acc = tl.zeros([BLOCK_K], dtype=tl.float64)
    for d0 in range(0, D, BLOCK_D):
        dims = d0 + tl.arange(0, BLOCK_D)
        dmask = dims < D
        mu = tl.load(mean_ptr + row * D + dims, mask=dmask, other=0).to(tl.float64)
        e = tl.load(code_ptr + dims.to(tl.int64)[:, None] * K + offs[None, :],
                    mask=dmask[:, None] & kmask[None, :], other=0).to(tl.float64)
        diff = e - mu[:, None]
        term = diff * diff
        if DIAGONAL:
            w = tl.load(dimw_ptr + row * D + dims, mask=dmask, other=0).to(tl.float64)
            term = term * w[:, None]
        acc += tl.sum(term, axis=0)
    return acc


@triton.jit
def _bucket_tile(logit_ptr, mean_ptr, dimw_ptr, code_ptr, row, offs, kmask, K, D, reference, scale,
                 FROM_LOGITS: tl.constexpr, DIAGONAL: tl.constexpr, BLOCK_K: tl.constexpr,
                 BLOCK_D: tl.constexpr, NUM_BINS: tl.constexpr, PER_NAT: tl.constexpr):
    """(BLOCK_K,) int32 buckets of one tile: the single float32 step, as in the reference."""
    if FROM_LOGITS:
        x = tl.load(logit_ptr + row * K + offs, mask=kmask, other=0.0)
        gap = (reference - x) * PER_NAT
    else:
        d = _distances(mean_ptr, dimw_ptr, code_ptr, row, offs, kmask, K, D, DIAGONAL, BLOCK_K, BLOCK_D)
        gap = (d - reference).to(tl.float32) * scale
    gap = tl.where(kmask, tl.minimum(gap, NUM_BINS - 1.0), NUM_BINS - 1.0)  # lanes past K: any bucket
    return tl.floor(gap).to(tl.int32)


@triton.jit
def _probability_kernel(
    logit_ptr, mean_ptr, scale_ptr, dimw_ptr, code_ptr, weight_ptr, symbol_ptr,
    out_a_ptr, out_b_ptr, scratch_ptr,
    K, D, keep,
    FROM_LOGITS: tl.constexpr, DIAGONAL: tl.constexpr, MODE: tl.constexpr, ATOMIC_HISTOGRAM: tl.constexpr,
    BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
    NUM_BINS: tl.constexpr, TOTAL_MASS: tl.constexpr, PER_NAT: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    lanes = tl.arange(0, BLOCK_K)

    # ---- pass A: reference point (largest logit / smallest distance)
    if FROM_LOGITS:
        best = tl.full([BLOCK_K], float("-inf"), tl.float32)
        for start in range(0, K, BLOCK_K):
            offs = start + lanes
            kmask = offs < K
            x = tl.load(logit_ptr + row * K + offs, mask=kmask, other=float("-inf"))
            best = tl.maximum(best, x)
        reference = tl.max(best, axis=0)
        scale = 0.0
    else:
        nearest = tl.full([BLOCK_K], _FAR, tl.float64)
        for start in range(0, K, BLOCK_K):
            offs = start + lanes
            kmask = offs < K
            d = _distances(mean_ptr, dimw_ptr, code_ptr, row, offs, kmask, K, D, DIAGONAL, BLOCK_K, BLOCK_D)
            nearest = tl.minimum(nearest, tl.where(kmask, d, _FAR))
        reference = tl.min(nearest, axis=0)
        scale = tl.load(scale_ptr + row)

    # ---- pass B: histogram of buckets
    bins = tl.arange(0, NUM_BINS)
    hist = tl.zeros([NUM_BINS], dtype=tl.int32)
    for start in range(0, K, BLOCK_K):
        offs = start + lanes
        kmask = offs < K
        q = _bucket_tile(logit_ptr, mean_ptr, dimw_ptr, code_ptr, row, offs, kmask, K, D, reference, scale,
                         FROM_LOGITS, DIAGONAL, BLOCK_K, BLOCK_D, NUM_BINS, PER_NAT)
        if ATOMIC_HISTOGRAM:
            tl.atomic_add(scratch_ptr + row * NUM_BINS + q, 1, mask=kmask)
        else:
            hist += tl.histogram(q, NUM_BINS, mask=kmask)
    if ATOMIC_HISTOGRAM:
        tl.debug_barrier()
        hist = tl.load(scratch_ptr + row * NUM_BINS + bins, cache_modifier=".cg")  # L2: where the atomics landed

    # ---- everything a bucket decides, from the histogram alone
    cum = tl.cumsum(hist, axis=0)
    weights = tl.load(weight_ptr + bins)
    # candidates: all buckets below t, and the first `take` symbols (by index) of bucket t
    t = tl.sum((cum < keep).to(tl.int32), axis=0)
    take = keep - tl.sum(tl.where(bins < t, hist, 0), axis=0)
    count = tl.where(bins < t, hist, tl.where(bins == t, take, 0)).to(tl.int64)
    z = tl.sum(count * weights, axis=0)
    free = tl.full([], TOTAL_MASS, tl.int64) - K
    shares = free * weights // z
    remainder = free - tl.sum(count * shares, axis=0)
    # bonus: the first `remainder` keys (all candidates, since remainder < number of candidates)
    t2 = tl.sum((cum.to(tl.int64) < remainder).to(tl.int32), axis=0)
    take2 = remainder - tl.sum(tl.where(bins < t2, hist, 0), axis=0)

    # ---- pass C: frequencies in index order
    end = K
    if MODE == 1:
        symbol = tl.load(symbol_ptr + row).to(tl.int32)
        end = (symbol // BLOCK_K + 1) * BLOCK_K
    tied = tl.full([], 0, tl.int32)
    tied2 = tl.full([], 0, tl.int32)
    taken = tl.full([], 0, tl.int32)
    running = tl.full([], 0, tl.int64)
    picked = tl.full([], 0, tl.int64)
    for start in range(0, end, BLOCK_K):
        offs = start + lanes
        kmask = offs < K
        q = _bucket_tile(logit_ptr, mean_ptr, dimw_ptr, code_ptr, row, offs, kmask, K, D, reference, scale,
                         FROM_LOGITS, DIAGONAL, BLOCK_K, BLOCK_D, NUM_BINS, PER_NAT)
        at_t = (q == t) & kmask
        rank = tied + tl.cumsum(at_t.to(tl.int32), axis=0) - 1
        candidate = kmask & ((q < t) | (at_t & (rank < take)))
        tied += tl.sum(at_t.to(tl.int32), axis=0)
        at_t2 = (q == t2) & kmask
        rank2 = tied2 + tl.cumsum(at_t2.to(tl.int32), axis=0) - 1
        bonus = kmask & ((q < t2) | (at_t2 & (rank2 < take2)))
        tied2 += tl.sum(at_t2.to(tl.int32), axis=0)
        w = tl.load(weight_ptr + q, mask=candidate, other=0)
        freq = tl.where(kmask, 1 + free * w // z + bonus.to(tl.int64), 0)
        if MODE == 0:
            tl.store(out_a_ptr + row * (K + 1) + 1 + offs, running + tl.cumsum(freq, axis=0), mask=kmask)
            running += tl.sum(freq, axis=0)
        elif MODE == 1:
            running += tl.sum(tl.where(offs < symbol, freq, 0), axis=0)
            picked += tl.sum(tl.where(offs == symbol, freq, 0), axis=0)
        elif MODE == 2:
            tl.store(out_a_ptr + row * K + offs, freq, mask=kmask)
        else:
            slot = taken + tl.cumsum(candidate.to(tl.int32), axis=0) - 1
            tl.store(out_a_ptr + row * keep + slot, offs.to(tl.int64), mask=candidate)
            tl.store(out_b_ptr + row * keep + slot, freq, mask=candidate)
            taken += tl.sum(candidate.to(tl.int32), axis=0)
    if MODE == 0:
        tl.store(out_a_ptr + row * (K + 1), tl.full([], 0, tl.int64))
    if MODE == 1:
        tl.store(out_a_ptr + row, running)
        tl.store(out_b_ptr + row, picked)


def interpreting() -> bool:
    """True when ``TRITON_INTERPRET`` asks for Triton's CPU interpreter (read at every call)."""
    return bool(triton.knobs.runtime.interpret)


def _language_interpreted() -> bool:
    """Whether ``triton.language`` itself was imported in interpreter mode (its standard library,
    ``tl.sum``, ``tl.cumsum``, ..., consists of functions decorated once, at that import)."""
    return isinstance(tl.zeros, InterpretedFunction)


_JIT_FUNCTIONS = ("_distances", "_bucket_tile", "_probability_kernel")


def _kernel():
    """The kernel, decorated in the same mode (compiled or interpreted) as ``triton.language``."""
    interpreted = _language_interpreted()
    if interpreting() != interpreted:
        raise ConfigError(
            f"TRITON_INTERPRET={'1' if interpreting() else '0'} but Triton was imported with the other setting; "
            "Triton reads it at import time, so set it before starting Python"
        )
    namespace = globals()
    if isinstance(namespace["_probability_kernel"], InterpretedFunction) != interpreted:
        for name in _JIT_FUNCTIONS:
            namespace[name] = triton.jit(namespace[name].fn)
    return namespace["_probability_kernel"]


# ------------------------------------------------------------------------------------ wrappers
@dataclass(frozen=True)
class KernelCodebook:
    """A fixed-point codebook laid out for the kernel: int32, transposed to (D, K), on one device."""

    values_t: torch.Tensor  # (D, K) int32, contiguous
    size: int
    dim: int

    @classmethod
    def from_fixed_point(cls, codebook: FixedPointCodebook, device: torch.device | str) -> "KernelCodebook":
        values = codebook.values
        if values.dim() != 2:
            raise ProbabilityError(f"codebook values must be (K, D), got shape {tuple(values.shape)}")
        _check_int32("codebook values", values)
        values_t = values.to(device=device, dtype=torch.int32).t().contiguous()
        return cls(values_t=values_t, size=values.shape[0], dim=values.shape[1])


_WEIGHT_CACHE: dict[str, torch.Tensor] = {}


def _weights_on(device: torch.device) -> torch.Tensor:
    key = str(device)
    if key not in _WEIGHT_CACHE:
        _WEIGHT_CACHE[key] = WEIGHTS.to(device)
    return _WEIGHT_CACHE[key]


def _check_int32(name: str, tensor: torch.Tensor) -> None:
    if tensor.numel() and int(tensor.abs().max()) > _INT32_LIMIT:
        raise ProbabilityError(f"{name} exceed the int32 range the kernel stores them in")


def _check_common(k_size: int, top_k: int | None, mode: str) -> int:
    if not 1 <= k_size <= MAX_CODEBOOK_SIZE:
        raise ProbabilityError(f"alphabet size {k_size} outside [1, {MAX_CODEBOOK_SIZE}]")
    if top_k is not None and top_k < 1:
        raise ProbabilityError(f"top_k must be >= 1, got {top_k}")
    if mode not in ("cdf", "interval", "table"):
        raise ProbabilityError(f"unknown mode {mode!r} (choose cdf, interval or table)")
    return min(top_k or k_size, k_size)


def _check_symbols(symbols: torch.Tensor | None, n: int, k_size: int, device: torch.device) -> torch.Tensor:
    if symbols is None:
        raise ProbabilityError('mode "interval" needs the target symbols')
    symbols = symbols.reshape(-1)
    if symbols.numel() != n:
        raise ProbabilityError(f"{symbols.numel()} symbols for {n} rows")
    if symbols.dtype.is_floating_point or symbols.dtype == torch.bool:
        raise ProbabilityError(f"symbols must be integers, got {symbols.dtype}")
    if n and (int(symbols.min()) < 0 or int(symbols.max()) >= k_size):
        raise ProbabilityError(f"symbols outside [0, {k_size})")
    return symbols.to(device=device, dtype=torch.int64).contiguous()


def _block_sizes(k_size: int, dim: int) -> tuple[int, int, int]:
    """(BLOCK_K, BLOCK_D, num_warps)."""
    k_pow2 = triton.next_power_of_2(k_size)
    d_pow2 = triton.next_power_of_2(max(dim, 1))
    if interpreting():  # few, large tiles: every interpreted op is a numpy call
        return min(k_pow2, 4096), min(d_pow2, 32), 1
    block_k = max(128, min(k_pow2, 1024))  # >= 32 x 4 lanes: no replicated elements in the histogram
    return block_k, min(d_pow2, 4), 8 if block_k >= 1024 else 4


def _check_device(device: torch.device) -> None:
    if device.type == "cpu" and not interpreting():
        raise ConfigError("the Triton kernel needs CUDA tensors (or TRITON_INTERPRET=1 for the CPU interpreter)")


def _run(
    n: int, k_size: int, dim: int, keep: int, mode: str, symbols: torch.Tensor | None, device: torch.device, *,
    logits: torch.Tensor | None = None, mean: torch.Tensor | None = None, scale: torch.Tensor | None = None,
    dim_weights: torch.Tensor | None = None, code: torch.Tensor | None = None,
):
    full = keep == k_size
    if mode == "interval":
        symbols = _check_symbols(symbols, n, k_size, device)
    empty = torch.zeros(0, dtype=torch.int64, device=device)
    if mode == "cdf":
        code_mode, out_a, out_b = _MODE_CDF, torch.empty(n, k_size + 1, dtype=torch.int64, device=device), empty
    elif mode == "interval":
        code_mode = _MODE_INTERVAL
        out_a = torch.empty(n, dtype=torch.int64, device=device)
        out_b = torch.empty(n, dtype=torch.int64, device=device)
    elif full:
        code_mode, out_a, out_b = _MODE_FULL, torch.empty(n, k_size, dtype=torch.int64, device=device), empty
    else:
        code_mode = _MODE_COMPACT
        out_a = torch.empty(n, keep, dtype=torch.int64, device=device)
        out_b = torch.empty(n, keep, dtype=torch.int64, device=device)
    if n:
        atomic = os.environ.get("RDVQ_TRITON_HISTOGRAM", "").lower() == "atomic"
        scratch = torch.zeros(n if atomic else 0, NUM_BUCKETS, dtype=torch.int32, device=device)
        block_k, block_d, warps = _block_sizes(k_size, dim)
        _kernel()[(n,)](
            logits if logits is not None else empty,
            mean if mean is not None else empty,
            scale if scale is not None else empty,
            dim_weights if dim_weights is not None else empty,
            code if code is not None else empty,
            _weights_on(device),
            symbols if symbols is not None else empty,
            out_a, out_b, scratch,
            k_size, dim, keep,
            FROM_LOGITS=logits is not None, DIAGONAL=dim_weights is not None, MODE=code_mode,
            ATOMIC_HISTOGRAM=atomic, BLOCK_K=block_k, BLOCK_D=block_d,
            NUM_BINS=NUM_BUCKETS, TOTAL_MASS=TOTAL, PER_NAT=BUCKETS_PER_NAT,
            num_warps=warps,
        )
    if mode == "cdf":
        return out_a
    if mode == "interval":
        return out_a, out_b
    if full:
        return FrequencyTable(freqs=out_a, alphabet_size=k_size)
    return FrequencyTable(freqs=out_b, alphabet_size=k_size, candidates=out_a)


def logit_tables(logits: torch.Tensor, top_k: int | None, mode: Mode, symbols: torch.Tensor | None = None):
    """(N, K) logits -> CDF rows, (start, freq) of ``symbols``, or a FrequencyTable (see module doc)."""
    if logits.dim() != 2:
        raise ProbabilityError(f"logits must be (N, K), got shape {tuple(logits.shape)}")
    keep = _check_common(logits.shape[1], top_k, mode)
    if not torch.isfinite(logits).all():
        raise ProbabilityError("logits contain NaN or infinite values; refusing to build a distribution from them")
    _check_device(logits.device)
    logits = logits.to(torch.float32).contiguous()
    if not torch.isfinite(logits).all():
        raise ProbabilityError("logits overflow float32; refusing to build a distribution from them")
    n, k_size = logits.shape
    return _run(n, k_size, 0, keep, mode, symbols, logits.device, logits=logits)


def gaussian_tables(
    params: GaussianParameters,
    codebook: FixedPointCodebook | KernelCodebook,
    top_k: int | None,
    mode: Mode,
    symbols: torch.Tensor | None = None,
):
    """Fixed-point Gaussians over a fixed-point codebook -> like :func:`logit_tables`.

    ``codebook`` may be a :class:`KernelCodebook` prepared once for many calls on one device.
    """
    device = params.mean.device
    _check_device(device)
    if not isinstance(codebook, KernelCodebook) or codebook.values_t.device != device:
        if isinstance(codebook, KernelCodebook):
            codebook = KernelCodebook(codebook.values_t.to(device), codebook.size, codebook.dim)
        else:
            codebook = KernelCodebook.from_fixed_point(codebook, device)
    keep = _check_common(codebook.size, top_k, mode)
    mean = params.mean
    if mean.dim() != 2 or mean.shape[1] != codebook.dim:
        raise ProbabilityError(f"means of shape {tuple(mean.shape)} do not match a codebook of dimension {codebook.dim}")
    n = mean.shape[0]
    scale = params.scale.reshape(-1)
    if scale.numel() != n:
        raise ProbabilityError(f"{scale.numel()} scales for {n} positions")
    if scale.dtype != torch.float32:
        raise ProbabilityError(f"Gaussian scales must be float32 (the reference multiplies in float32), got {scale.dtype}")
    if not (torch.isfinite(scale).all() and (scale >= 0).all()):
        raise ProbabilityError("Gaussian scales must be finite and non-negative")
    _check_int32("means", mean)
    dim_weights = params.dim_weights
    if dim_weights is not None:
        if dim_weights.shape != mean.shape:
            raise ProbabilityError(f"dimension weights of shape {tuple(dim_weights.shape)} do not match the means")
        _check_int32("dimension weights", dim_weights)
        if dim_weights.numel() and int(dim_weights.min()) < 0:
            raise ProbabilityError("dimension weights must be non-negative")
        dim_weights = dim_weights.to(device=device, dtype=torch.int32).contiguous()
    return _run(
        n, codebook.size, codebook.dim, keep, mode, symbols, device,
        mean=mean.to(torch.int32).contiguous(), scale=scale.contiguous(),
        dim_weights=dim_weights, code=codebook.values_t,
    )


__all__ = ["KernelCodebook", "gaussian_tables", "logit_tables"]
