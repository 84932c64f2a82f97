"""The probability engine on the CPU: one fused pass per row (numba), bit-identical to the reference.

The torch reference (:mod:`rdvq.coding.probability`) is the specification. Written as whole-tensor
operations it makes about twenty passes over (N, K) tensors plus an (N, 2048) histogram, and an
int64 division per cell, so a Kodak image's 1536 x 1024 table costs tens of milliseconds. Here each
row is finished while it is in cache: buckets, the bucket histogram, weights and frequencies, with
the reference's arithmetic step for step, so every frequency is the reference's integer. The row loops release the GIL and
run on as many threads as torch uses.

Why the integers cannot differ:

* Gaussian scores are the reference's own exact integer distances (float64 sums of integer
  products below 2^53, exact in any summation order; :func:`~rdvq.coding.probability.mean_bits`).
* The bucket is the same IEEE sequence: the gap (max logit - logit, or the exact integer distance
  gap rounded to float32), one float32 multiply, clamp, floor. numba compiles without fast-math,
  so nothing is reassociated or contracted.
* Everything after the bucket is integer arithmetic. The one division per cell,
  ``floor(free * w / Z)``, is computed from a float64 estimate corrected by exact integer
  comparisons (the estimate is within one of the quotient, since ``free * w < 2^54``).

What comes out is what the range coder consumes, so no (N, K) integer table is built: for encoding,
each symbol's interval (start, frequency); for decoding, rows of coder weights (frequency - 1 as
float64, see :mod:`rdvq.coding.range_coder`); for the bounded tail floor, the compact table (the
candidates in index order and their frequencies).

Large codebooks with the tail floor (:func:`gaussian_compact_pruned`): the ``keep`` smallest keys
``(bucket, index)`` are found without computing all K distances. The codebook is split into
clusters with bounding boxes (:class:`ClusteredCodebook`); the distance from the mean to a box is
an exact integer lower bound of its codewords' distances, and buckets are monotone in the distance.
A row visits clusters nearest-box first until it holds ``keep`` symbols, which gives the bucket of
the k-th key (or the second-to-last bucket: beyond it every symbol is in the clamped last bucket,
where keys are ordered by index alone); it then visits every other cluster whose box lies within
that bucket. Unless that sweep finds a nearer codeword (then the row finishes exhaustively), every
unvisited symbol lies beyond the k-th key, so the result is exactly the full computation's; the
clustering only decides how much work a row takes.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba as nb
import numpy as np
import torch

from rdvq.coding.probability import NUM_BUCKETS, TOTAL, WEIGHTS

_WEIGHTS = WEIGHTS.numpy().astype(np.int64)
_LAST = NUM_BUCKETS - 1
_CLAMP = np.float32(NUM_BUCKETS - 1)
_PER_NAT = np.float32(64.0)


# ---------------------------------------------------------------------------------------- buckets
@nb.njit(cache=True, nogil=True)
def _logit_buckets(row, q, hist):
    """Buckets of a row of logits into ``q``, their histogram, and the highest bucket in use below
    the last one (-1 if none): the histogram scans below skip the empty range above it."""
    peak = row[0]
    for k in range(1, row.shape[0]):
        if row[k] > peak:
            peak = row[k]
    for b in range(hist.shape[0]):
        hist[b] = 0
    top = -1
    for k in range(row.shape[0]):
        bucket = int(min((peak - row[k]) * _PER_NAT, _CLAMP))  # the gap is >= 0: truncation is floor
        q[k] = bucket
        hist[bucket] += 1
        if bucket < _LAST and bucket > top:
            top = bucket
    return top


@nb.njit(cache=True, nogil=True)
def _bucket(distance, nearest, scale):
    return int(min(np.float32(distance - nearest) * scale, _CLAMP))


@nb.njit(cache=True, nogil=True)
def _distance_buckets(row, scale, q, hist):
    """As :func:`_logit_buckets`, for a row of exact relative distances."""
    nearest = row[0]
    for k in range(1, row.shape[0]):
        if row[k] < nearest:
            nearest = row[k]
    for b in range(hist.shape[0]):
        hist[b] = 0
    top = -1
    for k in range(row.shape[0]):
        bucket = _bucket(row[k], nearest, scale)
        q[k] = bucket
        hist[bucket] += 1
        if bucket < _LAST and bucket > top:
            top = bucket
    return top


# ------------------------------------------------------------------------------------ frequencies
@nb.njit(cache=True, nogil=True)
def _threshold(hist, top, count):
    """(first bucket whose cumulative count reaches ``count``, count below that bucket); the
    histogram is empty above ``top`` except for the last bucket."""
    below = 0
    for b in range(top + 1):
        if below + hist[b] >= count:
            return b, below
        below += hist[b]
    if below + hist[_LAST] >= count:
        return _LAST, below
    return hist.shape[0], below + hist[_LAST]


@nb.njit(cache=True, nogil=True)
def _histogram(q, n, hist):
    """Histogram of q[:n], and the highest bucket in use below the last one."""
    for b in range(hist.shape[0]):
        hist[b] = 0
    top = -1
    for j in range(n):
        hist[q[j]] += 1
        if q[j] < _LAST and q[j] > top:
            top = q[j]
    return top


@nb.njit(cache=True, nogil=True)
def _floor_div(x, z, inverse):
    """floor(x / z) for 0 <= x < 2^54, z >= 1: a float64 estimate, corrected exactly."""
    quotient = np.int64(np.float64(x) * inverse)
    rest = x - quotient * z
    if rest < 0:
        quotient -= 1
    elif rest >= z:
        quotient += 1
    return quotient


@nb.njit(cache=True, nogil=True)
def _share_rule(hist, top, free, share):
    """For the modelled symbols counted in ``hist``: ``share[b] = floor(free W[b] / Z)`` for every
    bucket in use (one division per bucket, not per symbol), and the remainder's bonus rule:
    (bucket t, count n) such that every symbol below bucket t, and the first n of bucket t in index
    order, get one more unit."""
    total = hist[_LAST] * _WEIGHTS[_LAST]
    for b in range(top + 1):
        total += hist[b] * _WEIGHTS[b]
    inverse = 1.0 / np.float64(total)
    share[_LAST] = _floor_div(free * _WEIGHTS[_LAST], total, inverse)
    given = hist[_LAST] * share[_LAST]
    for b in range(top + 1):
        if hist[b]:
            share[b] = _floor_div(free * _WEIGHTS[b], total, inverse)
            given += hist[b] * share[b]
    threshold, below = _threshold(hist, top, free - given)
    return threshold, free - given - below


@nb.njit(cache=True, nogil=True)
def _frequencies(q, n, free, hist, share, out):
    """out[j] = the frequency of the modelled buckets q[:n] (in index order); ``hist`` is
    overwritten with their histogram."""
    top = _histogram(q, n, hist)
    threshold, need = _share_rule(hist, top, free, share)
    ties = 0
    for j in range(n):
        b = q[j]
        f = 1 + share[b]
        if b < threshold:
            f += 1
        elif b == threshold:
            if ties < need:
                f += 1
            ties += 1
        out[j] = f


@nb.njit(cache=True, nogil=True)
def _emit_full(i, q, top, free, hist, share, symbols, starts, freqs, rows, intervals):
    """Row ``i``'s symbol interval (``intervals``) or its coder weights, from its buckets ``q`` and
    their histogram ``hist`` (empty above ``top`` but for the last bucket)."""
    threshold, need = _share_rule(hist, top, free, share)
    size = q.shape[0]
    stop = symbols[i] + 1 if intervals else size
    start = 0
    ties = 0
    for k in range(stop):
        b = q[k]
        f = 1 + share[b]
        if b < threshold:
            f += 1
        elif b == threshold:
            if ties < need:
                f += 1
            ties += 1
        if intervals:
            if k < stop - 1:
                start += f
            else:
                starts[i] = start
                freqs[i] = f
        else:
            rows[i, k] = f - 1


@nb.njit(cache=True, nogil=True)
def _emit_compact(i, q, top, keep, free, hist, share, candidates, cq, freq, out_candidates, out_freqs):
    """The ``keep`` smallest keys of the full row ``q`` (histogram ``hist``, as for
    :func:`_emit_full`) and their frequencies, into row ``i``."""
    threshold, below = _threshold(hist, top, keep)
    need = keep - below
    j = 0
    for k in range(q.shape[0]):
        b = q[k]
        if b < threshold or (b == threshold and need > 0):
            if b == threshold:
                need -= 1
            candidates[j] = k
            cq[j] = b
            j += 1
    _frequencies(cq, keep, free, hist, share, freq)  # the remainder's keys lie among the candidates
    for j in range(keep):
        out_candidates[i, j] = candidates[j]
        out_freqs[i, j] = freq[j]


# ------------------------------------------------------------------------------- row loops
@nb.njit(cache=True, nogil=True)
def _full_rows(first, last, scores, scales, gaussian, symbols, starts, freqs, rows, intervals):
    size = scores.shape[1]
    free = TOTAL - size
    q = np.empty(size, np.int32)
    hist = np.empty(NUM_BUCKETS, np.int64)
    share = np.empty(NUM_BUCKETS, np.int64)
    for i in range(first, last):
        if gaussian:
            top = _distance_buckets(scores[i], scales[i], q, hist)
        else:
            top = _logit_buckets(scores[i], q, hist)
        _emit_full(i, q, top, free, hist, share, symbols, starts, freqs, rows, intervals)


@nb.njit(cache=True, nogil=True)
def _compact_rows(first, last, scores, scales, gaussian, keep, out_candidates, out_freqs):
    size = scores.shape[1]
    free = TOTAL - size
    q = np.empty(size, np.int32)
    hist = np.empty(NUM_BUCKETS, np.int64)
    share = np.empty(NUM_BUCKETS, np.int64)
    candidates = np.empty(keep, np.int64)
    cq = np.empty(keep, np.int32)
    freq = np.empty(keep, np.int64)
    for i in range(first, last):
        if gaussian:
            top = _distance_buckets(scores[i], scales[i], q, hist)
        else:
            top = _logit_buckets(scores[i], q, hist)
        _emit_compact(i, q, top, keep, free, hist, share, candidates, cq, freq, out_candidates, out_freqs)


_POOL: list[ThreadPoolExecutor] = []


def _in_parallel(rows_of, count: int, *args) -> None:
    """Run ``rows_of(first, last, *args)`` over [0, count) split across torch's thread count (the
    row loops release the GIL, so plain threads run them side by side)."""
    threads = max(1, min(torch.get_num_threads(), count // 64))
    if threads == 1:
        rows_of(0, count, *args)
        return
    if not _POOL or _POOL[0]._max_workers < threads:
        _POOL[:] = [ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rdvq-cpu-kernel")]
    bounds = [count * t // threads for t in range(threads + 1)]
    futures = [_POOL[0].submit(rows_of, a, b, *args) for a, b in zip(bounds[:-1], bounds[1:])]
    for future in futures:
        future.result()


_NO_SCALES = np.empty(0, np.float32)
_NO_SYMBOLS = np.empty(0, np.int64)
_NO_ROWS = np.empty((0, 0), np.float64)


def intervals(scores: np.ndarray, scales: np.ndarray | None, symbols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start, frequency) of each row's symbol, all K symbols modelled.

    ``scores``: float32 logits (``scales`` None), or the reference's float64 relative distances
    with one float32 ``scale`` per row (a Gaussian)."""
    n = scores.shape[0]
    starts, freqs = np.empty(n, np.int64), np.empty(n, np.int64)
    gaussian = scales is not None
    _in_parallel(_full_rows, n, scores, scales if gaussian else _NO_SCALES, gaussian, symbols, starts, freqs, _NO_ROWS, True)
    return starts, freqs


