"""Trellis-coded quantization (TCQ) of latents around their predicted means, as VVC's dependent
quantization defines it.

Two scalar quantizers share the union grid of integers (one latent unit per step): Q0 reconstructs
index ``k`` at the even level ``2k``, Q1 at zero and the odd levels ``2k - sgn(k)``. A state machine
picks each latent's quantizer from the parity of the indices before it along its sequence: VVC's
4 states (states 0 and 1 use Q0, 2 and 3 use Q1) or the 8-state trellis of HHI's NNCodec
(quantizer = state & 1). Every sequence starts in state 0.

The encoder's Viterbi search minimises ``sum (r - level)^2 + lambda * bits`` over the index
sequences, where ``bits`` is ``-log2`` of the mass of ``N(0, sigma)`` over the *decision cell* of
the level in the quantizer its state selects (cells end halfway to the neighbouring levels of that
quantizer, so they are twice as wide as rounding's; Q1's cells of 0 and +-1 are narrower). Under a
hyperprior the latents are independent given the hyper-latent, so a branch's cost depends only on
its latent, its quantizer and its index parity: :func:`class_minima` finds the best index of each
(quantizer, parity) class for every latent at once, and the dynamic programme over states in
:func:`viterbi` is the only loop, over trellis steps, vectorised across sequences.

The decoder tracks the state as it decodes (:meth:`Trellis.next`), so it selects the same tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rdvq.sq.cells import cell_bits, grid_minimum

# The (quantizer, parity) classes in the order class_minima returns them: class c = 2 * q + p.
_CLASS_QUANTIZER = (0, 0, 1, 1)
_CLASS_PARITY = (0, 1, 0, 1)
# Non-negative levels of a class from its first regular element on: level(j) = 4 j + offset, with
# decision cells [level - 1, level + 1]. Q1's first element (level 0 or 1) has a narrower cell and
# is evaluated on its own.
_CLASS_OFFSET = (0, 2, -1, 1)
_CLASS_FIRST_REGULAR = (0, 0, 1, 1)


@dataclass(frozen=True)
class Trellis:
    """A TCQ state machine: ``next_state[s][parity]`` and the quantizer (0: Q0, 1: Q1) of each state."""

    next_state: tuple[tuple[int, int], ...]
    quantizer_of_state: tuple[int, ...]

    @property
    def num_states(self) -> int:
        return len(self.quantizer_of_state)

    def next(self, state: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """States after coding ``index`` (any integers, negative included) in ``state``."""
        table = torch.tensor(self.next_state, dtype=torch.int64, device=state.device)
        return table[state, index.remainder(2)]

    def quantizer(self, state: torch.Tensor) -> torch.Tensor:
        return torch.tensor(self.quantizer_of_state, dtype=torch.int64, device=state.device)[state]

    def predecessors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(previous state, index parity) of the two branches into each state, each (S, 2)."""
        incoming: list[list[tuple[int, int]]] = [[] for _ in range(self.num_states)]
        for state, targets in enumerate(self.next_state):
            for parity, target in enumerate(targets):
                incoming[target].append((state, parity))
        if any(len(branches) != 2 for branches in incoming):
            raise ValueError("every trellis state needs exactly two incoming branches")
        table = torch.tensor(incoming, dtype=torch.int64)
        return table[..., 0], table[..., 1]


FOUR_STATES = Trellis(((0, 2), (2, 0), (1, 3), (3, 1)), (0, 0, 1, 1))
EIGHT_STATES = Trellis(((0, 2), (7, 5), (1, 3), (6, 4), (2, 0), (5, 7), (3, 1), (4, 6)), (0, 1, 0, 1, 0, 1, 0, 1))
TRELLISES = {4: FOUR_STATES, 8: EIGHT_STATES}


def reconstruction_levels(indices: torch.Tensor, quantizers: torch.Tensor) -> torch.Tensor:
    """Union-grid levels of quantization indices: ``2k`` under Q0, ``2k - sgn(k)`` under Q1."""
    return 2 * indices - quantizers * torch.sign(indices)


