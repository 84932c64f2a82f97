"""Probability engine: integer tables are exact, deterministic, never zero, bounded in the tail,
and agree with a slow, obviously-correct implementation."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rdvq.coding import probability as P
from rdvq.coding.engine import ProbabilityEngine
from rdvq.errors import ProbabilityError


def naive_frequencies(buckets: torch.Tensor, top_k: int | None) -> torch.Tensor:
    """Sort-based restatement of the rules in rdvq.coding.probability's docstring."""
    rows = []
    for row in buckets.tolist():
        size = len(row)
        order = sorted(range(size), key=lambda i: (row[i], i))
        candidates = set(order[: min(top_k or size, size)])
        weights = [int(P.WEIGHTS[row[i]]) if i in candidates else 0 for i in range(size)]
        free = P.TOTAL - size
        share = [free * w // sum(weights) for w in weights]
        bonus = set(order[: free - sum(share)])
        rows.append([1 + share[i] + (i in bonus) for i in range(size)])
    return torch.tensor(rows)


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(1, 60),
    rows=st.integers(1, 5),
    spread=st.sampled_from([0.0, 0.5, 3.0, 50.0]),
    top_k=st.one_of(st.none(), st.integers(1, 70)),
    seed=st.integers(0, 2**31 - 1),
)
def test_tables_match_the_naive_rules_and_sum_exactly(size, rows, spread, top_k, seed) -> None:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, size, generator=g) * spread
    buckets = P.logit_buckets(logits)
    freqs = P.frequencies(buckets, top_k)
    assert torch.equal(freqs, naive_frequencies(buckets, top_k))
    assert (freqs >= 1).all()
    assert torch.equal(freqs.sum(-1), torch.full((rows,), P.TOTAL))
    cdf = P.cdf_rows(freqs)
    assert (cdf[:, 0] == 0).all() and (cdf[:, -1] == P.TOTAL).all() and (cdf.diff(dim=-1) > 0).all()


def test_tables_follow_the_logits_and_ties_break_by_index() -> None:
    logits = torch.tensor([[0.0, 2.0, 2.0, -1.0, 5.0]])
    freqs = P.frequencies(P.logit_buckets(logits))[0]
    assert freqs[4] > freqs[1] >= freqs[2] > freqs[0] > freqs[3]
    assert freqs[1] - freqs[2] in (0, 1)  # equal logits differ by at most the remainder unit
    assert torch.equal(P.frequencies(P.logit_buckets(logits)), P.frequencies(P.logit_buckets(logits.clone())))


def test_quantized_probabilities_stay_close_to_the_softmax() -> None:
    logits = torch.randn(200, 1024) * 2
    p = torch.softmax(logits.double(), -1)
    q = P.frequencies(P.logit_buckets(logits)).double() / P.TOTAL
    kl_bits = (p * (p / q).log2()).sum(-1)
    assert kl_bits.max() < 2e-3


def test_bounded_tail_floor_gives_exactly_the_floor_outside_the_top_k() -> None:
    logits = torch.randn(7, 5000) * 4
    table = P.frequency_table(P.logit_buckets(logits), top_k=16)
    assert table.candidates is not None and table.candidates.shape == (7, 16)
    full = table.full()
    assert torch.equal(full, P.frequencies(P.logit_buckets(logits), top_k=16))
    assert torch.equal(full.sum(-1), torch.full((7,), P.TOTAL))
    outside = torch.ones_like(full, dtype=torch.bool).scatter_(-1, table.candidates, False)
    assert (full[outside] == 1).all()
    assert torch.equal(table.candidates.sort(-1).values, table.candidates)
    buckets = P.logit_buckets(logits)
    keys = buckets.to(torch.int64) * logits.shape[-1] + torch.arange(logits.shape[-1])
    top = keys.topk(16, dim=-1, largest=False).indices.sort(-1).values  # smallest (bucket, index)
    assert torch.equal(table.candidates, top)


def test_shift_invariance_and_huge_logits() -> None:
    logits = torch.round(torch.randn(3, 100) * 64) / 64  # dyadic: the shift below is exact in float32
    reference = P.frequencies(P.logit_buckets(logits))
    assert torch.equal(P.frequencies(P.logit_buckets(logits + 256.0)), reference)
    huge = P.frequencies(P.logit_buckets(torch.tensor([[3e38, -3e38, -3e38, 3e38]])))
    assert huge.sum() == P.TOTAL and huge[0, 1] == huge[0, 2] == 1 and huge[0, 0] == huge[0, 3]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_inputs_are_refused(bad: float) -> None:
    logits = torch.zeros(2, 8)
    logits[1, 3] = bad
    with pytest.raises(ProbabilityError, match="NaN or infinite"):
        P.logit_buckets(logits)
    codebook = P.FixedPointCodebook.from_codewords(torch.randn(8, 4))
    with pytest.raises(ProbabilityError):
        P.GaussianParameters.from_float(torch.randn(2, 4), torch.tensor([0.5, bad]), codebook)