def coder_rows(scores: np.ndarray, scales: np.ndarray | None) -> np.ndarray:
    """(N, K) float64 coder weights (frequency - 1), all K symbols modelled (inputs as :func:`intervals`)."""
    rows = np.empty(scores.shape, np.float64)
    gaussian = scales is not None
    _in_parallel(
        _full_rows, scores.shape[0], scores, scales if gaussian else _NO_SCALES, gaussian,
        _NO_SYMBOLS, _NO_SYMBOLS, _NO_SYMBOLS, rows, False,
    )
    return rows


def compact(scores: np.ndarray, scales: np.ndarray | None, keep: int) -> tuple[np.ndarray, np.ndarray]:
    """(candidates (N, keep) ascending, their frequencies): the bounded tail floor from full rows."""
    n = scores.shape[0]
    candidates, freqs = np.empty((n, keep), np.int64), np.empty((n, keep), np.int64)
    gaussian = scales is not None
    _in_parallel(_compact_rows, n, scores, scales if gaussian else _NO_SCALES, gaussian, keep, candidates, freqs)
    return candidates, freqs


# --------------------------------------------------------------------- pruned tail-floor search
class ClusteredCodebook:
    """A fixed-point codebook reordered into clusters for the pruned search: values transposed
    (D, K) in cluster order, squared norms, each cluster's span and bounding box, and the original
    index of every reordered codeword.

    Clusters are the leaves of median splits along the widest dimension (deterministic,
    O(K log K)); any clustering gives the same tables, a tight one just visits fewer codewords."""

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
        self.e_t = np.ascontiguousarray(ordered.T)
        self.esq = (ordered**2).sum(-1)
        self.low = np.stack([values[g].min(0) for g in groups]).astype(np.float64)
        self.high = np.stack([values[g].max(0) for g in groups]).astype(np.float64)

    @property
    def size(self) -> int:
        return self.order.shape[0]

    def arrays(self) -> tuple:
        return self.order, self.offsets, self.e_t, self.esq, self.low, self.high


