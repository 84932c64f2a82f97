"""RDVQ's masked-transformer entropy model: indices coded slice by slice, coarse to fine.

The schedule (:mod:`rdvq.entropy.slices`) cuts every window of the image into slices, regular
sub-lattices of one branch. A position's distribution depends only on the indices of earlier
slices: within its window, every position of an earlier slice (the coarser branches included) and,
as its own input, the codewords of the branch coded just before its own, upsampled to its grid.

Two token streams share one network (as in M2T): a *content* token per position carries its
projected codeword, a *query* token per position carries a learned query embedding plus the
upsampled context, and predicts the position's index (K logits). Content tokens attend to content
of their own and earlier slices, query tokens to content of earlier slices; a learned start token
leads every window's content. Training is one parallel pass under that mask (teacher forcing), against hard indices
or the soft posterior. Coding runs the same network incrementally, one slice per step with a KV
cache: step ``s`` adds the content of slice ``s - 1`` to the cache and reads the logits of slice
``s``. The encoder and the decoder both run this loop (same shapes, same kernels), because
tables come from bucketed floats and the teacher-forced pass is not bit-identical to it.

Blocks: pre-norm, RMSNorm, cosine attention with a learned per-head scale, 2D rotary embedding
on coordinates in units of the finest branch's grid (so co-located tokens of different scales
share phases), SwiGLU.

Coding: one range-coded stream, window group after window group, slice after slice, positions of
a slice window after window in raster order, under the probability engine's logit tables. Header
parameters: ``top_k`` (bounded tail floor, 0: off), ``slices`` T (only slices 0..T-1 are coded;
the decoder completes the rest from the model), the completion mode (0 argmax, 1 sampling from the
coded integer tables) and the sampling seed. The encoder runs the same completion, so it knows the
decoder's indices exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from rdvq.coding import IndexDecoder, IndexEncoder, ProbabilityEngine
from rdvq.coding.engine import check_tail_floor, tail_floor
from rdvq.coding.format import MAX_TILE_CELLS, MAX_WINDOW
from rdvq.coding.header import VARINT_MAX, HeaderField, HeaderSchema
from rdvq.coding.index_selection import encode_selected
from rdvq.coding.probability import MAX_CODEBOOK_SIZE, TOTAL
from rdvq.config_dict import DictConfig
from rdvq.encode_options import COMPLETIONS, MAX_SEED, EncodeOptions
from rdvq.entropy.base import (
    LN2,
    BranchBatch,
    CodingContext,
    CompressedIndices,
    IndexEntropyModel,
    RateEstimate,
)
from rdvq.entropy.slices import Layout, Slice, SliceSchedule, WindowGroup, WindowPlan
from rdvq.errors import ConfigError, InvalidHeaderError

ROPE_BASE = 100.0  # positions span tens of finest-grid cells per window
_INITIAL_ATTENTION_SCALE = 10.0
_MAX_ATTENTION_SCALE = 100.0


@dataclass
class TransformerConfig(DictConfig):
    """``layers`` x ``width`` with ``heads`` attention heads (width / heads divisible by 4, for the
    2D rotary embedding). ``tiles``: the slice pattern ``[rows, cols]`` of every branch in coding
    order, coarse to fine (None: RDVQ's, 4 + 8 + 16 slices for three scales). ``window``: side of
    the independent coding windows in tokens of the coarsest branch, at most
    :data:`~rdvq.entropy.slices.MAX_WINDOW` (a window bounds the decoder's memory, so there is no
    unbounded whole-image mode; 16 covers a Kodak image at /64).
    ``kv_cache: false`` recomputes every earlier slice at each coding step instead of caching
    keys and values (slower, for measurement; its files need a model configured the same way)."""

    section: ClassVar[str] = "entropy_model (transformer)"

    kind: Literal["transformer"] = "transformer"
    layers: int = 4
    width: int = 192
    heads: int = 4
    tiles: list[list[int]] | None = None
    window: int = 8
    kv_cache: bool = True

    def __post_init__(self) -> None:
        if self.layers < 1 or self.width < 1 or self.heads < 1:
            raise ConfigError("entropy_model.layers, width and heads must be >= 1")
        if self.width % self.heads or (self.width // self.heads) % 4:
            raise ConfigError(
                f"entropy_model.width / heads must be a whole multiple of 4, got {self.width} / {self.heads}"
            )
        if not 1 <= self.window <= MAX_WINDOW:
            raise ConfigError(f"entropy_model.window must be in 1..{MAX_WINDOW}, got {self.window}")
        if self.tiles is not None:
            self.tiles = [list(t) for t in self.tiles]
            for tile in self.tiles:
                if len(tile) != 2 or min(tile) < 1 or tile[0] * tile[1] > MAX_TILE_CELLS:
                    raise ConfigError(
                        f"entropy_model.tiles entries are [rows, cols] with at most {MAX_TILE_CELLS} cells, got {tile}"
                    )


# ---------------------------------------------------------------------------------------- network
def rope_table(coords: torch.Tensor, head_dim: int) -> torch.Tensor:
    """(n, 2) (row, col) coordinates -> (n, head_dim / 2) unit complex numbers: channel pair ``i``
    of a head turns by ``coord * ROPE_BASE^(-j/count)``, the first half of the pairs with the row,
    the second half with the column."""
    count = head_dim // 4
    freqs = ROPE_BASE ** (-torch.arange(count, dtype=torch.float32, device=coords.device) / count)
    angles = torch.cat([coords[:, :1] * freqs, coords[:, 1:] * freqs], -1)
    return torch.polar(torch.ones_like(angles), angles)


def rotate(x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of ``x`` (..., n, head_dim): channel pairs (2i, 2i+1) as complex numbers
    times ``rope`` (n, head_dim / 2), in float32 (there are no bfloat16 complex numbers)."""
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2).contiguous())
    return torch.view_as_real(pairs * rope).flatten(-2).to(x.dtype)


