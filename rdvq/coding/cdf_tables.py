"""CompressAI's quantized CDF tables, coded with constriction instead of CompressAI's C++ rANS.

CompressAI's entropy models (``EntropyBottleneck``, ``GaussianConditional``) stay the *models*:
their ``update()`` builds one 16-bit CDF row per table (``_quantized_cdf``, ``_cdf_length``,
``_offset``). Their own coder is not memory-safe on untrusted input (it reads past the end of a
stream that is shorter than the declared content), so rdvq codes the same tables with its range
coder: a 16-bit frequency ``f`` is the 24-bit frequency ``f << 8``, exactly.

A row of length ``L`` covers the values ``offset .. offset + L - 3`` plus CompressAI's escape bin
(slot ``L - 2``), which rdvq never uses: callers clamp values into the row's range with
:meth:`QuantizedCdfs.clamp` (the models put ``1 - 1e-9`` of their mass there, so clamping is all
but never active) and reconstruct from the clamped value on both sides.

Symbols are coded table by table (all symbols of table 0 in their given order, then table 1, ...),
each group under its one row, so encoder and decoder need only agree on the table indexes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from rdvq.coding.format import COMPRESSAI_PRECISION
from rdvq.coding.probability import PRECISION, TOTAL
from rdvq.coding.range_coder import IndexDecoder, IndexEncoder, PreparedRow
from rdvq.errors import CheckpointError


@dataclass(frozen=True)
class QuantizedCdfs:
    """One frequency row per table at ``PRECISION`` bits (escape bin included) and each row's offset."""

    rows: tuple[torch.Tensor, ...]  # per table, (L_t - 1,) int64 summing to 2^PRECISION
    offsets: torch.Tensor  # (T,) int64: the value of slot 0

    @classmethod
    def from_entropy_model(cls, model: torch.nn.Module) -> "QuantizedCdfs":
        """Read the tables a CompressAI entropy model built in ``update()``; refuse inconsistent ones."""
        cdf, lengths, offsets = (getattr(model, name).detach().cpu().to(torch.int64) for name in ("_quantized_cdf", "_cdf_length", "_offset"))
        if cdf.dim() != 2 or cdf.numel() == 0 or lengths.shape != offsets.shape or lengths.numel() != cdf.shape[0]:
            raise CheckpointError("entropy model has no coding tables (update() was never called)")
        rows = []
        for row, length in zip(cdf, lengths.tolist()):
            if not 3 <= length <= row.numel():
                raise CheckpointError(f"entropy model coding table has an invalid length {length}")
            freqs = row[:length].diff()
            if row[0] != 0 or row[length - 1] != 1 << COMPRESSAI_PRECISION or (freqs < 1).any():
                raise CheckpointError("entropy model coding table is not a valid 16-bit CDF")
            rows.append(freqs << (PRECISION - COMPRESSAI_PRECISION))
        return cls(rows=tuple(rows), offsets=offsets)

    @property
    def num_tables(self) -> int:
        return len(self.rows)

    @cached_property
    def last_slots(self) -> torch.Tensor:
        """(T,) int64: each table's highest coded slot (the one below its escape bin)."""
        return torch.tensor([row.numel() - 2 for row in self.rows], dtype=torch.int64)

    @cached_property
    def cumulative(self) -> torch.Tensor:
        """(T, L_max) int64: ``cumulative[t, s]`` is where slot ``s`` of table ``t`` starts (2^PRECISION
        past the row's end), so a slot's interval is ``[c[t, s], c[t, s + 1])``."""
        out = torch.full((self.num_tables, max(row.numel() for row in self.rows) + 1), TOTAL, dtype=torch.int64)
        for table, row in enumerate(self.rows):
            out[table, 0] = 0
            out[table, 1 : row.numel()] = row[:-1].cumsum(0)
        return out

    @cached_property
    def prepared(self) -> tuple[PreparedRow, ...]:
        """Each row made ready for the decoder (built once per set of tables)."""
        return tuple(PreparedRow.of(row) for row in self.rows)

    def clamp(self, values: torch.Tensor, indexes: torch.Tensor) -> torch.Tensor:
        """``values`` (any integer shape) clamped into the coded range of their tables."""
        indexes = indexes.to(torch.int64).cpu()
        low = self.offsets[indexes]
        high = low + self.last_slots[indexes]
        return torch.minimum(torch.maximum(values.to(torch.int64).cpu(), low), high).contiguous()


def _table_order(indexes: torch.Tensor, num_tables: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(positions into the flattened ``indexes``, their tables): table by table, each in order."""
    flat = indexes.reshape(-1).to(torch.int64).cpu()
    if flat.numel() and (flat.min() < 0 or flat.max() >= num_tables):
        raise ValueError(f"table indexes outside [0, {num_tables})")
    order = torch.argsort(flat, stable=True)
    return order, flat[order]


def encode_indexed(encoder: IndexEncoder, values: torch.Tensor, indexes: torch.Tensor, cdfs: QuantizedCdfs) -> None:
    """Encode integer ``values`` (already clamped) under the tables named by ``indexes`` (same shape).

    All symbols go to the coder in one call, as intervals: the bytes are those of coding each table's
    symbols under its full row. Every slot is at least 2^(PRECISION - 16) wide, so each symbol's
    stand-in table has three slots, whatever its table's size (:meth:`IndexEncoder.encode_intervals`)."""
    positions, tables = _table_order(indexes, cdfs.num_tables)
    if positions.numel() == 0:
        return
    slots = values.reshape(-1).to(torch.int64).cpu()[positions] - cdfs.offsets[tables]
    if (slots < 0).any() or (slots > cdfs.last_slots[tables]).any():
        raise ValueError("values outside their table's range: clamp them first")
    starts = cdfs.cumulative[tables, slots]
    freqs = cdfs.cumulative[tables, slots + 1] - starts
    encoder.encode_intervals(starts.numpy(), freqs.numpy(), alphabet_size=3)


def decode_indexed(decoder: IndexDecoder, indexes: torch.Tensor, cdfs: QuantizedCdfs) -> torch.Tensor:
    """Decode the values of ``indexes`` (returned in the shape of ``indexes``, int64)."""
    positions, tables = _table_order(indexes, cdfs.num_tables)
    counts = torch.bincount(tables, minlength=cdfs.num_tables).tolist()
    slots = torch.cat([torch.zeros(0, dtype=torch.int64)] + [
        decoder.decode_iid(count, cdfs.prepared[table]) for table, count in enumerate(counts) if count
    ])
    # The escape slot is never encoded; a stream that decodes it is corrupt. Clamp keeps it in range.
    out = torch.empty(indexes.numel(), dtype=torch.int64)
    out[positions] = torch.minimum(slots, cdfs.last_slots[tables]) + cdfs.offsets[tables]
    return out.reshape(indexes.shape)