@nb.njit(cache=True, nogil=True)
def _visit(mu, w, diagonal, e_t, esq, start, stop, acc, at):
    """Exact relative distances of the reordered codewords [start, stop) into acc[at:]."""
    dim = e_t.shape[0]
    count = stop - start
    if diagonal:
        for m in range(count):
            acc[at + m] = 0.0
        for d in range(dim):
            wd = w[d]
            a = -2.0 * wd * mu[d]
            for m in range(count):
                e = e_t[d, start + m]
                acc[at + m] += wd * (e * e) + a * e
    else:
        for m in range(count):
            acc[at + m] = esq[start + m]
        for d in range(dim):
            a = -2.0 * mu[d]
            for m in range(count):
                acc[at + m] += a * e_t[d, start + m]


@nb.njit(cache=True, nogil=True)
def _visit_cluster(c, mu, w, diagonal, clusters, acc, indices, visited, nearest):
    order, offsets, e_t, esq, _, _ = clusters
    start, stop = offsets[c], offsets[c + 1]
    _visit(mu, w, diagonal, e_t, esq, start, stop, acc, visited)
    for m in range(stop - start):
        indices[visited + m] = order[start + m]
        if acc[visited + m] < nearest:
            nearest = acc[visited + m]
    return visited + stop - start, nearest