class Block(nn.Module):
    """Pre-norm transformer block: cosine attention with a learned per-head scale, then SwiGLU."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        hidden = 8 * width // 3
        self.heads = heads
        self.attention_norm = nn.RMSNorm(width, eps=1e-5)
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width, bias=False)
        self.log_scale = nn.Parameter(torch.full((heads, 1, 1), math.log(_INITIAL_ATTENTION_SCALE)))
        self.mlp_norm = nn.RMSNorm(width, eps=1e-5)
        self.gate_up = nn.Linear(width, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, width, bias=False)

    def project(self, x: torch.Tensor, rope: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, n, d) -> q, k, v (B, heads, n, head_dim); q and k unit vectors, rotated, q scaled."""
        b, n, _ = x.shape
        q, k, v = self.qkv(self.attention_norm(x)).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        scale = self.log_scale.clamp(max=math.log(_MAX_ATTENTION_SCALE)).exp()
        q = rotate(F.normalize(q, dim=-1) * scale, rope)
        k = rotate(F.normalize(k, dim=-1), rope)
        return q, k, v

    def finish(self, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """Residual updates from the attention output (B, heads, n, head_dim), then the MLP."""
        x = x + self.proj(attended.transpose(1, 2).flatten(2))
        gate, up = self.gate_up(self.mlp_norm(x)).chunk(2, -1)
        return x + self.down(F.silu(gate) * up)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0)


