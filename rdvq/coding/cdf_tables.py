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

import torch

from rdvq.coding.probability import PRECISION
from rdvq.coding.range_coder import IndexDecoder, IndexEncoder
from rdvq.errors import CheckpointError

COMPRESSAI_PRECISION = 16


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

    def clamp(self, values: torch.Tensor, indexes: torch.Tensor) -> torch.Tensor:
        """``values`` (any integer shape) clamped into the coded range of their tables."""
        indexes = indexes.to(torch.int64).cpu()
        low = self.offsets[indexes]
        high = low + torch.tensor([row.numel() - 2 for row in self.rows], dtype=torch.int64)[indexes]
        return torch.minimum(torch.maximum(values.to(torch.int64).cpu(), low), high).contiguous()


def _groups(indexes: torch.Tensor, num_tables: int) -> list[torch.Tensor]:
    """Positions (into the flattened ``indexes``) of each table's symbols, in order."""
    flat = indexes.reshape(-1).to(torch.int64).cpu()
    if flat.numel() and (flat.min() < 0 or flat.max() >= num_tables):
        raise ValueError(f"table indexes outside [0, {num_tables})")
    order = torch.argsort(flat, stable=True)
    counts = torch.bincount(flat, minlength=num_tables).tolist()
    return list(order.split(counts))


def encode_indexed(encoder: IndexEncoder, values: torch.Tensor, indexes: torch.Tensor, cdfs: QuantizedCdfs) -> None:
    """Encode integer ``values`` (already clamped) under the tables named by ``indexes`` (same shape)."""
    flat = values.reshape(-1).to(torch.int64).cpu()
    for table, positions in enumerate(_groups(indexes, cdfs.num_tables)):
        slots = flat[positions] - cdfs.offsets[table]
        if slots.numel() and (slots.min() < 0 or slots.max() > cdfs.rows[table].numel() - 2):
            raise ValueError("values outside their table's range: clamp them first")
        encoder.encode_iid(slots, cdfs.rows[table])


def decode_indexed(decoder: IndexDecoder, indexes: torch.Tensor, cdfs: QuantizedCdfs) -> torch.Tensor:
    """Decode the values of ``indexes`` (returned in the shape of ``indexes``, int64)."""
    out = torch.empty(indexes.numel(), dtype=torch.int64)
    for table, positions in enumerate(_groups(indexes, cdfs.num_tables)):
        slots = decoder.decode_iid(positions.numel(), cdfs.rows[table])
        # The escape slot is never encoded; a stream that decodes it is corrupt. Clamp keeps it in range.
        out[positions] = slots.clamp(max=cdfs.rows[table].numel() - 2) + cdfs.offsets[table]
    return out.reshape(indexes.shape)
