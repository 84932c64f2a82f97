"""The fused CPU kernel gives the reference's integers exactly (full tables, intervals, coder rows,
the bounded tail floor, and the pruned tail-floor search over clustered codebooks), and the coder
paths it feeds write the same bytes as coding full tables."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rdvq.coding import IndexDecoder, IndexEncoder, ProbabilityEngine
from rdvq.coding import cpu_kernel as C
from rdvq.coding import probability as P
from rdvq.coding.candidate_search import CodebookClusters
from rdvq.coding.engine import coding_block
from rdvq.coding.tables import FrequencyTable
from rdvq.errors import ProbabilityError


def _gaussian(rows: int, size: int, dim: int, diagonal: bool, sharpness: float, clustered: bool, seed: int):
    g = torch.Generator().manual_seed(seed)
    if clustered:  # codewords around a few centres, as trained codebooks are: the pruned search's case
        centres = torch.randn(max(1, size // 50), dim, generator=g)
        codewords = centres[torch.randint(0, centres.shape[0], (size,), generator=g)] + 0.05 * torch.randn(size, dim, generator=g)
    else:
        codewords = torch.randn(size, dim, generator=g)
    codebook = P.FixedPointCodebook.from_codewords(codewords)
    mean = codewords[torch.randint(0, size, (rows,), generator=g)] + 0.1 * torch.randn(rows, dim, generator=g)
    shape = (rows, dim) if diagonal else (rows,)
    sigma = torch.rand(shape, generator=g) * sharpness + 1e-3
    return P.GaussianParameters.from_float(mean, sigma, codebook), codebook


def _scores(params: P.GaussianParameters, codebook: P.FixedPointCodebook):
    return P.relative_distances(params, codebook).numpy(), params.scale.numpy()


def _check_compact(candidates: np.ndarray, freqs: np.ndarray, reference: FrequencyTable) -> None:
    assert np.array_equal(candidates, reference.candidates.numpy())
    assert np.array_equal(freqs, reference.freqs.numpy())


@settings(max_examples=30, deadline=None)
@given(
    size=st.integers(1, 300),
    rows=st.integers(1, 6),
    spread=st.sampled_from([0.0, 0.3, 4.0, 100.0]),
    top_k=st.one_of(st.none(), st.integers(1, 310)),
    seed=st.integers(0, 2**31 - 1),
)
def test_logit_tables_equal_the_reference(size, rows, spread, top_k, seed) -> None:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, size, generator=g) * spread
    symbols = torch.randint(0, size, (rows,), generator=g)
    buckets = P.logit_buckets(logits)
    full = P.frequencies(buckets)
    starts, freqs = C.intervals(logits.numpy(), None, symbols.numpy())
    reference_starts, reference_freqs = P.symbol_intervals(full, symbols)
    assert np.array_equal(starts, reference_starts.numpy()) and np.array_equal(freqs, reference_freqs.numpy())
    assert np.array_equal(C.coder_rows(logits.numpy(), None), (full - 1).double().numpy())
    if top_k is not None and top_k < size:
        _check_compact(*C.compact(logits.numpy(), None, top_k), P.frequency_table(buckets, top_k))


@settings(max_examples=30, deadline=None)
@given(
    size=st.integers(2, 400),
    dim=st.sampled_from([1, 4, 8, 32]),
    rows=st.integers(1, 6),
    diagonal=st.booleans(),
    sharpness=st.sampled_from([1e-3, 0.05, 0.5, 10.0]),
    top_k=st.integers(1, 100),
    seed=st.integers(0, 2**31 - 1),
)
def test_gaussian_tables_and_the_pruned_search_equal_the_reference(size, dim, rows, diagonal, sharpness, top_k, seed) -> None:
    params, codebook = _gaussian(rows, size, dim, diagonal, sharpness, clustered=seed % 2 == 0, seed=seed)
    buckets = P.gaussian_buckets(params, codebook)
    full = P.frequencies(buckets)
    assert np.array_equal(C.coder_rows(*_scores(params, codebook)), (full - 1).double().numpy())
    symbols = torch.randint(0, size, (rows,), generator=torch.Generator().manual_seed(seed))
    starts, freqs = C.intervals(*_scores(params, codebook), symbols.numpy())
    reference_starts, reference_freqs = P.symbol_intervals(full, symbols)
    assert np.array_equal(starts, reference_starts.numpy()) and np.array_equal(freqs, reference_freqs.numpy())
    keep = min(top_k, size - 1)
    reference = P.frequency_table(buckets, keep)
    _check_compact(*C.compact(*_scores(params, codebook), keep), reference)
    weights = None if params.dim_weights is None else params.dim_weights.double().numpy()
    for cluster_size in (1, 7, 64):
        clusters = CodebookClusters(codebook.values.numpy(), cluster_size)
        found = C.gaussian_compact_pruned(params.mean.double().numpy(), params.scale.numpy(), weights, clusters, keep)
        _check_compact(*found, reference)


def test_pruned_search_when_the_top_k_reaches_the_clamped_bucket() -> None:
    """Few symbols within 32 nats of the best: the candidates are topped up by index from the last
    bucket, where every unvisited symbol lies (and sharper still: only the nearest is below it)."""
    for sharpness in (1e-4, 1e-6):
        params, codebook = _gaussian(50, 4096, 8, False, sharpness, clustered=True, seed=5)
        buckets = P.gaussian_buckets(params, codebook)
        assert (buckets < P.NUM_BUCKETS - 1).sum(-1).min() < 64
        clusters = CodebookClusters(codebook.values.numpy(), 64)
        found = C.gaussian_compact_pruned(params.mean.double().numpy(), params.scale.numpy(), None, clusters, 64)
        _check_compact(*found, P.frequency_table(buckets, 64))


@pytest.mark.parametrize("size", [2, 3, 5, 1024])
def test_intervals_code_the_same_bytes_as_full_tables(size: int) -> None:
    g = torch.Generator().manual_seed(size)
    logits = torch.randn(500, size, generator=g) * 3
    logits[:, 0] += 30  # symbol 0 (start 0) and the last symbol (nothing above it) both occur
    symbols = torch.randint(0, size, (500,), generator=g)
    symbols[::7] = size - 1
    symbols[::5] = 0
    table = P.frequency_table(P.logit_buckets(logits))
    full = IndexEncoder()
    full.encode(symbols, table)
    by_interval = IndexEncoder()
    by_interval.encode_intervals(*(t.numpy() for t in P.symbol_intervals(table.freqs, symbols)), size)
    data = full.finish()
    assert by_interval.finish() == data
    assert torch.equal(IndexDecoder(data).decode_rows((table.freqs - 1).double().numpy()), symbols)


def test_numba_engine_codes_what_the_reference_codes() -> None:
    params, codebook = _gaussian(3000, 1024, 8, False, 0.05, clustered=True, seed=1)
    symbols = torch.randint(0, 1024, (3000,), generator=torch.Generator().manual_seed(2))
    for top_k in (None, 16):
        streams = {}
        for name in ("torch", "numba"):
            engine = ProbabilityEngine(name, top_k=top_k)
            encoder = IndexEncoder()
            engine.encode_gaussian(encoder, symbols, params, codebook)
            streams[name] = encoder.finish()
            assert torch.equal(engine.decode_gaussian(IndexDecoder(streams[name]), params, codebook), symbols)
        assert streams["numba"] == streams["torch"]


@pytest.mark.parametrize("top_k, width", [(16, None), (16, 256), (4095, None)])
def test_compact_tables_code_many_blocks_at_once_as_block_by_block(top_k: int, width: int | None) -> None:
    """The numba path hands the coder a kernel call's table spanning several coding blocks; the
    bytes must be those of the reference, which codes one block at a time (tail symbols included,
    and a tail of a single symbol, which carries no rank)."""
    size = 4096
    rows = 3 * coding_block(size) - 100
    params, codebook = _gaussian(rows, size, 8, False, 0.05, clustered=True, seed=3)
    symbols = torch.randint(0, size, (rows,), generator=torch.Generator().manual_seed(4))
    symbols[::3] = P.integer_distances(params, codebook)[::3].argmin(-1)  # some candidates too
    streams = {}
    for name in ("torch", "numba"):
        engine = ProbabilityEngine(name, top_k=top_k, search_width=width)
        encoder = IndexEncoder()
        engine.encode_gaussian(encoder, symbols, params, codebook)
        streams[name] = encoder.finish()
        assert torch.equal(engine.decode_gaussian(IndexDecoder(streams[name]), params, codebook), symbols)
    assert streams["numba"] == streams["torch"]


def test_the_kernel_refuses_what_the_reference_refuses() -> None:
    engine = ProbabilityEngine("numba")
    with pytest.raises(ProbabilityError):
        engine.encode_logits(IndexEncoder(), torch.zeros(2, dtype=torch.int64), torch.tensor([[0.0, float("nan")]] * 2))
    params, codebook = _gaussian(2, 8, 4, False, 0.5, clustered=False, seed=0)
    broken = P.GaussianParameters(mean=params.mean, scale=torch.tensor([1.0, float("inf")]), dim_weights=None)
    with pytest.raises(ProbabilityError):
        engine.encode_gaussian(IndexEncoder(), torch.zeros(2, dtype=torch.int64), broken, codebook)