@nb.njit(cache=True, nogil=True)
def _kth_limit(acc, visited, nearest, scale, keep, q, hist):
    """The bucket of the k-th smallest key among the visited symbols, capped at the last exact
    bucket (fewer than ``keep`` visited, or the k-th clamped: the rest is in the last bucket)."""
    if visited < keep:
        return _LAST - 1
    for m in range(visited):
        q[m] = _bucket(acc[m], nearest, scale)
    kth, _ = _threshold(hist, _histogram(q, visited, hist), keep)
    return min(kth, _LAST - 1)


@nb.njit(cache=True, nogil=True)
def _pruned_row(mu, w, diagonal, scale, keep, size, clusters, free, scratch, out_candidates, out_freqs, i):
    _, _, _, _, low, high = clusters
    acc, q, hist, share, indices, bounds, seen, cq, freq, chosen, tied = scratch
    num_clusters, dim = low.shape
    # Exact lower bounds of each cluster's (relative) distances: the distance to its bounding box.
    constant = 0.0
    for d in range(dim):
        constant += w[d] * mu[d] * mu[d]
    for c in range(num_clusters):
        bound = 0.0
        for d in range(dim):
            outside = max(low[c, d] - mu[d], 0.0, mu[d] - high[c, d])
            bound += w[d] * outside * outside
        bounds[c] = bound - constant
        seen[c] = False
    # 1. Visit clusters nearest box first until the next box's bucket lies beyond the k-th key found
    #    (then nothing unvisited can matter: exact), or until `keep` symbols are in hand.
    visited, nearest, limit = 0, np.inf, _LAST - 1
    exact = False
    while True:
        best = -1
        for c in range(num_clusters):
            if not seen[c] and (best < 0 or bounds[c] < bounds[best]):
                best = c
        if best < 0 or (visited > 0 and _bucket(bounds[best], nearest, scale) > limit):
            exact = True
            break
        if visited >= keep:
            break
        seen[best] = True
        visited, nearest = _visit_cluster(best, mu, w, diagonal, clusters, acc, indices, visited, nearest)
        limit = _kth_limit(acc, visited, nearest, scale, keep, q, hist)
    # 2. Sweep every cluster whose box could still hold a key up to that limit. If the sweep finds a
    #    nearer codeword, buckets move and the limit may be too low: finish exhaustively.
    if not exact:
        first_nearest = nearest
        for c in range(num_clusters):
            if not seen[c] and _bucket(bounds[c], first_nearest, scale) <= limit:
                seen[c] = True
                visited, nearest = _visit_cluster(c, mu, w, diagonal, clusters, acc, indices, visited, nearest)
        if nearest < first_nearest:
            for c in range(num_clusters):
                if not seen[c]:
                    visited, nearest = _visit_cluster(c, mu, w, diagonal, clusters, acc, indices, visited, nearest)
    for m in range(visited):
        q[m] = _bucket(acc[m], nearest, scale)
    # Candidates: visited symbols below the k-th key (ties at its bucket go by index) or, when fewer
    # than `keep` lie below the last bucket, all of those plus the lowest indices of the last bucket.
    kth, _ = _threshold(hist, _histogram(q, visited, hist), keep)
    kth = min(kth, _LAST)
    count = 0
    ties = 0
    for m in range(visited):
        if q[m] < kth:
            chosen[count] = indices[m]
            cq[count] = q[m]
            count += 1
        elif q[m] == kth and kth < _LAST:
            tied[ties] = indices[m]
            ties += 1
    if kth < _LAST:
        tied[:ties].sort()
        for t in range(keep - count):
            chosen[count + t] = tied[t]
            cq[count + t] = kth
    else:
        below_last = np.sort(chosen[:count])
        k = 0
        p = 0
        for t in range(keep - count):
            while p < count and below_last[p] == k:
                p += 1
                k += 1
            chosen[count + t] = k
            cq[count + t] = _LAST
            k += 1
    by_index = np.argsort(chosen[:keep])
    for j in range(keep):
        out_candidates[i, j] = chosen[by_index[j]]
        freq[j] = cq[by_index[j]]
    for j in range(keep):
        cq[j] = freq[j]
    _frequencies(cq, keep, free, hist, share, freq)
    for j in range(keep):
        out_freqs[i, j] = freq[j]


