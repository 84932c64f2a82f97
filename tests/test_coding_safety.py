"""Decoding untrusted streams: the information budget stops overdrawn streams early and never
trips on valid ones; CompressAI's CDF tables round-trip through constriction and random bytes
decode under them without crashing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from compressai.entropy_models import EntropyBottleneck
from hypothesis import given, settings
from hypothesis import strategies as st

from rdvq.coding import IndexDecoder, IndexEncoder, ProbabilityEngine, QuantizedCdfs, decode_indexed, encode_indexed
from rdvq.coding import probability as P
from rdvq.errors import CheckpointError, DecodeMismatchError, TruncatedStreamError


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(2, 80),
    rows=st.integers(1, 300),
    sharpness=st.sampled_from([0.0, 1.0, 10.0, 200.0]),
    top_k=st.one_of(st.none(), st.integers(1, 10)),
    seed=st.integers(0, 2**31 - 1),
)
def test_valid_streams_never_trip_the_budget(size, rows, sharpness, top_k, seed) -> None:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, size, generator=g) * sharpness
    # Symbols drawn from the model itself, and the least likely ones: the budget must hold for both.
    drawn = torch.multinomial(torch.softmax(logits, -1), 1, generator=g).squeeze(-1)
    unlikely = logits.argmin(-1)
    engine = ProbabilityEngine("torch", top_k=top_k)
    for symbols in (drawn, unlikely):
        encoder = IndexEncoder()
        engine.encode_logits(encoder, symbols, logits)
        assert torch.equal(engine.decode_logits(IndexDecoder(encoder.finish()), logits), symbols)


def test_a_stream_too_short_for_the_declared_symbols_stops_early() -> None:
    logits = torch.zeros(10, 1024)  # 10 bits per symbol
    encoder = IndexEncoder()
    ProbabilityEngine("torch").encode_logits(encoder, torch.arange(10), logits)
    data = encoder.finish()
    decoder = IndexDecoder(data)
    many = torch.zeros(1_000_000, 1024)
    chunks = (many[i : i + 4096] for i in range(0, many.shape[0], 4096))
    with pytest.raises(TruncatedStreamError, match="truncated or corrupt"):
        for chunk in chunks:
            ProbabilityEngine("torch").decode_logits(decoder, chunk)
    assert next(chunks, None) is not None  # stopped long before the end


def test_uniform_stream_overdraw_is_caught_in_one_call() -> None:
    encoder = IndexEncoder()
    row = P.frequencies(P.logit_buckets(torch.zeros(1, 4096)))[0]
    encoder.encode_iid(torch.arange(100), row)
    decoder = IndexDecoder(encoder.finish())
    with pytest.raises(TruncatedStreamError):
        decoder.decode_iid(10_000, row)


def _bottleneck(channels: int = 3) -> EntropyBottleneck:
    torch.manual_seed(0)
    bottleneck = EntropyBottleneck(channels)
    with torch.no_grad():
        bottleneck.quantiles.copy_(torch.tensor([-4.0, 0.3, 5.0]).expand(channels, 1, 3))
    bottleneck.update(force=True)
    return bottleneck


def test_compressai_tables_round_trip_through_constriction() -> None:
    cdfs = QuantizedCdfs.from_entropy_model(_bottleneck())
    assert all(int(row.sum()) == P.TOTAL and (row >= 1).all() for row in cdfs.rows)
    indexes = torch.arange(3).repeat_interleave(50).reshape(3, 5, 10)
    values = cdfs.clamp(torch.randint(-30, 30, (3, 5, 10)), indexes)
    assert values.min() < 0 < values.max()
    encoder = IndexEncoder()
    encode_indexed(encoder, values, indexes, cdfs)
    assert torch.equal(decode_indexed(IndexDecoder(encoder.finish()), indexes, cdfs), values)


def test_clamp_keeps_values_inside_the_coded_range() -> None:
    cdfs = QuantizedCdfs.from_entropy_model(_bottleneck(1))
    low, high = int(cdfs.offsets[0]), int(cdfs.offsets[0]) + cdfs.rows[0].numel() - 2
    clamped = cdfs.clamp(torch.tensor([-1000, low, high, 1000]), torch.zeros(4, dtype=torch.int64))
    assert clamped.tolist() == [low, low, high, high]
    with pytest.raises(ValueError, match="clamp"):
        encode_indexed(IndexEncoder(), torch.tensor([high + 1]), torch.zeros(1, dtype=torch.int64), cdfs)


def test_tables_that_were_never_built_are_refused() -> None:
    with pytest.raises(CheckpointError, match="update"):
        QuantizedCdfs.from_entropy_model(EntropyBottleneck(2))


@settings(max_examples=50, deadline=None)
@given(data=st.binary(min_size=0, max_size=64).map(lambda b: b[: len(b) // 4 * 4]), count=st.integers(1, 5000))
def test_random_bytes_decode_to_a_typed_error_or_in_range_values(data: bytes, count: int) -> None:
    cdfs = QuantizedCdfs.from_entropy_model(_bottleneck(2))
    indexes = torch.arange(count) % 2
    try:
        values = decode_indexed(IndexDecoder(data), indexes, cdfs)
    except (TruncatedStreamError, DecodeMismatchError):
        return
    assert torch.equal(cdfs.clamp(values, indexes), values)


def test_odd_stream_lengths_are_refused() -> None:
    with pytest.raises(DecodeMismatchError, match="32-bit words"):
        IndexDecoder(np.zeros(3, np.uint8).tobytes())
