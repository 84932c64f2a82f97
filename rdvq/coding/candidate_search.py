"""Candidate search for the bounded tail floor of large codebooks: the clusters, and the searched
table's specification (torch reference).

With the tail floor (:mod:`rdvq.coding.probability`, step 3) the ``top_k`` smallest keys of all K
symbols are the candidates. Finding them exactly costs time that grows with K, however the search
is pruned. A *search width* ``W`` bounds that cost. It is part of the format, because the tables
change:

1. *Clusters.* Starting from all codewords in index order, every part holding more than
   :data:`LEAF_SIZE` codewords is split in two: its codewords are sorted (stably) along its
   widest dimension (largest max - min, the first such), and the first ``n // 2`` form the first
   half. The leaves, in that order, are the clusters. Each has the bounding box of its integer
   codewords.
2. *Order.* Each position ranks the clusters by the exact integer (weighted) squared distance from
   its fixed-point mean to the cluster's box, ties by cluster number. The box distance never
   exceeds the distance to a member, so near clusters come first.
3. *Visited.* The shortest prefix of that ranking that holds at least ``W`` codewords.
4. *Table.* Buckets are taken relative to the nearest *visited* codeword, otherwise as in step 1
   of the probability engine. The candidates are the ``top_k`` smallest keys (bucket, index) among
   the visited codewords. Their frequencies follow step 4. Every other symbol, visited or not,
   has frequency 1.

Encoder and decoder run the same search on the same integers, so their tables agree bit for bit.
A likely codeword that the search misses costs rate (it is coded through the floor), never
correctness. With ``W >= K`` every codeword is visited and the table is exactly the exact tail
floor's.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from rdvq.coding.format import LEAF_SIZE  # most codewords per cluster: chosen by benchmarks/candidate_search.py
from rdvq.coding.probability import (
    NUM_BUCKETS,
    TOTAL,
    FixedPointCodebook,
    GaussianParameters,
    _frequencies_of,
    relative_distances,
)
from rdvq.coding.tables import FrequencyTable
from rdvq.errors import ConfigError


def check_search_width(top_k: int | None, search_width: int | None) -> None:
    """The candidate search needs the tail floor and at least ``top_k`` codewords to choose from."""
    if search_width is None:
        return
    if top_k is None:
        raise ConfigError("search_width needs the bounded tail floor (top_k)")
    if search_width < top_k:
        raise ConfigError(f"search_width ({search_width}) must be at least top_k ({top_k})")




class CodebookClusters:
    """A fixed-point codebook's clusters (step 1): the codewords reordered cluster by cluster
    (``order``: original index of each; ``offsets``: each cluster's span), their values as one
    (D, size) block per cluster (``blocks``, flat) and squared norms in that order, and each
    cluster's bounding box (``low``, ``high``, (C, D)). Any ``cluster_size`` works for the exact
    pruned search; the format's is :data:`LEAF_SIZE`."""

    def __init__(self, values: np.ndarray, cluster_size: int) -> None:
        values = np.asarray(values, dtype=np.int64)
        groups = [np.arange(values.shape[0])]
        while max(len(g) for g in groups) > cluster_size:
            split = []
            for group in groups:
                if len(group) <= cluster_size:
                    split.append(group)
                    continue
                members = values[group]
                widest = int(np.argmax(members.max(0) - members.min(0)))
                order = group[np.argsort(members[:, widest], kind="stable")]
                split += [order[: len(order) // 2], order[len(order) // 2 :]]
            groups = split
        self.order = np.concatenate(groups).astype(np.int64)
        self.offsets = np.cumsum([0] + [len(g) for g in groups]).astype(np.int64)
        ordered = values[self.order].astype(np.float64)
        # Cluster by cluster, each cluster's values dimension-major: one contiguous block per
        # cluster, so visiting one reads one span of memory. float32 holds these integers
        # (|value| <= 2^CODEBOOK_BITS) exactly, in half the memory of float64.
        self.blocks = np.concatenate(
            [ordered[a:b].T.ravel() for a, b in zip(self.offsets[:-1], self.offsets[1:])]
        ).astype(np.float32)
        self.esq = (ordered**2).sum(-1)
        self.low = np.stack([values[g].min(0) for g in groups]).astype(np.float64)
        self.high = np.stack([values[g].max(0) for g in groups]).astype(np.float64)
        self.smallest = int(min(len(g) for g in groups))

    @classmethod
    def of(cls, codebook: FixedPointCodebook, cluster_size: int = LEAF_SIZE) -> "CodebookClusters":
        return cls(codebook.values.cpu().numpy(), cluster_size)

    @property
    def size(self) -> int:
        return self.order.shape[0]

    @property
    def num_clusters(self) -> int:
        return self.low.shape[0]

    @functools.cached_property
    def _kernel_arrays(self) -> tuple:
        low, high = np.ascontiguousarray(self.low.T), np.ascontiguousarray(self.high.T)
        # Runs of GROUP consecutive clusters (neighbours in the tree, so near each other) with the
        # boxes that hold theirs: the kernel ranks clusters group by group, nearest group first.
        group = 1 << max(0, round(np.log2(max(self.num_clusters, 1)) / 2))
        starts = np.arange(0, self.num_clusters, group)
        group_low = np.ascontiguousarray(np.minimum.reduceat(low, starts, axis=1))
        group_high = np.ascontiguousarray(np.maximum.reduceat(high, starts, axis=1))
        return self.order, self.offsets, self.blocks, self.esq, low, high, group_low, group_high, group

    def arrays(self) -> tuple:
        """What the CPU kernel reads: boxes transposed to (D, C), so bounds vectorize over clusters,
        and the boxes of groups of about sqrt(C) consecutive clusters (D, G) with the group size."""
        return self._kernel_arrays


def box_distances(params: GaussianParameters, clusters: CodebookClusters) -> torch.Tensor:
    """(N, C) float64 exact integer (weighted) squared distances from each mean to each cluster's
    box (integers below 2^53, as the distances to codewords are)."""
    mu = params.mean.to(torch.float64).unsqueeze(1)
    low = torch.from_numpy(clusters.low).to(mu.device)
    high = torch.from_numpy(clusters.high).to(mu.device)
    outside = torch.maximum(torch.maximum(low - mu, mu - high), torch.zeros((), dtype=torch.float64, device=mu.device))
    squared = outside.square()
    if params.dim_weights is not None:
        squared = squared * params.dim_weights.to(torch.float64).unsqueeze(1)
    return squared.sum(-1)


def visited_mask(params: GaussianParameters, clusters: CodebookClusters, width: int) -> torch.Tensor:
    """(N, K) bool, in the codebook's own index order: the codewords each position visits (steps 2, 3)."""
    device = params.mean.device
    ranking = torch.sort(box_distances(params, clusters), dim=-1, stable=True).indices  # (N, C)
    sizes = torch.from_numpy(np.diff(clusters.offsets)).to(device)
    held = sizes[ranking].cumsum(-1)
    needed = (held < width).sum(-1, keepdim=True) + 1  # clusters in the shortest prefix holding >= width
    rank_of = torch.empty_like(ranking).scatter_(-1, ranking, torch.arange(clusters.num_clusters, device=device).expand_as(ranking))
    cluster_of = torch.repeat_interleave(torch.arange(clusters.num_clusters, device=device), sizes)  # reordered codewords
    cluster_of_index = torch.empty_like(cluster_of).scatter_(0, torch.from_numpy(clusters.order).to(device), cluster_of)
    return rank_of[:, cluster_of_index] < needed


def searched_table(
    params: GaussianParameters, codebook: FixedPointCodebook, clusters: CodebookClusters, keep: int, width: int
) -> FrequencyTable:
    """The compact table of step 4 (the specification; it computes every distance)."""
    size = codebook.size
    visited = visited_mask(params, clusters, width)
    distances = relative_distances(params, codebook)
    nearest = distances.masked_fill(~visited, float("inf")).min(-1, keepdim=True).values
    gap = (distances - nearest).to(torch.float32).mul_(params.scale.unsqueeze(-1))
    buckets = gap.clamp_(min=0, max=NUM_BUCKETS - 1).floor_().to(torch.int64)
    keys = buckets * size + torch.arange(size, device=buckets.device)
    keys = keys.masked_fill(~visited, NUM_BUCKETS * size)
    candidates = keys.topk(keep, dim=-1, largest=False, sorted=False).indices.sort(-1).values
    chosen = buckets.gather(-1, candidates)
    histogram = torch.zeros(chosen.shape[0], NUM_BUCKETS, dtype=torch.int64, device=chosen.device)
    cumulative = histogram.scatter_add_(-1, chosen, torch.ones_like(chosen)).cumsum(-1)
    freqs = _frequencies_of(chosen, cumulative, TOTAL - size)
    return FrequencyTable(freqs=freqs.cpu(), alphabet_size=size, candidates=candidates.cpu())