def indices_of_levels(levels: torch.Tensor, quantizers: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`reconstruction_levels`; a level the quantizer does not have is a ValueError."""
    valid = torch.where(quantizers == 0, levels.remainder(2) == 0, (levels == 0) | (levels.remainder(2) == 1))
    if not bool(valid.all()):
        raise ValueError("levels that their quantizer cannot reconstruct")
    return torch.div(levels + quantizers * torch.sign(levels), 2, rounding_mode="floor")


def cell_bounds(levels: torch.Tensor, quantizers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high) of each level's decision cell in its quantizer (halfway to the neighbouring levels)."""
    levels = levels.to(torch.float64) if not levels.is_floating_point() else levels
    low, high = levels - 1.0, levels + 1.0
    q1 = quantizers == 1
    low = torch.where(q1 & (levels == 0), -0.5, torch.where(q1 & (levels == 1), 0.5, low))
    high = torch.where(q1 & (levels == 0), 0.5, torch.where(q1 & (levels == -1), -0.5, high))
    return low, high


def class_minima(
    residuals: torch.Tensor, scales: torch.Tensor, max_index: torch.Tensor, lmbda: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best index of each (quantizer, parity) class for every latent, and its cost.

    ``residuals`` (latent minus mean), ``scales`` and ``max_index`` (the largest ``|k|`` the coding
    table of the latent holds, >= 1) have one entry per latent (any shape ``X``). Returns
    ``(cost, index)``, each ``X + (4,)`` over the classes ``2 * quantizer + parity``, with
    cost = ``(r - level)^2 + lmbda * bits``, exact over ``|k| <= max_index``.

    Why it is exact: by symmetry the best level has the sign of ``r``. Along a class, beyond its
    first element, levels are 4 apart with cells of equal width, which
    :func:`~rdvq.sq.cells.grid_minimum` searches exactly; Q1's first element (level 0 or 1, with a
    narrower cell) is compared separately.
    """
    shape = residuals.shape
    a = residuals.to(torch.float64).abs().reshape(-1, 1)
    sign = torch.where(residuals < 0, -1, 1).to(torch.int64).reshape(-1, 1)
    scale = scales.to(torch.float64).reshape(-1, 1)
    device = a.device
    parity = torch.tensor(_CLASS_PARITY, device=device)
    quantizer = torch.tensor(_CLASS_QUANTIZER, device=device)
    first = torch.tensor(_CLASS_FIRST_REGULAR, device=device)
    offset = torch.tensor(_CLASS_OFFSET, dtype=torch.float64, device=device)
    last = torch.div(max_index.to(torch.int64).reshape(-1, 1) - parity, 2, rounding_mode="floor")
    cost, j = grid_minimum(a, scale, offset, 4.0, 1.0, first, last, lmbda)
    index = parity + 2 * j

    # Q1's first element: index 0 (level 0) for parity 0, index 1 (level 1) for parity 1.
    special_level = parity[2:].to(torch.float64)
    special_low, special_high = cell_bounds(special_level, quantizer[2:])
    special = (a - special_level).square() + lmbda * cell_bits(special_low, special_high, scale)
    use_special = special <= cost[:, 2:]
    cost[:, 2:] = torch.where(use_special, special, cost[:, 2:])
    index[:, 2:] = torch.where(use_special, parity[2:], index[:, 2:])
    return cost.reshape(*shape, 4), (sign * index).reshape(*shape, 4)


@dataclass
class TrellisPath:
    """The Viterbi result for N sequences of T latents."""

    indices: torch.Tensor  # (N, T) int64 quantization indices
    quantizers: torch.Tensor  # (N, T) int64 the quantizer each latent was coded with
    cost: torch.Tensor  # (N,) float64 total D + lambda R of each sequence


def viterbi(
    residuals: torch.Tensor, scales: torch.Tensor, max_index: torch.Tensor, lmbda: float, trellis: Trellis
) -> TrellisPath:
    """The minimum-cost index sequences for ``residuals`` (N, T), every sequence starting in state 0.

    ``scales`` and ``max_index`` are (N, T) like the residuals (see :func:`class_minima`).
    """
    n, steps = residuals.shape
    device = residuals.device
    branch_cost, branch_index = class_minima(residuals, scales, max_index, lmbda)  # (N, T, 4)
    # State-major layouts (T, 4, N) and (S, N): selecting predecessors copies whole rows.
    branch_cost = branch_cost.permute(1, 2, 0).contiguous()
    branch_index = branch_index.permute(1, 2, 0).contiguous()
    prev_state, prev_parity = trellis.predecessors()
    prev_class = 2 * trellis.quantizer(prev_state) + prev_parity  # (S, 2)
    # Branch b into state s at row b * S + s, so both halves of a step's candidates are contiguous.
    flat_state = prev_state.t().reshape(-1).to(device)
    flat_class = prev_class.t().reshape(-1).to(device)
    states = trellis.num_states
    cost = torch.full((states, n), torch.inf, dtype=torch.float64, device=device)
    cost[0] = 0.0
    choices = torch.empty(steps, states, n, dtype=torch.bool, device=device)
    for t in range(steps):
        candidates = cost.index_select(0, flat_state) + branch_cost[t].index_select(0, flat_class)
        first, second = candidates[:states], candidates[states:]
        torch.lt(second, first, out=choices[t])
        cost = torch.where(choices[t], second, first)
    total, state = cost.min(0)
    indices = torch.empty(steps, n, dtype=torch.int64, device=device)
    quantizers = torch.empty_like(indices)
    for t in range(steps - 1, -1, -1):
        branch = state + states * choices[t].gather(0, state.unsqueeze(0)).squeeze(0).to(torch.int64)
        klass = flat_class[branch]
        indices[t] = branch_index[t].gather(0, klass.unsqueeze(0)).squeeze(0)
        quantizers[t] = klass // 2
        state = flat_state[branch]
    indices, quantizers = indices.t(), quantizers.t()
    return TrellisPath(indices=indices, quantizers=quantizers, cost=total)


def quantizers_of_levels(levels: torch.Tensor, trellis: Trellis) -> torch.Tensor:
    """The quantizer of every latent of level sequences along the last dimension (from state 0):
    what a decoder derives while it decodes, recomputed from reconstructed levels."""
    state = torch.zeros(levels.shape[:-1], dtype=torch.int64, device=levels.device)
    out = torch.empty_like(levels)
    for t in range(levels.shape[-1]):
        quantizer = trellis.quantizer(state)
        out[..., t] = quantizer
        state = trellis.next(state, indices_of_levels(levels[..., t], quantizer))
    return out
