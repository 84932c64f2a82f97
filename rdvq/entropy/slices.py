"""The masked transformer's fixed coding schedule: branch order, slices and windows.

Branches are coded coarse to fine (residual stages of one scale in stage order), each branch in
*slices*: a small tile pattern of ``rows x cols`` cells is laid over the branch's map from its
top-left corner, and slice ``t`` of the branch is every position whose cell in its tile is ``t``
(cells numbered in raster order), i.e. a regular sub-lattice; consecutive slices are lattice
shifts. RDVQ's schedule for three scales is 2x2, 2x4 and 4x4 tiles: 4 + 8 + 16 = 28 slices.

The image is cut into independent square *windows* (``window`` tokens of the coarsest branch per
side, the same pixels in every branch), each coded with the whole schedule. Windows of the same
size are batched in groups of at most :data:`MAX_GROUP_TOKENS` tokens, in a fixed order, so encoder
and decoder run the same shapes, and a decoder's memory is bounded by one group (and a window by
:data:`MAX_WINDOW`) whatever size a file declares.

Everything here is derived from the index-map shapes, which the decoder knows from the image size:
distinct scales always have distinct shapes, and residual stages of one scale are consecutive in
the tokenizer's branch order with equal shapes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from rdvq.coding.format import MAX_GROUP_TOKENS


def coding_order(shapes: list[tuple[int, int]]) -> list[int]:
    """Branch indices (tokenizer order: finest scale first) in coding order: coarse to fine,
    residual stages of one scale in stage order."""
    groups: list[list[int]] = []
    for i, shape in enumerate(shapes):
        if groups and shapes[groups[-1][0]] == shape:
            groups[-1].append(i)
        else:
            groups.append([i])
    return [i for group in reversed(groups) for i in group]


def default_tiles(num_branches: int) -> list[tuple[int, int]]:
    """RDVQ's tiles, coarse to fine: the finest branch gets 16 slices (4x4), each coarser one half
    as many, at least 4 (2x4, then 2x2). Three branches: 4 + 8 + 16 = 28 slices."""
    cells = {4: (2, 2), 8: (2, 4), 16: (4, 4)}
    return [cells[max(4, 16 >> (num_branches - 1 - j))] for j in range(num_branches)]


@dataclass(frozen=True)
class Layout:
    """Branch geometry of one image: coding order, each branch's size relative to the coarsest
    (``ratio``), and the map that gives each branch its upsampled context (the branch coded just
    before it, or None for the first)."""

    order: tuple[int, ...]
    ratios: tuple[int, ...]  # per branch (tokenizer order)
    coarse: tuple[int, int]  # the coarsest branch's map size
    context: tuple[int | None, ...]  # per branch

    @classmethod
    def from_shapes(cls, shapes: list[tuple[int, int]]) -> "Layout":
        order = coding_order(shapes)
        coarse = shapes[order[0]]
        ratios = []
        for h, w in shapes:
            ratio = h // coarse[0]
            if (h, w) != (ratio * coarse[0], ratio * coarse[1]):
                raise ValueError(f"branch shapes {shapes} are not multiples of the coarsest {coarse}")
            ratios.append(ratio)
        context: list[int | None] = [None] * len(shapes)
        for previous, branch in zip(order, order[1:]):
            context[branch] = previous
        return cls(tuple(order), tuple(ratios), coarse, tuple(context))


@dataclass
class Slice:
    """One coding step: ``positions`` (flat, raster order) of branch ``branch``'s window map,
    with their coordinates in units of the finest branch's grid (for the rotary embedding)."""

    branch: int
    positions: torch.Tensor  # (n,) int64
    coords: torch.Tensor  # (n, 2) float32, (row, col)

    @property
    def size(self) -> int:
        return self.positions.numel()


@dataclass
class WindowPlan:
    """The schedule laid over one window size: its slices, and the flat sequence the parallel
    (teacher-forced) pass runs on, slice after slice."""

    sizes: list[tuple[int, int]]  # per branch, the window's map size
    slices: list[Slice]
    sequence_slice: torch.Tensor = field(init=False)  # (N,) slice id of each sequence position

    def __post_init__(self) -> None:
        self.sequence_slice = torch.cat(
            [torch.full((s.size,), i, dtype=torch.int64) for i, s in enumerate(self.slices)]
        )

    @property
    def num_tokens(self) -> int:
        return sum(h * w for h, w in self.sizes)

    def branch_rows(self, branch: int) -> torch.Tensor:
        """Sequence positions that belong to ``branch``."""
        rows, start = [], 0
        for s in self.slices:
            if s.branch == branch:
                rows.append(torch.arange(start, start + s.size))
            start += s.size
        return torch.cat(rows) if rows else torch.zeros(0, dtype=torch.int64)

    def branch_positions(self, branch: int) -> torch.Tensor:
        """Flat window positions of :meth:`branch_rows`, in the same order."""
        parts = [s.positions for s in self.slices if s.branch == branch]
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.int64)


