"""Entropy coding of index streams with constriction's range coder (a maintained Rust library).

Frequencies from the probability engine reach the coder exactly: constriction's fast categorical
model assigns symbol ``i`` the slot width ``floor(S_{i+1} * s) - floor(S_i * s) + 1`` where
``S`` are cumulative input weights and ``s = (2^24 - n) / sum``. Passing the integer weights
``f_i - 1`` (exact in float64, summing to ``2^24 - n``) makes ``s = 1`` and reproduces ``f_i``.

A range coder's output depends only on each coded symbol's interval ``[start, start + f)`` out of
``2^24``, not on how the rest of the table is divided, so :meth:`IndexEncoder.encode_intervals`
codes a symbol under a three-slot table (below it, itself, above it) and writes exactly the bytes
the full K-slot table would: an encoder needs each symbol's interval, never its whole table.

The coder is a queue (first in, first out), so models that decode in several steps, each step's
probabilities depending on what was decoded before, simply encode the steps in the same order.

Decoding untrusted data: constriction never reads out of bounds, but an exhausted stream decodes
as if padded with zeros, so a file that declares a larger image than its stream holds would decode
garbage for as long as the declared size says. :class:`IndexDecoder` therefore keeps an
*information budget*: a range coder cannot emit fewer bits than the information content
``sum -log2 p`` of what it encoded, so once the decoded symbols' information exceeds the stream's
bits (plus :data:`BUDGET_SLACK_BITS`), the stream cannot be what the header says and decoding stops
with :class:`~rdvq.errors.TruncatedStreamError`. Callers that decode in chunks fail after the first
chunk that overdraws.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import constriction
import numpy as np
import torch

from rdvq.coding.tables import FrequencyTable
from rdvq.coding.probability import PRECISION, TOTAL
from rdvq.errors import DecodeMismatchError, TruncatedStreamError

_CATEGORICAL = constriction.stream.model.Categorical(perfect=False)
_UNIFORM = constriction.stream.model.Uniform()
# Information may exceed the stream's bits by this much before a stream counts as overdrawn
# (measured: never more than the stream's own length; two words of margin).
BUDGET_SLACK_BITS = 64


def _weights(freqs: torch.Tensor) -> np.ndarray:
    return (freqs.to(torch.int64) - 1).to(torch.float64).cpu().numpy()


@dataclass(frozen=True)
class PreparedRow:
    """One (K,) frequency row made ready once for coding many symbols under it (a static table serves
    every image): constriction's model and each slot's information in bits."""

    model: object | None  # None when K == 1: such symbols carry no information and are not coded
    bits: np.ndarray

    @classmethod
    def of(cls, freqs: torch.Tensor) -> "PreparedRow":
        freqs = freqs.reshape(-1).to(torch.int64).cpu()
        model = constriction.stream.model.Categorical(_weights(freqs), perfect=False) if freqs.numel() > 1 else None
        return cls(model=model, bits=PRECISION - np.log2(freqs.numpy().astype(np.float64)))


def _prepared(row: "torch.Tensor | PreparedRow") -> PreparedRow:
    return row if isinstance(row, PreparedRow) else PreparedRow.of(row)


def _compact_weights(freqs: np.ndarray, alphabet_size: int) -> np.ndarray:
    """(N, k + 1) coder weights of compact rows: the candidates' frequencies and, in the last slot,
    the tail's ``K - k`` (each other symbol has frequency 1), all less one."""
    n, k = freqs.shape
    weights = np.empty((n, k + 1), np.float64)
    weights[:, :k] = freqs - 1
    weights[:, k] = alphabet_size - k - 1
    return weights