def test_gaussian_tables_match_the_float_softmax() -> None:
    torch.manual_seed(0)
    codewords = torch.nn.functional.normalize(torch.randn(512, 16), dim=-1)
    mu = torch.randn(50, 16) * 0.3
    sigma = torch.rand(50) * 0.3 + 0.05
    codebook = P.FixedPointCodebook.from_codewords(codewords)
    freqs = P.frequencies(P.gaussian_buckets(P.GaussianParameters.from_float(mu, sigma, codebook), codebook))
    d = torch.cdist(mu.double(), codewords.double()).square()
    p = torch.softmax(-d / (2 * sigma.double().unsqueeze(-1) ** 2), -1)
    q = freqs.double() / P.TOTAL
    assert (p * (p / q).log2()).sum(-1).max() < 5e-3


@pytest.mark.parametrize("diagonal", [False, True])
def test_far_means_and_the_clamp_keep_distances_exact(diagonal: bool) -> None:
    """A hyperprior may sharpen its distribution through the mean's norm (|mu| >> |e|): the fixed
    point must represent such means, and distances at the clamp limit must stay exact."""
    torch.manual_seed(0)
    codewords = torch.nn.functional.normalize(torch.randn(256, 32), dim=-1)
    codebook = P.FixedPointCodebook.from_codewords(codewords)
    mu = torch.nn.functional.normalize(torch.randn(40, 32), dim=-1) * 20.0
    sigma = torch.rand(40, 32) * 0.5 + 2.0 if diagonal else torch.rand(40) * 0.5 + 2.0
    freqs = P.frequencies(P.gaussian_buckets(P.GaussianParameters.from_float(mu, sigma, codebook), codebook))
    s = sigma.double() if diagonal else sigma.double().unsqueeze(-1)
    logits = -((codewords.double().unsqueeze(0) - mu.double().unsqueeze(1)).square() / (2 * s.unsqueeze(1) ** 2)).sum(-1)
    p = torch.softmax(logits, -1)
    assert (p * (p / (freqs.double() / P.TOTAL)).log2()).sum(-1).max() < 5e-3
    extreme = P.GaussianParameters.from_float(torch.full((2, 32), 1e9) * torch.tensor([[1.0], [-1.0]]), sigma[:2], codebook)
    assert extreme.mean.abs().max() == 2 ** P.mean_bits(32, diagonal)
    exact = (codebook.values.unsqueeze(0) - extreme.mean.unsqueeze(1)).square()
    exact = (exact * extreme.dim_weights.unsqueeze(1)).sum(-1) if diagonal else exact.sum(-1)
    assert torch.equal(P.integer_distances(extreme, codebook), exact)


def test_diagonal_gaussian_matches_isotropic_when_scales_are_equal() -> None:
    codebook = P.FixedPointCodebook.from_codewords(torch.randn(300, 8))
    mu, sigma = torch.randn(20, 8), torch.rand(20) + 0.2
    iso = P.GaussianParameters.from_float(mu, sigma, codebook)
    diag = P.GaussianParameters.from_float(mu, sigma.unsqueeze(-1).expand(20, 8), codebook)
    assert torch.equal(P.frequencies(P.gaussian_buckets(iso, codebook)), P.frequencies(P.gaussian_buckets(diag, codebook)))


@pytest.mark.parametrize("sigma", [1e-12, 1e-6, 1e6, 1e20])
def test_extreme_scales_still_give_valid_tables(sigma: float) -> None:
    codebook = P.FixedPointCodebook.from_codewords(torch.randn(64, 4))
    params = P.GaussianParameters.from_float(torch.randn(5, 4), torch.full((5,), sigma), codebook)
    freqs = P.frequencies(P.gaussian_buckets(params, codebook))
    assert (freqs >= 1).all() and (freqs.sum(-1) == P.TOTAL).all()
    if sigma >= 1e6:  # flat: every symbol gets nearly the same mass
        assert freqs.max() - freqs.min() <= 1


def test_integer_distances_are_exact() -> None:
    codewords = torch.randn(100, 32)
    codebook = P.FixedPointCodebook.from_codewords(codewords)
    params = P.GaussianParameters.from_float(torch.randn(10, 32), torch.ones(10), codebook)
    exact = (codebook.values.unsqueeze(0) - params.mean.unsqueeze(1)).square().sum(-1)
    assert torch.equal(P.integer_distances(params, codebook), exact)


def test_engine_chunks_give_the_same_tables_as_one_pass() -> None:
    logits = torch.randn(37, 300)
    engine = ProbabilityEngine("torch", max_elements=1000)
    assert engine.rows_per_chunk(300) == 3
    chunks = list(engine.logit_tables(logits))
    assert len(chunks) == 13
    assert torch.equal(torch.cat([c.freqs for c in chunks]), P.frequencies(P.logit_buckets(logits)))


def test_symbol_intervals_and_ideal_bits() -> None:
    freqs = P.frequencies(P.logit_buckets(torch.randn(4, 10)))
    symbols = torch.tensor([0, 9, 3, 5])
    start, freq = P.symbol_intervals(freqs, symbols)
    cdf = P.cdf_rows(freqs)
    assert torch.equal(start, cdf[torch.arange(4), symbols])
    assert torch.equal(start + freq, cdf[torch.arange(4), symbols + 1])
    torch.testing.assert_close(P.ideal_bits(freqs, symbols), -torch.log2(freq.double() / P.TOTAL))