class SliceTransformer(nn.Module):
    """The network: content and query tokens through shared blocks. A learned start token (slice
    -1, no rotation) leads every window's content, so every query has a key to attend to."""

    def __init__(self, layers: int, width: int, heads: int) -> None:
        super().__init__()
        self.head_dim = width // heads
        self.start = nn.Parameter(torch.zeros(width))
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.norm = nn.RMSNorm(width, eps=1e-5)
        for block in self.blocks:
            for linear in (block.qkv, block.proj, block.gate_up, block.down):
                nn.init.normal_(linear.weight, std=0.02)

    def with_start(self, batch: int, content: torch.Tensor, coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``content`` (B, m, d) and its coordinates with the start token in front."""
        start = self.start.to(content.dtype).expand(batch, 1, -1)
        return torch.cat([start, content], 1), torch.cat([coords.new_zeros(1, 2), coords])

    def parallel(
        self, content: torch.Tensor, queries: torch.Tensor, content_coords: torch.Tensor, query_coords: torch.Tensor,
        content_slices: torch.Tensor, query_slices: torch.Tensor,
    ) -> torch.Tensor:
        """Normalized query outputs (B, n, d) for content tokens (B, m, d) and query tokens (B, n, d)
        in one pass: content sees content of its own and earlier slices, queries see content of
        earlier slices (the start token included)."""
        content, content_coords = self.with_start(queries.shape[0], content, content_coords)
        content_slices = torch.cat([content_slices.new_full((1,), -1), content_slices])
        m = content.shape[1]
        content_mask = content_slices.unsqueeze(0) <= content_slices.unsqueeze(1)
        query_mask = content_slices.unsqueeze(0) < query_slices.unsqueeze(1)
        rope = rope_table(torch.cat([content_coords, query_coords]), self.head_dim)
        x = torch.cat([content, queries], 1)
        for i, block in enumerate(self.blocks):
            q, k, v = block.project(x, rope)
            attended_queries = _attend(q[:, :, m:], k[:, :, :m], v[:, :, :m], query_mask)
            if i == len(self.blocks) - 1:  # nothing reads the content tokens' last outputs
                return self.norm(block.finish(x[:, m:], attended_queries))
            attended_content = _attend(q[:, :, :m], k[:, :, :m], v[:, :, :m], content_mask)
            x = block.finish(x, torch.cat([attended_content, attended_queries], 2))
        raise AssertionError("unreachable: a network has at least one block")


class CodingState:
    """The incremental loop's memory for one window group of ``batch`` windows: per layer the keys
    and values of every content token so far (``cached``), or the content tokens themselves,
    recomputed at every step (the uncached variant, for measurement)."""

    def __init__(self, net: SliceTransformer, cached: bool, batch: int) -> None:
        self.net, self.cached, self.batch = net, cached, batch
        self.keys: list[torch.Tensor | None] = [None] * len(net.blocks)
        self.values: list[torch.Tensor | None] = [None] * len(net.blocks)
        self.content: list[tuple[torch.Tensor, torch.Tensor, int]] = []  # uncached: (tokens, coords, slice id)
        self.started = False

    def step(
        self, content: torch.Tensor | None, content_coords: torch.Tensor | None, content_slice: int,
        queries: torch.Tensor | None, query_coords: torch.Tensor | None, query_slice: int,
    ) -> torch.Tensor | None:
        """Add content tokens (of slice ``content_slice``); return the outputs of the query tokens
        (of slice ``query_slice``), which see every content token added so far."""
        if content is None and queries is None:
            return None
        if not self.cached:
            if content is not None:
                self.content.append((content, content_coords, content_slice))
            return None if queries is None else self._uncached(queries, query_coords, query_slice)
        if not self.started:  # the window's first content: the start token leads
            like = content if content is not None else queries
            content, content_coords = self.net.with_start(
                self.batch, like[:, :0] if content is None else content,
                query_coords[:0] if content_coords is None else content_coords,
            )
            self.started = True
        m = 0 if content is None else content.shape[1]
        x = torch.cat([p for p in (content, queries) if p is not None], 1)
        rope = rope_table(torch.cat([c for c in (content_coords, query_coords) if c is not None]), self.net.head_dim)
        last = len(self.net.blocks) - 1
        for i, block in enumerate(self.net.blocks):
            q, k, v = block.project(x, rope)
            if m:
                self.keys[i] = k[:, :, :m] if self.keys[i] is None else torch.cat([self.keys[i], k[:, :, :m]], 2)
                self.values[i] = v[:, :, :m] if self.values[i] is None else torch.cat([self.values[i], v[:, :, :m]], 2)
            if queries is None:
                if i == last:
                    return None
                x = block.finish(x, _attend(q, self.keys[i], self.values[i], None))
                continue
            attended_queries = _attend(q[:, :, m:], self.keys[i], self.values[i], None)
            if i == last:
                return self.net.norm(block.finish(x[:, m:], attended_queries))
            parts = [_attend(q[:, :, :m], self.keys[i], self.values[i], None)] if m else []
            x = block.finish(x, torch.cat(parts + [attended_queries], 2))
        raise AssertionError("unreachable: a network has at least one block")

    def _uncached(self, queries: torch.Tensor, query_coords: torch.Tensor, query_slice: int) -> torch.Tensor:
        device = queries.device
        content = torch.cat([queries[:, :0]] + [c for c, _, _ in self.content], 1)
        coords = torch.cat([query_coords[:0]] + [c for _, c, _ in self.content])
        slices = torch.cat(
            [torch.zeros(0, dtype=torch.int64, device=device)]
            + [torch.full((c.shape[1],), s, device=device) for c, _, s in self.content]
        )
        return self.net.parallel(content, queries, coords, query_coords, slices, torch.full((queries.shape[1],), query_slice, device=device))


# ---------------------------------------------------------------------------------------- model
class _GroupCrops:
    """The encoder's indices (G, h*w) and latents (G, h*w, D) per branch for the window group
    being coded, cropped once per group."""

    def __init__(self, branches: list[BranchBatch], layout: Layout) -> None:
        self.branches, self.layout = branches, layout
        self.group: WindowGroup | None = None  # held, so a later group can never be mistaken for it
        self.crops: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])

    def of(self, group: WindowGroup) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        if self.group is not group:
            pairs = list(zip(self.branches, self.layout.ratios))
            self.group = group
            self.crops = (
                [group.crop(b.indices, r).flatten(1) for b, r in pairs],
                [group.crop(b.latents.permute(0, 2, 3, 1), r).flatten(1, 2) for b, r in pairs],
            )
        return self.crops


Chooser = Callable[[int, WindowGroup, Slice, torch.Tensor], torch.Tensor]


class TransformerModel(IndexEntropyModel):
    kind = "transformer"
    model_id = 3
    config_class = TransformerConfig
    options = frozenset({"top_k", "slices", "completion", "seed", "rdo_lambda"})
    header = HeaderSchema("entropy model transformer", (
        HeaderField("top_k", MAX_CODEBOOK_SIZE),  # bounded tail floor, 0: off
        HeaderField("slices", VARINT_MAX),  # slices coded; the decoder completes the rest
        HeaderField("completion", len(COMPLETIONS) - 1),  # 0 argmax, 1 sampling
        HeaderField("seed", MAX_SEED),  # of the sampling completion
    ))

    def __init__(self, codebook_sizes: list[int], dim: int, config: TransformerConfig) -> None:
        super().__init__()
        count = len(codebook_sizes)
        tiles = None if config.tiles is None else [tuple(t) for t in config.tiles]
        if tiles is not None and len(tiles) != count:
            raise ConfigError(f"entropy_model.tiles has {len(tiles)} entries, the tokenizer has {count} branches")
        self.schedule = SliceSchedule(count, tiles, config.window)
        self.kv_cache = config.kv_cache
        self.content_in = nn.Linear(dim, config.width)
        self.context_in = nn.Linear(dim, config.width)
        self.query_token = nn.Parameter(torch.zeros(config.width))
        self.branch_embedding = nn.Parameter(torch.zeros(count, config.width))
        self.net = SliceTransformer(config.layers, config.width, config.heads)
        self.heads = nn.ModuleList(nn.Linear(config.width, size) for size in codebook_sizes)
        for head in self.heads:  # start from the uniform distribution
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    @classmethod
    def build(cls, config: TransformerConfig, codebook_sizes: list[int], dim: int, coding_only: bool = False) -> "TransformerModel":
        return cls(codebook_sizes, dim, config)

    @property
    def num_slices(self) -> int:
        return self.schedule.num_slices

    # ------------------------------------------------------------------ inputs
    def content_tokens(self, vectors: torch.Tensor, branch: int) -> torch.Tensor:
        """(B, n, D) codewords of branch ``branch`` -> content tokens (B, n, d)."""
        return self.content_in(vectors) + self.branch_embedding[branch]

    def query_tokens(self, context: torch.Tensor | None, branch: int, shape: tuple[int, int]) -> torch.Tensor:
        """Query tokens (B, n, d) from the upsampled context (B, n, D), or without one."""
        base = self.query_token + self.branch_embedding[branch]
        if context is None:
            return base.expand(*shape, -1)
        return self.context_in(context) + base

    @staticmethod
    def upsampled_context(vectors: torch.Tensor | None, size: tuple[int, int]) -> torch.Tensor | None:
        """(B, h', w', D) codewords of the context branch -> (B, h*w, D) on this branch's window grid."""
        if vectors is None:
            return None
        if tuple(vectors.shape[1:3]) != size:
            vectors = F.interpolate(vectors.permute(0, 3, 1, 2), size=size, mode="bilinear", align_corners=False).permute(0, 2, 3, 1)
        return vectors.reshape(vectors.shape[0], size[0] * size[1], -1)

    # ------------------------------------------------------------------ training
    def forward(self, branches: list[BranchBatch]) -> RateEstimate:
        batch = branches[0].indices.shape[0]
        bits = [torch.zeros(batch, device=b.latents.device) for b in branches]
        for group, i, ratio, positions, logits in self._teacher_forced(branches):
            branch = branches[i]
            indices = group.crop(branch.indices, ratio).flatten(1)[:, positions]
            if branch.targets is None:
                target = indices.reshape(-1)
            else:
                target = group.crop(branch.targets, ratio).flatten(1, 2)[:, positions].flatten(0, 1)
            nats = F.cross_entropy(logits.flatten(0, 1).float(), target, reduction="none")
            bits[i] = bits[i] + nats.view(batch, -1).sum(1) / LN2
        return RateEstimate(index_bits=bits, side_bits=[torch.zeros_like(b) for b in bits])

    def log_probs(self, branches: list[BranchBatch]) -> list[torch.Tensor]:
        """The teacher-forced log-probabilities (B, h, w, K) of every branch (what training
        minimizes the cross-entropy of; coding runs :meth:`run_schedule` instead)."""
        out = [
            torch.zeros(*b.indices.shape, head.out_features, device=b.latents.device) for b, head in zip(branches, self.heads)
        ]
        for group, i, ratio, positions, logits in self._teacher_forced(branches):
            h, w = group.plan.sizes[i]
            window = logits.new_zeros(logits.shape[0], h * w, logits.shape[-1])
            window[:, positions] = F.log_softmax(logits.float(), -1)
            group.paste(out[i], window.view(-1, h, w, logits.shape[-1]), ratio)
        return out

    def _teacher_forced(self, branches: list[BranchBatch]) -> Iterator[tuple[WindowGroup, int, int, torch.Tensor, torch.Tensor]]:
        """(window group, branch, its size ratio, window positions, logits (B * windows, n, K)) of
        every branch and window size: one parallel pass per window size, windows image-major."""
        shapes = [tuple(b.indices.shape[-2:]) for b in branches]
        layout, groups = self.schedule.groups(shapes, max_tokens=None)
        vectors = [self._training_vectors(b) for b in branches]  # (B, h, w, D)
        for group in groups:
            hidden = self._parallel(layout, group.plan, [group.crop(v, layout.ratios[i]) for i, v in enumerate(vectors)])
            for i in range(len(branches)):
                rows = group.plan.branch_rows(i).to(hidden.device)
                if rows.numel():
                    positions = group.plan.branch_positions(i).to(hidden.device)
                    yield group, i, layout.ratios[i], positions, self.heads[i](hidden[:, rows])

    @staticmethod
    def _training_vectors(branch: BranchBatch) -> torch.Tensor:
        """The sent codewords (B, h, w, D); straight-through from the latents when they carry
        gradients, so the rate also reaches the encoder through the context (as in RDVQ)."""
        hard = F.embedding(branch.indices, branch.codewords)
        latents = branch.latents.permute(0, 2, 3, 1)
        return latents + (hard - latents).detach() if latents.requires_grad else hard

    def _parallel(self, layout: Layout, plan: WindowPlan, crops: list[torch.Tensor]) -> torch.Tensor:
        """Query outputs (B, N, d) of one window batch in sequence order (teacher forcing)."""
        device = crops[0].device
        flat = [c.flatten(1, 2) for c in crops]  # (B, h*w, D)
        contexts = [
            self.upsampled_context(None if layout.context[i] is None else crops[layout.context[i]], plan.sizes[i])
            for i in range(len(crops))
        ]
        content, queries = [], []
        for s in plan.slices:
            positions = s.positions.to(device)
            content.append(self.content_tokens(flat[s.branch][:, positions], s.branch))
            context = contexts[s.branch]
            queries.append(self.query_tokens(None if context is None else context[:, positions], s.branch, (crops[0].shape[0], s.size)))
        coords = torch.cat([s.coords for s in plan.slices]).to(device)
        slices = plan.sequence_slice.to(device)
        return self.net.parallel(torch.cat(content, 1), torch.cat(queries, 1), coords, coords, slices, slices)

    # ------------------------------------------------------------------ coding
    def run_schedule(self, layout: Layout, groups: Iterable[WindowGroup], codewords: list[torch.Tensor], choose: Chooser) -> list[torch.Tensor]:
        """The incremental loop both sides run. ``choose(slice id, window group, slice, logits)``
        turns a slice's logits (G, n, K) into its indices (G, n): the encoder codes its indices
        (or completes), the decoder decodes them (or completes). Returns the index maps (1, h, w)."""
        device = codewords[0].device
        maps = [torch.zeros(1, layout.coarse[0] * r, layout.coarse[1] * r, dtype=torch.int64) for r in layout.ratios]
        for group in groups:
            plan, count = group.plan, len(group.origins)
            windows = [torch.zeros(count, h * w, dtype=torch.int64, device=device) for h, w in plan.sizes]
            state = CodingState(self.net, self.kv_cache, count)
            contexts: dict[int, torch.Tensor | None] = {}
            previous: tuple[int, Slice] | None = None
            for number_in_plan, spec in enumerate(plan.slices):
                branch = spec.branch
                if branch not in contexts:  # the context branch is complete by now
                    source = layout.context[branch]
                    vectors = None if source is None else codewords[source][windows[source]].view(count, *plan.sizes[source], -1)
                    contexts[branch] = self.upsampled_context(vectors, plan.sizes[branch])
                content = content_coords = None
                if previous is not None and previous[1].size:
                    before = previous[1]
                    sent = codewords[before.branch][windows[before.branch][:, before.positions.to(device)]]
                    content, content_coords = self.content_tokens(sent, before.branch), before.coords.to(device)
                queries = query_coords = None
                if spec.size:
                    positions = spec.positions.to(device)
                    context = contexts[branch]
                    queries = self.query_tokens(None if context is None else context[:, positions], branch, (count, spec.size))
                    query_coords = spec.coords.to(device)
                hidden = state.step(
                    content, content_coords, -1 if previous is None else previous[0], queries, query_coords, number_in_plan
                )
                if hidden is not None:
                    logits = self.heads[branch](hidden).float()
                    windows[branch][:, positions] = choose(number_in_plan, group, spec, logits).to(device)
                previous = (number_in_plan, spec)
            for i, ratio in enumerate(layout.ratios):
                group.paste(maps[i], windows[i].view(count, *plan.sizes[i]).cpu(), ratio)
        return maps

    def _completion(self, mode: str, engine: ProbabilityEngine, seed: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """Indices of an uncoded slice from its logits (N, K): the most likely index, or a draw from
        the integer table the slice would be coded with (exact on every machine), seeded."""
        generator = torch.Generator().manual_seed(seed)

        def complete(logits: torch.Tensor) -> torch.Tensor:
            if mode == "argmax":
                return logits.argmax(-1).cpu()
            drawn = []
            for table in engine.logit_tables(logits):
                cdf = table.full().cumsum(-1)
                u = torch.randint(0, TOTAL, (table.num_positions, 1), generator=generator)
                drawn.append(torch.searchsorted(cdf, u, right=True).squeeze(-1))
            return torch.cat(drawn)

        return complete

    def compress(self, branches: list[BranchBatch], context: CodingContext, options: EncodeOptions) -> CompressedIndices:
        top_k = tail_floor(options.top_k, max(c.size for c in context.codebooks))
        sent = self.num_slices if options.slices is None else options.slices
        if sent > self.num_slices:
            raise ConfigError(f"--slices {sent}: this model codes {self.num_slices} slices")
        if options.seed and options.completion != "sample":
            raise ConfigError("--seed applies only to --completion sample")
        engine = context.engine(top_k)
        encoder = IndexEncoder()
        complete = self._completion(options.completion, engine, options.seed)
        layout, groups = self.schedule.groups([tuple(b.indices.shape[-2:]) for b in branches])
        crops = _GroupCrops(branches, layout)

        def choose(slice_id: int, group: WindowGroup, spec: Slice, logits: torch.Tensor) -> torch.Tensor:
            flat = logits.flatten(0, 1)
            if slice_id >= sent:
                return complete(flat).view(logits.shape[:2])
            indices, latents = crops.of(group)
            positions = spec.positions.to(indices[spec.branch].device)
            if options.rdo_lambda is None:
                symbols = indices[spec.branch][:, positions].reshape(-1)
                engine.encode_logits(encoder, symbols, flat)
                return symbols.view(logits.shape[:2])
            rows = latents[spec.branch][:, positions].flatten(0, 1)
            chosen = encode_selected(encoder, engine.logit_tables(flat), rows, context.codewords[spec.branch], options.rdo_lambda)
            return chosen.view(logits.shape[:2])

        maps = self.run_schedule(layout, groups, context.codewords, choose)
        parameters = self.header.pack(
            top_k=top_k or 0, slices=sent, completion=COMPLETIONS.index(options.completion), seed=options.seed
        )
        return CompressedIndices(streams=[encoder.finish()], parameters=parameters, indices=maps)

    def decompress(
        self, streams: list[bytes], parameters: tuple[int, ...], shapes: list[tuple[int, int]], context: CodingContext
    ) -> list[torch.Tensor]:
        header = self.read_header(streams, parameters)
        top_k, sent, completion, seed = (header[name] for name in self.header.names())
        check_tail_floor(top_k, max(c.size for c in context.codebooks))
        if not 1 <= sent <= self.num_slices:
            raise InvalidHeaderError(f"slice count {sent} outside 1..{self.num_slices}")
        engine = context.engine(top_k or None)
        decoder = IndexDecoder(streams[0])
        complete = self._completion(COMPLETIONS[completion], engine, seed)

        def choose(slice_id: int, group: WindowGroup, spec: Slice, logits: torch.Tensor) -> torch.Tensor:
            flat = logits.flatten(0, 1)
            symbols = complete(flat) if slice_id >= sent else engine.decode_logits(decoder, flat)
            return symbols.view(logits.shape[:2])

        layout, groups = self.schedule.groups(list(shapes))
        return self.run_schedule(layout, groups, context.codewords, choose)