@nb.njit(cache=True, nogil=True)
def _pruned_rows(first, last, means, weights, diagonal, scales, keep, size, clusters, out_candidates, out_freqs):
    free = TOTAL - size
    scratch = (
        np.empty(size, np.float64),
        np.empty(size, np.int32),
        np.empty(NUM_BUCKETS, np.int64),
        np.empty(NUM_BUCKETS, np.int64),
        np.empty(size, np.int64),
        np.empty(clusters[4].shape[0], np.float64),
        np.empty(clusters[4].shape[0], np.bool_),
        np.empty(keep, np.int32),
        np.empty(keep, np.int64),
        np.empty(keep, np.int64),
        np.empty(size, np.int64),
    )
    for i in range(first, last):
        _pruned_row(
            means[i], weights[i if diagonal else 0], diagonal, scales[i], keep, size, clusters, free, scratch,
            out_candidates, out_freqs, i,
        )


def gaussian_compact_pruned(
    means: np.ndarray, scales: np.ndarray, dim_weights: np.ndarray | None, codebook: ClusteredCodebook, keep: int
) -> tuple[np.ndarray, np.ndarray]:
    """The bounded tail floor of per-position Gaussians without computing every distance.

    ``means`` (N, D) and ``dim_weights`` (N, D, or None: isotropic) are the fixed-point integers as
    float64, ``scales`` (N,) float32."""
    n = means.shape[0]
    diagonal = dim_weights is not None
    weights = dim_weights if diagonal else np.ones((1, means.shape[1]))
    clusters = codebook.arrays()
    candidates, freqs = np.empty((n, keep), np.int64), np.empty((n, keep), np.int64)
    _in_parallel(_pruned_rows, n, means, weights, diagonal, scales, keep, codebook.size, clusters, candidates, freqs)
    return candidates, freqs


def compile_all() -> None:
    """Compile every entry point (or load it from numba's cache beside this file) on tiny inputs:
    ``make install`` runs this once, so no command pays for compilation later."""
    logits = np.zeros((2, 8), np.float32)
    distances = np.zeros((2, 8), np.float64)
    scales = np.ones(2, np.float32)
    symbols = np.zeros(2, np.int64)
    for scores, row_scales in ((logits, None), (distances, scales)):
        intervals(scores, row_scales, symbols)
        coder_rows(scores, row_scales)
        compact(scores, row_scales, 2)
    clusters = ClusteredCodebook(np.arange(32).reshape(8, 4), 2)
    for weights in (None, np.ones((2, 4))):
        gaussian_compact_pruned(np.zeros((2, 4)), scales, weights, clusters, 2)


if __name__ == "__main__":
    compile_all()
