"""Indexed CDF tables (the hyper-latent's and the scalar codec's): one interval call writes the bytes
of coding each table's symbols under its full row, and the decoder reads them back."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rdvq.coding import IndexDecoder, IndexEncoder, QuantizedCdfs, decode_indexed, encode_indexed
from rdvq.coding.cdf_tables import COMPRESSAI_PRECISION
from rdvq.coding.probability import PRECISION


def _random_cdfs(lengths: list[int], g: torch.Generator) -> QuantizedCdfs:
    """Valid tables as ``from_entropy_model`` returns them: L - 1 slots of 16-bit frequencies >= 1."""
    rows = []
    for length in lengths:
        slots = length - 1
        cuts = torch.randperm((1 << COMPRESSAI_PRECISION) - 1, generator=g)[: slots - 1] + 1
        edges = torch.cat([torch.zeros(1), cuts.sort().values.double(), torch.full((1,), 1 << COMPRESSAI_PRECISION)])
        rows.append(edges.diff().to(torch.int64) << (PRECISION - COMPRESSAI_PRECISION))
    offsets = torch.randint(-20, 5, (len(lengths),), generator=g)
    return QuantizedCdfs(rows=tuple(rows), offsets=offsets)


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(3, 40), min_size=1, max_size=6),
    count=st.integers(0, 200),
    seed=st.integers(0, 2**31 - 1),
)
def test_indexed_coding_writes_the_bytes_of_table_by_table_coding(lengths, count, seed) -> None:
    g = torch.Generator().manual_seed(seed)
    cdfs = _random_cdfs(lengths, g)
    indexes = torch.randint(0, len(lengths), (count,), generator=g)
    values = cdfs.clamp(torch.randint(-30, 40, (count,), generator=g), indexes)  # every slot, ends included
    fast = IndexEncoder()
    encode_indexed(fast, values, indexes, cdfs)
    reference = IndexEncoder()
    for table in range(len(lengths)):
        reference.encode_iid(values[indexes == table] - cdfs.offsets[table], cdfs.rows[table])
    data = fast.finish()
    assert data == reference.finish()
    assert torch.equal(decode_indexed(IndexDecoder(data), indexes, cdfs), values)


def test_indexed_coding_refuses_values_outside_their_tables() -> None:
    cdfs = _random_cdfs([3, 5], torch.Generator().manual_seed(0))
    indexes = torch.tensor([0, 1])
    above = torch.stack([cdfs.offsets[0], cdfs.offsets[1] + cdfs.last_slots[1] + 1])
    with pytest.raises(ValueError, match="outside"):
        encode_indexed(IndexEncoder(), above, indexes, cdfs)
    with pytest.raises(ValueError, match="outside"):
        encode_indexed(IndexEncoder(), cdfs.offsets - 1, indexes, cdfs)
