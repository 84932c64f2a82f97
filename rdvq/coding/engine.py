"""Dispatch between implementations of the probability engine, and the order symbols are coded in.

All implementations return identical integer tables (see :mod:`rdvq.coding.probability`), so the
choice of engine changes speed only, never the bitstream:

* ``"torch"``: the reference in :mod:`rdvq.coding.probability`, on the inputs' device.
* ``"numba"``: the fused CPU kernel in :mod:`rdvq.coding.cpu_kernel` (CPU tensors).
* ``"triton"``: the fused GPU kernel, the ``triton`` entry of the ``rdvq.probability_kernels``
  entry-point group (``triton_kernels.probability`` in this distribution; CUDA tensors, or CPU
  tensors in Triton's interpreter when ``TRITON_INTERPRET=1`` was set before Python started).
  Looking it up by entry point keeps the core free of imports of the top-level packages.
* ``"auto"``: the Triton kernel for CUDA tensors (and whenever ``TRITON_INTERPRET=1`` is set),
  the numba kernel for CPU tensors.

Entropy models code through :meth:`ProbabilityEngine.encode_gaussian`, ``decode_gaussian``,
``encode_logits`` and ``decode_logits``: they say *what* to code under which distributions and the
engine decides how (which tables to build, in which chunks). The encoder gets only what it needs:
with full tables the numba path hands the coder each symbol's interval, never a table.

Coding order (part of the format). Without the tail floor, symbols are coded one after another
in the order given. With it, positions go in *coding blocks* of :func:`coding_block` positions,
``max(1, 2^22 // K)``: a block's candidate slots first, then its escaped symbols' offsets.
Memory chunks never change that order, so every engine writes the same bytes.

Decoding goes chunk by chunk (never more than one coding block), so an overdrawn stream stops at
the first chunk that overdraws.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import weakref
from collections.abc import Iterator
from types import ModuleType
from typing import Literal

import numpy as np
import torch

from rdvq.coding import probability as ref
from rdvq.coding.candidate_search import CodebookClusters, check_search_width, searched_table
from rdvq.coding.format import CODING_BLOCK_CELLS, LEAF_SIZE
from rdvq.coding.probability import FixedPointCodebook, GaussianParameters
from rdvq.coding.range_coder import IndexDecoder, IndexEncoder
from rdvq.coding.tables import FrequencyTable
from rdvq.errors import ConfigError, InvalidHeaderError

EngineName = Literal["auto", "torch", "numba", "triton"]
ENGINES = ("auto", "torch", "numba", "triton")
KERNEL_ENTRY_POINTS = "rdvq.probability_kernels"
# The numba path works on row chunks of this many cells (2 MiB of float64): cache-sized.
_CPU_CHUNK_CELLS = 1 << 18
# The pruned tail-floor search pays for itself for codebooks at least this large and this many
# times `top_k`; below that a full pass over K costs less than the search (measured).
_PRUNE_MIN_SIZE = 4096
_PRUNE_FACTOR = 4
# Compact tables on the CPU: candidate cells per kernel call (a few MiB of output).
_CPU_COMPACT_CELLS = 1 << 18


def coding_block(alphabet_size: int) -> int:
    """Positions per coding block of the bounded tail floor (see the module docstring)."""
    return max(1, CODING_BLOCK_CELLS // alphabet_size)


def triton_interpreting() -> bool:
    """True when ``TRITON_INTERPRET`` asks for Triton's CPU interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


@functools.cache
def triton_kernel() -> ModuleType | None:
    """The Triton kernel module registered for this distribution, or None when it does not load."""
    for entry in importlib.metadata.entry_points(group=KERNEL_ENTRY_POINTS, name="triton"):
        try:
            return entry.load()
        except Exception:  # ImportError, or a broken install raising something else at import
            return None
    return None


def triton_available() -> bool:
    return triton_kernel() is not None


@functools.cache
def _cpu_kernel() -> ModuleType:
    from rdvq.coding import cpu_kernel  # numba compiles (or loads its cache) on first use

    return cpu_kernel


