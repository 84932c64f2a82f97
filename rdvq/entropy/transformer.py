"""RDVQ's masked-transformer entropy model: indices coded slice by slice, coarse to fine.

The schedule (:mod:`rdvq.entropy.slices`) cuts every window of the image into slices, regular
sub-lattices of one branch. A position's distribution depends only on the indices of earlier
slices: within its window, every position of an earlier slice (the coarser branches included) and,
as its own input, the codewords of the branch coded just before its own, upsampled to its grid.

Two token streams share one network (as in M2T): a *content* token per position carries its
projected codeword, a *query* token per position carries a learned query embedding plus the
upsampled context, and predicts the position's index (K logits). Content tokens attend to content
of their own and earlier slices; query tokens attend to content of earlier slices and to
themselves. Training is one parallel pass under that mask (teacher forcing), against hard indices
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
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from rdvq.coding import IndexDecoder, IndexEncoder, ProbabilityEngine
from rdvq.coding.probability import TOTAL
from rdvq.config_dict import DictConfig
from rdvq.encode_options import COMPLETIONS, MAX_SEED, EncodeOptions
from rdvq.entropy.base import (
    BranchBatch,
    CodingContext,
    CompressedIndices,
    IndexEntropyModel,
    RateEstimate,
    cross_entropy_bits,
)
from rdvq.entropy.index_selection import select_indices
from rdvq.entropy.slices import MAX_TILE_CELLS, Layout, Slice, SliceSchedule, WindowGroup, WindowPlan
from rdvq.errors import ConfigError, InvalidHeaderError

ROPE_BASE = 100.0  # positions span tens of finest-grid cells per window
_INITIAL_ATTENTION_SCALE = 10.0
_MAX_ATTENTION_SCALE = 100.0


@dataclass
class TransformerConfig(DictConfig):
    """``layers`` x ``width`` with ``heads`` attention heads (width / heads divisible by 4, for the
    2D rotary embedding). ``tiles``: the slice pattern ``[rows, cols]`` of every branch in coding
    order, coarse to fine (None: RDVQ's, 4 + 8 + 16 slices for three scales). ``window``: side of
    the independent coding windows in tokens of the coarsest branch (0: the whole image).
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
        if self.window < 0:
            raise ConfigError(f"entropy_model.window must be >= 0 (0: whole image), got {self.window}")
        if self.tiles is not None:
            self.tiles = [list(t) for t in self.tiles]
            for tile in self.tiles:
                if len(tile) != 2 or min(tile) < 1 or tile[0] * tile[1] > MAX_TILE_CELLS:
                    raise ConfigError(
                        f"entropy_model.tiles entries are [rows, cols] with at most {MAX_TILE_CELLS} cells, got {tile}"
                    )


# ---------------------------------------------------------------------------------------- network
def rotate(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotary embedding: channel pairs (2i, 2i+1) of ``x`` (..., n, dh) turned by ``angles`` (n, dh/2)."""
    even, odd = x[..., 0::2], x[..., 1::2]
    cos, sin = angles.cos(), angles.sin()
    return torch.stack([even * cos - odd * sin, even * sin + odd * cos], -1).flatten(-2)


def rope_angles(coords: torch.Tensor, head_dim: int) -> torch.Tensor:
    """(n, 2) (row, col) coordinates -> (n, head_dim / 2) angles: half the pairs for rows, half for columns."""
    count = head_dim // 4
    freqs = ROPE_BASE ** (-torch.arange(count, dtype=torch.float32, device=coords.device) / count)
    return torch.cat([coords[:, :1] * freqs, coords[:, 1:] * freqs], -1)


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

    def project(self, x: torch.Tensor, angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, n, d) -> q, k, v (B, heads, n, head_dim); q and k unit vectors, rotated, q scaled."""
        b, n, _ = x.shape
        q, k, v = self.qkv(self.attention_norm(x)).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        scale = self.log_scale.clamp(max=math.log(_MAX_ATTENTION_SCALE)).exp()
        q = rotate(F.normalize(q, dim=-1), angles) * scale
        k = rotate(F.normalize(k, dim=-1), angles)
        return q, k, v

    def finish(self, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """Residual updates from the attention output (B, heads, n, head_dim), then the MLP."""
        x = x + self.proj(attended.transpose(1, 2).flatten(2))
        gate, up = self.gate_up(self.mlp_norm(x)).chunk(2, -1)
        return x + self.down(F.silu(gate) * up)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0)


class SliceTransformer(nn.Module):
    """The network: two token streams (content, query) through shared blocks."""

    def __init__(self, layers: int, width: int, heads: int) -> None:
        super().__init__()
        self.head_dim = width // heads
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.norm = nn.RMSNorm(width, eps=1e-5)
        for block in self.blocks:
            for linear in (block.qkv, block.proj, block.gate_up, block.down):
                nn.init.normal_(linear.weight, std=0.02)

    def parallel(
        self, content: torch.Tensor, queries: torch.Tensor, content_coords: torch.Tensor, query_coords: torch.Tensor,
        content_slices: torch.Tensor, query_slices: torch.Tensor,
    ) -> torch.Tensor:
        """Normalized query outputs (B, n, d) for content tokens (B, m, d) and query tokens (B, n, d)
        in one pass: content sees content of its own and earlier slices, queries see content of
        earlier slices and themselves."""
        m = content.shape[1]
        content_mask = content_slices.unsqueeze(0) <= content_slices.unsqueeze(1)
        query_mask = torch.cat(
            [content_slices.unsqueeze(0) < query_slices.unsqueeze(1), torch.eye(queries.shape[1], dtype=torch.bool, device=queries.device)], 1
        )
        angles = rope_angles(torch.cat([content_coords, query_coords]), self.head_dim)
        x = torch.cat([content, queries], 1)
        for block in self.blocks:
            q, k, v = block.project(x, angles)
            attended = [_attend(q[:, :, :m], k[:, :, :m], v[:, :, :m], content_mask)] if m else []
            attended.append(_attend(q[:, :, m:], k, v, query_mask))
            x = block.finish(x, torch.cat(attended, 2))
        return self.norm(x[:, m:])


class CodingState:
    """The incremental loop's memory for one window group: per layer the keys and values of every
    content token so far (``kv_cache``), or the content tokens themselves, recomputed each step."""

    def __init__(self, net: SliceTransformer, cached: bool) -> None:
        self.net, self.cached = net, cached
        self.keys: list[torch.Tensor | None] = [None] * len(net.blocks)
        self.values: list[torch.Tensor | None] = [None] * len(net.blocks)
        self.content: list[tuple[torch.Tensor, torch.Tensor, int]] = []  # uncached: (tokens, coords, slice id)

    def step(
        self, content: torch.Tensor | None, content_coords: torch.Tensor | None, content_slice: int,
        queries: torch.Tensor | None, query_coords: torch.Tensor | None, query_slice: int,
    ) -> torch.Tensor | None:
        """Add content tokens (of slice ``content_slice``), return the outputs of the query tokens."""
        if content is None and queries is None:
            return None
        if not self.cached:
            if content is not None:
                self.content.append((content, content_coords, content_slice))
            return None if queries is None else self._uncached(queries, query_coords, query_slice)
        parts = [p for p in (content, queries) if p is not None]
        coords = torch.cat([c for c in (content_coords, query_coords) if c is not None])
        x = torch.cat(parts, 1)
        m = 0 if content is None else content.shape[1]
        angles = rope_angles(coords, self.net.head_dim)
        for i, block in enumerate(self.net.blocks):
            q, k, v = block.project(x, angles)
            attended = []
            if m:
                keys = k[:, :, :m] if self.keys[i] is None else torch.cat([self.keys[i], k[:, :, :m]], 2)
                values = v[:, :, :m] if self.values[i] is None else torch.cat([self.values[i], v[:, :, :m]], 2)
                self.keys[i], self.values[i] = keys, values
                attended.append(_attend(q[:, :, :m], keys, values, None))
            if queries is not None:
                n = queries.shape[1]
                cached = 0 if self.keys[i] is None else self.keys[i].shape[2]
                mask = torch.cat(
                    [torch.ones(n, cached, dtype=torch.bool, device=x.device), torch.eye(n, dtype=torch.bool, device=x.device)], 1
                )
                own_k, own_v = k[:, :, m:], v[:, :, m:]
                keys = own_k if cached == 0 else torch.cat([self.keys[i], own_k], 2)
                values = own_v if cached == 0 else torch.cat([self.values[i], own_v], 2)
                attended.append(_attend(q[:, :, m:], keys, values, mask))
            x = block.finish(x, torch.cat(attended, 2))
        return None if queries is None else self.net.norm(x[:, m:])

    def _uncached(self, queries: torch.Tensor, query_coords: torch.Tensor, query_slice: int) -> torch.Tensor:
        device = queries.device
        content = torch.cat([queries[:, :0]] + [c for c, _, _ in self.content], 1)
        coords = torch.cat([query_coords[:0]] + [c for _, c, _ in self.content])
        slices = torch.cat([torch.zeros(0, dtype=torch.int64, device=device)]
                           + [torch.full((c.shape[1],), s, device=device) for c, _, s in self.content])
        return self.net.parallel(content, queries, coords, query_coords, slices, torch.full((queries.shape[1],), query_slice, device=device))


# ---------------------------------------------------------------------------------------- model
Chooser = Callable[[int, int, Slice, torch.Tensor], torch.Tensor]


class TransformerModel(IndexEntropyModel):
    kind = "transformer"
    model_id = 3
    config_class = TransformerConfig
    options = frozenset({"top_k", "slices", "completion", "seed", "rdo_lambda"})

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
        bits = [cross_entropy_bits(log_probs, b) for log_probs, b in zip(self.log_probs(branches), branches)]
        return RateEstimate(index_bits=bits, side_bits=[torch.zeros_like(b) for b in bits])

    def log_probs(self, branches: list[BranchBatch]) -> list[torch.Tensor]:
        """Teacher-forced log-probabilities (B, h, w, K) of every branch, one parallel pass per
        window size: what training minimizes (coding runs :meth:`run_schedule` instead)."""
        shapes = [tuple(b.indices.shape[-2:]) for b in branches]
        batch = branches[0].indices.shape[0]
        layout, groups = self.schedule.groups(shapes, max_tokens=None)
        vectors = [self._training_vectors(b) for b in branches]  # (B, h, w, D)
        out = [
            torch.zeros(batch, h, w, head.out_features, device=b.latents.device)
            for (h, w), head, b in zip(shapes, self.heads, branches)
        ]
        for group in groups:
            crops = [group.crop(v, layout.ratios[i]) for i, v in enumerate(vectors)]
            hidden = self._parallel(layout, group.plan, crops)
            for i, (h, w) in enumerate(group.plan.sizes):
                rows = group.plan.branch_rows(i).to(hidden.device)
                positions = group.plan.branch_positions(i).to(hidden.device)
                log_probs = F.log_softmax(self.heads[i](hidden[:, rows]).float(), -1)
                window = log_probs.new_zeros(log_probs.shape[0], h * w, log_probs.shape[-1])
                window[:, positions] = log_probs
                group.paste(out[i], window.view(-1, h, w, log_probs.shape[-1]), layout.ratios[i])
        return out

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
    def run_schedule(self, layout: Layout, groups: list[WindowGroup], codewords: list[torch.Tensor], choose: Chooser) -> list[torch.Tensor]:
        """The incremental loop both sides run. ``choose(slice id, group number, slice, logits)``
        turns a slice's logits (G, n, K) into its indices (G, n): the encoder codes its indices
        (or completes), the decoder decodes them (or completes). Returns the index maps (1, h, w)."""
        device = codewords[0].device
        maps = [torch.zeros(1, layout.coarse[0] * r, layout.coarse[1] * r, dtype=torch.int64) for r in layout.ratios]
        for number, group in enumerate(groups):
            plan, count = group.plan, len(group.origins)
            windows = [torch.zeros(count, h * w, dtype=torch.int64, device=device) for h, w in plan.sizes]
            state = CodingState(self.net, self.kv_cache)
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
                    windows[branch][:, positions] = choose(number_in_plan, number, spec, logits).to(device)
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
        largest = max(c.size for c in context.codebooks)
        top_k = options.top_k if options.top_k is not None and options.top_k < largest else None
        sent = self.num_slices if options.slices is None else options.slices
        if sent > self.num_slices:
            raise ConfigError(f"--slices {sent}: this model codes {self.num_slices} slices")
        if options.seed and options.completion != "sample":
            raise ConfigError("--seed applies only to --completion sample")
        engine = context.engine(top_k)
        encoder = IndexEncoder()
        complete = self._completion(options.completion, engine, options.seed)
        layout, groups = self.schedule.groups([tuple(b.indices.shape[-2:]) for b in branches])
        crops: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}

        def choose(slice_id: int, number: int, spec: Slice, logits: torch.Tensor) -> torch.Tensor:
            flat = logits.flatten(0, 1)
            if slice_id >= sent:
                return complete(flat).view(logits.shape[:2])
            if number not in crops:  # the encoder's indices and latents of this group's windows
                group = groups[number]
                crops[number] = (
                    [group.crop(b.indices, r).flatten(1) for b, r in zip(branches, layout.ratios)],
                    [group.crop(b.latents.permute(0, 2, 3, 1), r).flatten(1, 2) for b, r in zip(branches, layout.ratios)],
                )
            indices, latents = crops[number]
            positions = spec.positions.to(indices[spec.branch].device)
            if options.rdo_lambda is None:
                symbols = indices[spec.branch][:, positions].reshape(-1)
                engine.encode_logits(encoder, symbols, flat)
                return symbols.view(logits.shape[:2])
            rows = latents[spec.branch][:, positions].flatten(0, 1)
            chosen, start = [], 0
            for table in engine.logit_tables(flat):
                part = select_indices(rows[start : start + table.num_positions], context.codewords[spec.branch], table, options.rdo_lambda)
                encoder.encode(part, table)
                chosen.append(part.cpu())
                start += table.num_positions
            return torch.cat(chosen).view(logits.shape[:2])

        maps = self.run_schedule(layout, groups, context.codewords, choose)
        parameters = (top_k or 0, sent, COMPLETIONS.index(options.completion), options.seed)
        return CompressedIndices(streams=[encoder.finish()], parameters=parameters, indices=maps)

    def decompress(
        self, streams: list[bytes], parameters: tuple[int, ...], shapes: list[tuple[int, int]], context: CodingContext
    ) -> list[torch.Tensor]:
        self.check_header(streams, parameters, num_streams=1, num_parameters=4)
        top_k, sent, completion, seed = parameters
        largest = max(c.size for c in context.codebooks)
        if top_k >= largest:
            raise InvalidHeaderError(f"tail floor top_k={top_k} is not below the codebook size {largest}")
        if not 1 <= sent <= self.num_slices:
            raise InvalidHeaderError(f"slice count {sent} outside 1..{self.num_slices}")
        if completion >= len(COMPLETIONS):
            raise InvalidHeaderError(f"completion mode {completion} is not one of 0 (argmax), 1 (sample)")
        if seed > MAX_SEED:
            raise InvalidHeaderError(f"completion seed {seed} exceeds {MAX_SEED}")
        engine = context.engine(top_k or None)
        decoder = IndexDecoder(streams[0])
        complete = self._completion(COMPLETIONS[completion], engine, seed)

        def choose(slice_id: int, number: int, spec: Slice, logits: torch.Tensor) -> torch.Tensor:
            flat = logits.flatten(0, 1)
            symbols = complete(flat) if slice_id >= sent else engine.decode_logits(decoder, flat)
            return symbols.view(logits.shape[:2])

        layout, groups = self.schedule.groups(list(shapes))
        return self.run_schedule(layout, groups, context.codewords, choose)
