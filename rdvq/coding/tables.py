"""Frequency tables as the coder consumes them: full rows, or a bounded tail floor in compact form."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class FrequencyTable:
    """Integer frequencies (summing to 2^24 per row) for N positions over an alphabet of K symbols.

    Full form: ``freqs`` is (N, K) and ``candidates`` is None. Compact form (bounded tail floor):
    ``candidates`` (N, k) holds the modelled symbols in ascending index order with their
    frequencies in ``freqs`` (N, k); every other symbol has frequency 1.
    """

    freqs: torch.Tensor
    alphabet_size: int
    candidates: torch.Tensor | None = None

    @property
    def num_positions(self) -> int:
        return self.freqs.shape[0]

    def full(self) -> torch.Tensor:
        """(N, K) frequencies, expanding the compact form."""
        if self.candidates is None:
            return self.freqs
        out = torch.ones(self.num_positions, self.alphabet_size, dtype=self.freqs.dtype, device=self.freqs.device)
        return out.scatter_(-1, self.candidates, self.freqs)

    def to(self, device: torch.device | str) -> "FrequencyTable":
        return FrequencyTable(
            freqs=self.freqs.to(device),
            alphabet_size=self.alphabet_size,
            candidates=None if self.candidates is None else self.candidates.to(device),
        )