@dataclass(frozen=True)
class WindowGroup:
    """Windows of one size coded together as a batch. ``origins`` are top-left corners and
    ``size`` the window size, in tokens of the coarsest branch."""

    plan: WindowPlan
    origins: tuple[tuple[int, int], ...]
    size: tuple[int, int]

    def crop(self, maps: torch.Tensor, ratio: int) -> torch.Tensor:
        """(B, H, W, ...) branch maps -> (B * windows, h, w, ...), image-major."""
        h, w = self.size[0] * ratio, self.size[1] * ratio
        crops = [maps[:, r * ratio : r * ratio + h, c * ratio : c * ratio + w] for r, c in self.origins]
        return torch.stack(crops, 1).flatten(0, 1)

    def paste(self, maps: torch.Tensor, windows: torch.Tensor, ratio: int) -> None:
        """Inverse of :meth:`crop`: write (B * windows, h, w, ...) back into ``maps`` in place."""
        h, w = self.size[0] * ratio, self.size[1] * ratio
        windows = windows.reshape(maps.shape[0], len(self.origins), *windows.shape[1:])
        for i, (r, c) in enumerate(self.origins):
            maps[:, r * ratio : r * ratio + h, c * ratio : c * ratio + w] = windows[:, i]


class SliceSchedule:
    """Tiles per branch in coding order (coarse to fine) and the window size, for a model with
    ``num_branches`` branches. Plans are built once per window size and kept."""

    def __init__(self, num_branches: int, tiles: list[tuple[int, int]] | None, window: int) -> None:
        self.tiles = [tuple(t) for t in tiles] if tiles is not None else default_tiles(num_branches)
        if len(self.tiles) != num_branches:
            raise ValueError(f"{len(self.tiles)} tiles for {num_branches} branches")
        self.window = window
        self.offsets = [sum(r * c for r, c in self.tiles[:j]) for j in range(num_branches)]
        self.num_slices = sum(r * c for r, c in self.tiles)
        self._plans: dict[tuple, WindowPlan] = {}

    def plan(self, layout: Layout, size: tuple[int, int]) -> WindowPlan:
        """The slices of a window of ``size`` coarsest tokens (cached)."""
        key = (layout.order, layout.ratios, size)
        if key not in self._plans:
            self._plans[key] = self._build_plan(layout, size)
        return self._plans[key]

    def _build_plan(self, layout: Layout, size: tuple[int, int]) -> WindowPlan:
        finest = max(layout.ratios)
        sizes = [(size[0] * r, size[1] * r) for r in layout.ratios]
        slices = []
        for j, branch in enumerate(layout.order):
            (h, w), (tile_rows, tile_cols) = sizes[branch], self.tiles[j]
            unit = finest / layout.ratios[branch]  # finest-grid cells per token of this branch
            for cell in range(tile_rows * tile_cols):
                a, b = divmod(cell, tile_cols)
                rows = torch.arange(h)[a::tile_rows]
                cols = torch.arange(w)[b::tile_cols]
                grid_r, grid_c = torch.meshgrid(rows, cols, indexing="ij")
                positions = (grid_r * w + grid_c).reshape(-1)
                coords = torch.stack([grid_r, grid_c], -1).reshape(-1, 2).to(torch.float32)
                slices.append(Slice(branch, positions, (coords + 0.5) * unit - 0.5))
        return WindowPlan(sizes, slices)

    def groups(self, shapes: list[tuple[int, int]], max_tokens: int | None = MAX_GROUP_TOKENS) -> tuple[Layout, Iterator[WindowGroup]]:
        """The image's layout and its window groups in coding order, made one at a time (a decoder
        stops at the first group a stream cannot fill, whatever size the file declares): windows
        of one size in raster order, sizes in the order they first occur (full windows, then the
        right column, the bottom row, the corner), at most ``max_tokens`` tokens per group (None:
        one group per size, for training batches that are in memory anyway)."""
        layout = Layout.from_shapes(shapes)
        return layout, self._groups(layout, max_tokens)

    def _groups(self, layout: Layout, max_tokens: int | None) -> Iterator[WindowGroup]:
        height, width = layout.coarse
        row_classes = _spans(height, self.window)
        col_classes = _spans(width, self.window)
        for row_size, rows in row_classes:
            for col_size, cols in col_classes:
                size = (row_size, col_size)
                plan = self.plan(layout, size)
                count = len(rows) * len(cols)
                per_group = count if max_tokens is None else max(1, max_tokens // plan.num_tokens)
                for start in range(0, count, per_group):
                    picks = range(start, min(start + per_group, count))
                    origins = tuple((rows[i // len(cols)], cols[i % len(cols)]) for i in picks)
                    yield WindowGroup(plan, origins, size)


def _spans(length: int, side: int) -> list[tuple[int, range]]:
    """Window starts along one axis by window size: the full windows, then the shorter last one."""
    full = length // side
    out = [(side, range(0, full * side, side))] if full else []
    if length % side:
        out.append((length % side, range(full * side, length, side)))
    return out
