"""Dispatch between implementations of the probability engine, in memory-bounded row chunks.

All implementations return identical integer tables (see :mod:`rdvq.coding.probability`), so the
choice of engine changes speed only, never the bitstream:

* ``"torch"``: the reference in :mod:`rdvq.coding.probability`, on the inputs' device.
* ``"triton"``: the fused kernel in :mod:`triton_kernels.probability` (CUDA tensors, or CPU tensors
  in Triton's interpreter when ``TRITON_INTERPRET=1`` was set before Python started).
* ``"auto"``: the kernel for CUDA tensors when Triton imports, and whenever ``TRITON_INTERPRET=1``
  is set; the reference otherwise.

Tables are always handed back on the CPU, where the range coder runs.

Entropy models code through :meth:`ProbabilityEngine.encode_gaussian`, ``decode_gaussian``,
``encode_logits`` and ``decode_logits``: they say *what* to code under which distributions and
the engine decides how (which tables to build, in which chunks), so faster paths need no change
in the models. Decoding goes chunk by chunk, so an overdrawn stream stops at the first chunk.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Iterator
from typing import Literal

import torch

from rdvq.coding import probability as ref
from rdvq.coding.probability import FixedPointCodebook, GaussianParameters
from rdvq.coding.range_coder import IndexDecoder, IndexEncoder
from rdvq.coding.tables import FrequencyTable
from rdvq.errors import ConfigError

EngineName = Literal["auto", "torch", "triton"]
ENGINES = ("auto", "torch", "triton")


@functools.cache
def triton_available() -> bool:
    """True when Triton and the kernel module import in this environment."""
    try:
        importlib.import_module("triton_kernels.probability")
    except Exception:  # ImportError, or a broken install raising something else at import
        return False
    return True


def triton_interpreting() -> bool:
    """True when ``TRITON_INTERPRET`` asks for Triton's CPU interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


class ProbabilityEngine:
    """Turns logits or Gaussians into frequency tables, ``max_elements`` table cells at a time.

    ``top_k`` enables the bounded tail floor: only the ``top_k`` most likely symbols of each
    position get modelled mass, which keeps coding fast and compact for very large codebooks.
    """

    def __init__(self, name: EngineName = "auto", top_k: int | None = None, max_elements: int = 1 << 22) -> None:
        if name not in ENGINES:
            raise ConfigError(f"unknown probability engine {name!r} (choose auto, torch or triton)")
        if top_k is not None and top_k < 1:
            raise ConfigError(f"top_k must be >= 1, got {top_k}")
        if name == "triton" and not triton_available():
            raise ConfigError("probability engine 'triton' needs the triton package, which does not import here")
        self.name = name
        self.top_k = top_k
        self.max_elements = max_elements

    def rows_per_chunk(self, alphabet_size: int) -> int:
        return max(1, self.max_elements // alphabet_size)

    def kernel_rows_per_chunk(self, alphabet_size: int) -> int:
        """Rows per kernel launch: the kernel allocates only its output (full rows, or the
        ``top_k`` candidates and their frequencies) plus a 2048-bin histogram per row."""
        keep = min(self.top_k or alphabet_size, alphabet_size)
        width = alphabet_size if keep == alphabet_size else 2 * keep
        return max(1, self.max_elements // max(width, ref.NUM_BUCKETS))

    def uses_triton(self, device: torch.device) -> bool:
        """Whether tensors on ``device`` go to the Triton kernel."""
        if self.name == "torch":
            return False
        interpreting = triton_interpreting()
        if self.name == "auto":
            return (device.type == "cuda" or interpreting) and triton_available()
        if device.type != "cuda" and not interpreting:
            raise ConfigError(
                f"probability engine 'triton' needs CUDA tensors, got {device.type} ones "
                "(set TRITON_INTERPRET=1 before starting Python to run the kernel on the CPU)"
            )
        return True

    def logit_tables(self, logits: torch.Tensor) -> Iterator[FrequencyTable]:
        """Tables for (N, K) logits, one chunk of rows at a time."""
        if self.uses_triton(logits.device):
            from triton_kernels import probability as kernel

            step = self.kernel_rows_per_chunk(logits.shape[-1])
            for start in range(0, logits.shape[0], step):
                yield kernel.logit_tables(logits[start : start + step], self.top_k, "table").to("cpu")
            return
        step = self.rows_per_chunk(logits.shape[-1])
        for start in range(0, logits.shape[0], step):
            yield ref.frequency_table(ref.logit_buckets(logits[start : start + step]), self.top_k).to("cpu")

    def gaussian_tables(self, params: GaussianParameters, codebook: FixedPointCodebook) -> Iterator[FrequencyTable]:
        """Tables for per-position Gaussians over a fixed-point codebook, one chunk of rows at a time."""
        if self.uses_triton(params.mean.device):
            from triton_kernels import probability as kernel

            prepared = kernel.KernelCodebook.from_fixed_point(codebook, params.mean.device)  # once for all chunks
            step = self.kernel_rows_per_chunk(codebook.size)
            for start in range(0, params.num_positions, step):
                chunk = params[start : start + step]
                yield kernel.gaussian_tables(chunk, prepared, self.top_k, "table").to("cpu")
            return
        step = self.rows_per_chunk(codebook.size)
        for start in range(0, params.num_positions, step):
            chunk = params[start : start + step]
            yield ref.frequency_table(ref.gaussian_buckets(chunk, codebook), self.top_k).to("cpu")

    # ------------------------------------------------------------------ coding
    def encode_gaussian(
        self, encoder: IndexEncoder, symbols: torch.Tensor, params: GaussianParameters, codebook: FixedPointCodebook
    ) -> None:
        """Encode ``symbols`` (N,) under the per-position Gaussians ``params`` over ``codebook``."""
        encoder.encode_tables(symbols, self.gaussian_tables(params, codebook))

    def decode_gaussian(self, decoder: IndexDecoder, params: GaussianParameters, codebook: FixedPointCodebook) -> torch.Tensor:
        """Decode (N,) int64 symbols coded with :meth:`encode_gaussian`."""
        return decoder.decode_tables(self.gaussian_tables(params, codebook))

    def encode_logits(self, encoder: IndexEncoder, symbols: torch.Tensor, logits: torch.Tensor) -> None:
        """Encode ``symbols`` (N,) under the per-position distributions softmax(``logits``) (N, K)."""
        encoder.encode_tables(symbols, self.logit_tables(logits))

    def decode_logits(self, decoder: IndexDecoder, logits: torch.Tensor) -> torch.Tensor:
        """Decode (N,) int64 symbols coded with :meth:`encode_logits`."""
        return decoder.decode_tables(self.logit_tables(logits))