_clustered: dict[tuple[int, int], CodebookClusters] = {}  # (id of a codebook's values, leaf size) -> clusters


def _clustered_codebook(codebook: FixedPointCodebook, cluster_size: int = LEAF_SIZE) -> CodebookClusters:
    """The codebook's clusters (:mod:`rdvq.coding.candidate_search`), built once per codebook tensor."""
    key = (id(codebook.values), cluster_size)
    if key not in _clustered:
        _clustered[key] = CodebookClusters.of(codebook, cluster_size)
        weakref.finalize(codebook.values, _clustered.pop, key, None)
    return _clustered[key]


def _pruning_leaf_size(alphabet_size: int) -> int:
    """Clusters of about sqrt(K) codewords: what the exact pruned search runs fastest with (measured)."""
    return 1 << ((alphabet_size.bit_length() + 1) // 2)


def _spans(count: int, step: int) -> Iterator[slice]:
    for start in range(0, count, step):
        yield slice(start, min(start + step, count))


def tail_floor(top_k: int | None, alphabet_size: int) -> int | None:
    """The tail floor an encoder applies: ``top_k``, or None (off) when it would keep every symbol."""
    return top_k if top_k is not None and top_k < alphabet_size else None


def check_tail_floor(top_k: int, alphabet_size: int) -> None:
    """Refuse a file's tail floor (0: off) that no encoder writes for this alphabet."""
    if top_k >= alphabet_size:
        raise InvalidHeaderError(f"tail floor top_k={top_k} is not below the codebook size {alphabet_size}")


class ProbabilityEngine:
    """Turns logits or Gaussians into frequency tables and codes symbols under them.

    ``top_k`` enables the bounded tail floor: only the ``top_k`` most likely symbols of each
    position get modelled mass, which keeps coding fast and compact for very large codebooks.
    ``search_width`` (Gaussians, with ``top_k``) takes the candidates from about that many
    codewords near each mean instead of from all K (:mod:`rdvq.coding.candidate_search`): time
    nearly independent of K, at some rate. It is part of the format; at ``>= K`` it changes nothing.
    ``max_elements`` bounds the table cells the reference and the Triton kernel hold at once.
    The Triton kernel has no candidate search: searched tables come from the reference, on the
    GPU when the inputs are there.
    """

    def __init__(
        self, name: EngineName = "auto", top_k: int | None = None, max_elements: int = 1 << 22,
        search_width: int | None = None,
    ) -> None:
        if name not in ENGINES:
            raise ConfigError(f"unknown probability engine {name!r} (choose {', '.join(ENGINES)})")
        if top_k is not None and top_k < 1:
            raise ConfigError(f"top_k must be >= 1, got {top_k}")
        check_search_width(top_k, search_width)
        if name == "triton" and not triton_available():
            raise ConfigError("probability engine 'triton' needs the triton package, which does not import here")
        self.name = name
        self.top_k = top_k
        self.search_width = search_width
        self.max_elements = max_elements

    def rows_per_chunk(self, alphabet_size: int) -> int:
        return max(1, self.max_elements // alphabet_size)

    def kernel_rows_per_chunk(self, alphabet_size: int) -> int:
        """Rows per Triton launch: the kernel allocates only its output (full rows, or the
        ``top_k`` candidates and their frequencies) plus a 2048-bin histogram per row."""
        keep = min(self.top_k or alphabet_size, alphabet_size)
        width = alphabet_size if keep == alphabet_size else 2 * keep
        return max(1, self.max_elements // max(width, ref.NUM_BUCKETS))

    def backend(self, device: torch.device) -> Literal["torch", "numba", "triton"]:
        """Which implementation tensors on ``device`` go to."""
        interpreting = triton_interpreting()
        if self.name == "torch":
            return "torch"
        if self.name == "auto":
            return "triton" if (device.type == "cuda" or interpreting) and triton_available() else (
                "numba" if device.type == "cpu" else "torch"
            )
        if self.name == "numba":
            if device.type != "cpu":
                raise ConfigError(f"probability engine 'numba' runs on the CPU, got {device.type} tensors")
            return "numba"
        if device.type != "cuda" and not interpreting:
            raise ConfigError(
                f"probability engine 'triton' needs CUDA tensors, got {device.type} ones "
                "(set TRITON_INTERPRET=1 before starting Python to run the kernel on the CPU)"
            )
        return "triton"

    def _compact(self, alphabet_size: int) -> bool:
        return self.top_k is not None and self.top_k < alphabet_size

    def _searched(self, alphabet_size: int) -> bool:
        return self._compact(alphabet_size) and self.search_width is not None and self.search_width < alphabet_size

    # ------------------------------------------------------------------ tables
    def logit_tables(self, logits: torch.Tensor) -> Iterator[FrequencyTable]:
        """Tables for (N, K) logits: a coding block at a time with the tail floor, else chunks of rows."""
        backend = self.backend(logits.device)
        size = logits.shape[-1]
        for span in self._table_spans(logits.shape[0], size, backend):
            yield self._logit_table(logits[span], backend)

    def gaussian_tables(self, params: GaussianParameters, codebook: FixedPointCodebook) -> Iterator[FrequencyTable]:
        """Tables for per-position Gaussians over a fixed-point codebook, spans as :meth:`logit_tables`.

        Compact tables on the CPU are computed many coding blocks at a time
        (:meth:`_cpu_compact_tables`) and handed out block by block."""
        backend = self.backend(params.mean.device)
        size = codebook.size
        if backend == "numba" and self._compact(size):
            block = coding_block(size)
            for _, table in self._cpu_compact_tables(params, codebook):
                for rows in _spans(table.num_positions, block):
                    yield FrequencyTable(table.freqs[rows], size, table.candidates[rows])
            return
        for span in self._table_spans(params.num_positions, size, backend):
            yield self._gaussian_table(params[span], codebook, backend)

    def _cpu_compact_tables(
        self, params: GaussianParameters, codebook: FixedPointCodebook
    ) -> Iterator[tuple[slice, FrequencyTable]]:
        """(positions, their compact table) from the CPU kernel, many coding blocks per call: a
        kernel call per block of 64 rows at K = 65536 would run on one thread."""
        block = coding_block(codebook.size)
        for span in _spans(params.num_positions, block * max(1, _CPU_COMPACT_CELLS // (self.top_k * block))):
            yield span, self._gaussian_table(params[span], codebook, "numba")

    def _table_spans(self, count: int, size: int, backend: str) -> Iterator[slice]:
        if self._compact(size):
            return _spans(count, coding_block(size))
        if backend == "triton":
            return _spans(count, self.kernel_rows_per_chunk(size))
        if backend == "numba":
            return _spans(count, min(self.rows_per_chunk(size), max(1, _CPU_CHUNK_CELLS // size)))
        return _spans(count, self.rows_per_chunk(size))

    def _logit_table(self, logits: torch.Tensor, backend: str) -> FrequencyTable:
        size = logits.shape[-1]
        keep = self.top_k if self._compact(size) else None
        if backend == "triton":
            kernel = triton_kernel()
            parts = [kernel.logit_tables(logits[s], keep, "table").to("cpu") for s in _spans(logits.shape[0], self.kernel_rows_per_chunk(size))]
            return _joined(parts, size)
        if backend == "numba":
            cpu = _cpu_kernel()
            scores = _logit_scores(logits)
            if keep is None:
                return FrequencyTable(freqs=torch.from_numpy(cpu.coder_rows(scores, None)).to(torch.int64) + 1, alphabet_size=size)
            candidates, freqs = cpu.compact(scores, None, keep)
            return FrequencyTable(torch.from_numpy(freqs), size, torch.from_numpy(candidates))
        return ref.frequency_table(ref.logit_buckets(logits), keep).to("cpu")

    def _gaussian_table(self, params: GaussianParameters, codebook: FixedPointCodebook, backend: str) -> FrequencyTable:
        size = codebook.size
        keep = self.top_k if self._compact(size) else None
        if self._searched(size):
            if backend == "numba":
                return FrequencyTable(*self._cpu_gaussian_searched(params, codebook, keep))
            return searched_table(params, codebook, _clustered_codebook(codebook), keep, self.search_width)
        if backend == "triton":
            kernel = triton_kernel()
            prepared = kernel.KernelCodebook.from_fixed_point(codebook, params.mean.device)
            step = self.kernel_rows_per_chunk(size)
            parts = [kernel.gaussian_tables(params[s], prepared, keep, "table").to("cpu") for s in _spans(params.num_positions, step)]
            return _joined(parts, size)
        if backend == "numba":
            cpu = _cpu_kernel()
            if keep is None:
                rows = cpu.coder_rows(*_gaussian_scores(params, codebook))
                return FrequencyTable(freqs=torch.from_numpy(rows).to(torch.int64) + 1, alphabet_size=size)
            candidates, freqs = self._cpu_gaussian_compact(params, codebook, keep)
            return FrequencyTable(torch.from_numpy(freqs), size, torch.from_numpy(candidates))
        return ref.frequency_table(ref.gaussian_buckets(params, codebook), keep).to("cpu")

    @staticmethod
    def _cpu_gaussian_compact(params: GaussianParameters, codebook: FixedPointCodebook, keep: int):
        cpu = _cpu_kernel()
        if codebook.size < max(_PRUNE_MIN_SIZE, _PRUNE_FACTOR * keep):
            return cpu.compact(*_gaussian_scores(params, codebook), keep)
        clusters = _clustered_codebook(codebook, _pruning_leaf_size(codebook.size))
        return cpu.gaussian_compact_pruned(*_fixed_point_arrays(params), clusters, keep)

    def _cpu_gaussian_searched(self, params: GaussianParameters, codebook: FixedPointCodebook, keep: int):
        """(freqs, alphabet size, candidates) of the searched table, from the CPU kernel."""
        candidates, freqs = _cpu_kernel().gaussian_compact_searched(
            *_fixed_point_arrays(params), _clustered_codebook(codebook), keep, self.search_width
        )
        return torch.from_numpy(freqs), codebook.size, torch.from_numpy(candidates)

    # ------------------------------------------------------------------ coding
    def encode_gaussian(
        self, encoder: IndexEncoder, symbols: torch.Tensor, params: GaussianParameters, codebook: FixedPointCodebook
    ) -> None:
        """Encode ``symbols`` (N,) under the per-position Gaussians ``params`` over ``codebook``."""
        symbols = symbols.reshape(-1)
        backend = self.backend(params.mean.device)
        if backend == "numba" and not self._compact(codebook.size):
            spans = list(self._table_spans(params.num_positions, codebook.size, backend))
            scratch = _ChunkScratch(spans, codebook.size)
            for span in spans:
                scores, scales = scratch.gaussian_scores(params[span], codebook)
                encoder.encode_intervals(*_cpu_kernel().intervals(scores, scales, _symbols(symbols[span])), codebook.size)
            return
        if backend == "numba" and self._compact(codebook.size):
            for span, table in self._cpu_compact_tables(params, codebook):
                encoder.encode(symbols[span], table, coding_block(codebook.size))
            return
        encoder.encode_tables(symbols, self.gaussian_tables(params, codebook))

    def decode_gaussian(self, decoder: IndexDecoder, params: GaussianParameters, codebook: FixedPointCodebook) -> torch.Tensor:
        """Decode (N,) int64 symbols coded with :meth:`encode_gaussian`."""
        backend = self.backend(params.mean.device)
        if backend == "numba" and not self._compact(codebook.size):
            spans = list(self._table_spans(params.num_positions, codebook.size, backend))
            scratch = _ChunkScratch(spans, codebook.size)
            return _joined_symbols(
                decoder.decode_rows(scratch.coder_rows(*scratch.gaussian_scores(params[span], codebook))) for span in spans
            )
        if backend == "numba" and self._compact(codebook.size):
            block = coding_block(codebook.size)
            return _joined_symbols(decoder.decode(table, block) for _, table in self._cpu_compact_tables(params, codebook))
        return decoder.decode_tables(self.gaussian_tables(params, codebook))

    def encode_logits(self, encoder: IndexEncoder, symbols: torch.Tensor, logits: torch.Tensor) -> None:
        """Encode ``symbols`` (N,) under the per-position distributions softmax(``logits``) (N, K)."""
        symbols = symbols.reshape(-1)
        size = logits.shape[-1]
        backend = self.backend(logits.device)
        if backend == "numba" and not self._compact(size):
            for span in self._table_spans(logits.shape[0], size, backend):
                starts, freqs = _cpu_kernel().intervals(_logit_scores(logits[span]), None, _symbols(symbols[span]))
                encoder.encode_intervals(starts, freqs, size)
            return
        encoder.encode_tables(symbols, self.logit_tables(logits))

    def decode_logits(self, decoder: IndexDecoder, logits: torch.Tensor) -> torch.Tensor:
        """Decode (N,) int64 symbols coded with :meth:`encode_logits`."""
        size = logits.shape[-1]
        backend = self.backend(logits.device)
        if backend == "numba" and not self._compact(size):
            spans = self._table_spans(logits.shape[0], size, backend)
            return _joined_symbols(decoder.decode_rows(_cpu_kernel().coder_rows(_logit_scores(logits[span]), None)) for span in spans)
        return decoder.decode_tables(self.logit_tables(logits))


def _joined(parts: list[FrequencyTable], size: int) -> FrequencyTable:
    if len(parts) == 1:
        return parts[0]
    candidates = None if parts[0].candidates is None else torch.cat([p.candidates for p in parts])
    return FrequencyTable(torch.cat([p.freqs for p in parts]), size, candidates)


def _joined_symbols(parts: Iterator[torch.Tensor]) -> torch.Tensor:
    decoded = list(parts)
    return torch.cat(decoded) if decoded else torch.zeros(0, dtype=torch.int64)


def _symbols(symbols: torch.Tensor):
    return symbols.to(torch.int64).cpu().contiguous().numpy()


def _logit_scores(logits: torch.Tensor):
    """float32 logits for the CPU kernel, refused (as by the reference) when not finite."""
    ref.require_finite("logits", logits)
    return logits.detach().to(torch.float32).cpu().contiguous().numpy()


def _fixed_point_arrays(params: GaussianParameters):
    """Means (float64), scales (float32) and weights (float64 or None) for the clustered kernels."""
    ref.require_finite("scales", params.scale)
    weights = None if params.dim_weights is None else params.dim_weights.to(torch.float64).cpu().numpy()
    return params.mean.to(torch.float64).cpu().numpy(), params.scale.cpu().contiguous().numpy(), weights


class _ChunkScratch:
    """The (rows, K) float64 arrays of one call's row chunks, allocated once and reused. A large
    codebook is coded a few rows at a time, and fresh multi-MiB arrays per chunk fragment the heap:
    one K = 65536 decode grew the resident set by about 1 GiB (measured)."""

    def __init__(self, spans: list[slice], size: int) -> None:
        rows = max((span.stop - span.start for span in spans), default=0)
        self.scores = torch.empty(rows, size, dtype=torch.float64)
        self.rows: np.ndarray | None = None  # the decoder's, made on first use

    def gaussian_scores(self, params: GaussianParameters, codebook: FixedPointCodebook):
        """As :func:`_gaussian_scores`, into the scratch array."""
        return _gaussian_scores(params, codebook, out=self.scores[: params.num_positions])

    def coder_rows(self, scores: np.ndarray, scales: np.ndarray) -> np.ndarray:
        if self.rows is None:
            self.rows = np.empty(self.scores.shape, np.float64)
        return _cpu_kernel().coder_rows(scores, scales, out=self.rows[: scores.shape[0]])


def _gaussian_scores(params: GaussianParameters, codebook: FixedPointCodebook, out: torch.Tensor | None = None):
    """The reference's exact relative distances (float64 (N, K), into ``out`` when given) and the
    rows' float32 scales."""
    ref.require_finite("scales", params.scale)
    scores = ref.relative_distances(params, codebook, out=out)
    return scores.cpu().numpy(), params.scale.cpu().contiguous().numpy()