def _slots(symbols: np.ndarray, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(slot of each symbol among its row's ascending candidates, ``k`` for a tail symbol; how many
    candidates lie below it). A tail symbol's rank among the symbols that are not candidates is
    the symbol less that count."""
    k = candidates.shape[1]
    below = (candidates < symbols[:, None]).sum(-1)
    hit = np.take_along_axis(candidates, np.minimum(below, k - 1)[:, None], -1)[:, 0] == symbols
    return np.where(hit, below, k), below


def _tail_symbols(offsets: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Inverse of the tail rank of :func:`_slots`. ``candidates[i] - i`` symbols that are not
    candidates lie below candidate ``i`` (non-decreasing in ``i``), so the symbol of rank ``r`` is
    ``r`` plus the number of candidates with ``candidates[i] - i <= r``."""
    below = candidates - np.arange(candidates.shape[1])
    return offsets + (below <= offsets[:, None]).sum(-1)


def _blocks(count: int, block: int | None) -> list[slice]:
    step = block or count
    return [slice(start, min(start + step, count)) for start in range(0, count, step)]


class IndexEncoder:
    """Collects symbols under their frequency tables into one range-coded stream."""

    def __init__(self) -> None:
        self._coder = constriction.stream.queue.RangeEncoder()

    def encode(self, symbols: torch.Tensor, table: FrequencyTable, block: int | None = None) -> None:
        """Encode ``symbols`` under ``table``. A compact table is coded a coding block of ``block``
        rows at a time (default: one block), each block's candidate slots first, then its tail
        symbols' ranks (see :mod:`rdvq.coding.engine`); the work before the coder is done for the
        whole table at once."""
        symbols = symbols.reshape(-1).to(torch.int64).cpu()
        table = table.to("cpu")
        if symbols.numel() != table.num_positions:
            raise ValueError(f"{symbols.numel()} symbols for {table.num_positions} table rows")
        if symbols.numel() == 0 or table.alphabet_size == 1:
            return  # nothing to say: an empty stream is never handed to the coder
        if table.candidates is None:
            self._coder.encode(symbols.to(torch.int32).numpy(), _CATEGORICAL, _weights(table.freqs))
            return
        k, size = table.candidates.shape[1], table.alphabet_size
        symbols = symbols.numpy()
        slots, below = _slots(symbols, table.candidates.numpy())
        freqs = table.freqs.numpy()
        for span in _blocks(symbols.shape[0], block):  # weights a block at a time: memory as one block's
            self._coder.encode(slots[span].astype(np.int32), _CATEGORICAL, _compact_weights(freqs[span], size))
            in_tail = slots[span] == k
            if size - k >= 2 and in_tail.any():
                offsets = (symbols[span] - below[span])[in_tail]
                self._coder.encode(offsets.astype(np.int32), _UNIFORM, np.full(offsets.shape[0], size - k, dtype=np.int32))

    def encode_intervals(self, starts: np.ndarray, freqs: np.ndarray, alphabet_size: int) -> None:
        """Encode symbols given only their intervals ``[start, start + freq)`` (out of ``2^24``)
        in tables of ``alphabet_size`` symbols; the bytes equal :meth:`encode` with the full tables.
        ``alphabet_size`` only picks the stand-in table: 2 codes two slots, and 3 or more splits the
        rest of the range in two, which holds for any table whose other symbols span at least 2."""
        starts = np.asarray(starts, dtype=np.int64)
        freqs = np.asarray(freqs, dtype=np.int64)
        if starts.size == 0 or alphabet_size == 1:
            return
        above = TOTAL - starts - freqs
        if alphabet_size == 2:  # two slots: the symbol and the other one
            first = starts == 0
            widths = np.stack([np.where(first, freqs, starts), np.where(first, above, freqs)], -1)
            slots = np.where(first, 0, 1)
        else:  # the other K - 1 >= 2 symbols leave at least 2 below or above, split when one side is empty
            low, high = starts == 0, above == 0
            split_above, split_below = above // 2, starts // 2
            widths = np.stack(
                [
                    np.where(low, freqs, np.where(high, split_below, starts)),
                    np.where(low, split_above, np.where(high, starts - split_below, freqs)),
                    np.where(low, above - split_above, np.where(high, freqs, above)),
                ],
                -1,
            )
            slots = np.where(low, 0, np.where(high, 2, 1))
        self._coder.encode(slots.astype(np.int32), _CATEGORICAL, (widths - 1).astype(np.float64))

    def encode_iid(self, symbols: torch.Tensor, freqs: "torch.Tensor | PreparedRow") -> None:
        """Encode symbols that all share one (K,) frequency row (static and uniform models)."""
        symbols = symbols.reshape(-1).to(torch.int32).cpu()
        row = _prepared(freqs)
        if symbols.numel() == 0 or row.model is None:
            return
        self._coder.encode(symbols.numpy(), row.model)

    def encode_tables(self, symbols: torch.Tensor, tables: Iterable[FrequencyTable]) -> None:
        """Encode ``symbols`` (flat) under consecutive chunk tables covering them in order."""
        symbols = symbols.reshape(-1)
        start = 0
        for table in tables:
            self.encode(symbols[start : start + table.num_positions], table)
            start += table.num_positions
        if start != symbols.numel():
            raise ValueError(f"tables cover {start} positions, got {symbols.numel()} symbols")

    def finish(self) -> bytes:
        return self._coder.get_compressed().astype("<u4").tobytes()


class IndexDecoder:
    """Reads symbols back in the order they were encoded, given the same frequency tables.

    Every decode call charges the decoded symbols' information to the stream's budget (see the
    module docstring) and raises :class:`TruncatedStreamError` once it is overdrawn.
    """

    def __init__(self, data: bytes) -> None:
        if len(data) % 4:
            raise DecodeMismatchError(f"index stream length {len(data)} is not a whole number of 32-bit words")
        self._coder = constriction.stream.queue.RangeDecoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
        self._budget_bits = 8 * len(data) + BUDGET_SLACK_BITS
        self._information_bits = 0.0

    def _charge(self, frequencies: "torch.Tensor | np.ndarray") -> None:
        """Add the information of symbols decoded with these frequencies (out of 2^PRECISION).
        In numpy: torch's log2 of a chunk's few hundred values took about 50 us a call (measured)."""
        frequencies = frequencies.numpy() if isinstance(frequencies, torch.Tensor) else frequencies
        self._charge_bits(float((PRECISION - np.log2(frequencies.astype(np.float64))).sum()))

    def _charge_bits(self, bits: float) -> None:
        self._information_bits += bits
        if self._information_bits > self._budget_bits:
            raise TruncatedStreamError(
                f"the stream holds {self._budget_bits - BUDGET_SLACK_BITS} bits, fewer than the information of "
                f"the symbols its header declares (over {self._information_bits:.0f} bits): the file is truncated "
                "or corrupt, or this decoder's probabilities differ from the encoder's"
            )

    def _decode(self, *args) -> np.ndarray:
        try:
            return self._coder.decode(*args)
        except Exception as exc:  # constriction reports inconsistent data as generic (even assertion) errors
            raise DecodeMismatchError(f"the index stream does not decode under these tables ({exc})") from None

    def decode_iid(self, count: int, freqs: "torch.Tensor | PreparedRow") -> torch.Tensor:
        row = _prepared(freqs)
        if count == 0 or row.model is None:
            return torch.zeros(count, dtype=torch.int64)
        symbols = self._decode(row.model, count).astype(np.int64)
        self._charge_bits(float(row.bits[symbols].sum()))
        return torch.from_numpy(symbols)

    def decode_rows(self, rows: np.ndarray) -> torch.Tensor:
        """Decode one symbol per row of coder weights (frequency - 1, float64 (N, K))."""
        n, size = rows.shape
        if n == 0 or size == 1:
            return torch.zeros(n, dtype=torch.int64)
        symbols = self._decode(_CATEGORICAL, rows).astype(np.int64)
        self._charge(rows[np.arange(n), symbols] + 1.0)
        return torch.from_numpy(symbols)

    def decode_tables(self, tables: Iterable[FrequencyTable]) -> torch.Tensor:
        decoded = [self.decode(table) for table in tables]
        return torch.cat(decoded) if decoded else torch.zeros(0, dtype=torch.int64)

    def decode(self, table: FrequencyTable, block: int | None = None) -> torch.Tensor:
        """Decode the symbols :meth:`encode` coded under ``table`` (with the same ``block``),
        charging each block's information before the next is decoded."""
        table = table.to("cpu")
        n = table.num_positions
        if n == 0 or table.alphabet_size == 1:
            return torch.zeros(n, dtype=torch.int64)
        if table.candidates is None:
            symbols = torch.from_numpy(self._decode(_CATEGORICAL, _weights(table.freqs)).astype(np.int64))
            self._charge(table.freqs.gather(-1, symbols.unsqueeze(-1)))
            return symbols
        k, size = table.candidates.shape[1], table.alphabet_size
        freqs = table.freqs.numpy()
        slots = np.empty(n, np.int64)
        offsets = np.zeros(n, np.int64)
        for span in _blocks(n, block):
            weights = _compact_weights(freqs[span], size)
            got = self._decode(_CATEGORICAL, weights).astype(np.int64)
            slots[span] = got
            self._charge(weights[np.arange(got.shape[0]), got] + 1.0)  # a tail symbol: its slot, then its rank
            in_tail = got == k
            count = int(in_tail.sum())
            if count and size - k >= 2:
                ranks = self._decode(_UNIFORM, np.full(count, size - k, dtype=np.int32)).astype(np.int64)
                offsets[span][in_tail] = ranks
                self._charge_bits(count * float(np.log2(size - k)))  # each rank: log2(K - k) bits
        candidates = table.candidates.numpy().astype(np.int64, copy=False)
        symbols = np.take_along_axis(candidates, np.minimum(slots, k - 1)[:, None], -1)[:, 0]
        in_tail = slots == k
        if in_tail.any():
            symbols[in_tail] = _tail_symbols(offsets[in_tail], candidates[in_tail])
        return torch.from_numpy(symbols)
