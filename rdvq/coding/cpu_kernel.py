"""The probability engine on the CPU: each row finished while it is in cache (numba), bit-identical to the reference.

The torch reference (:mod:`rdvq.coding.probability`) is the specification. Written as whole-tensor
operations it makes about twenty passes over (N, K) tensors plus an (N, 2048) histogram, and an
int64 division per cell, so a Kodak image's 1536 x 1024 table costs tens of milliseconds. Here each
row is finished while it is in cache: buckets, the bucket histogram, weights and frequencies, with
the reference's arithmetic step for step, so every frequency is the reference's integer. Each of
these is its own short loop without branches where it can be, so that LLVM vectorizes it; per-bucket
work runs over the range of buckets in use, per-symbol work over the row. The row loops release the GIL and
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
clusters with bounding boxes (:class:`~rdvq.coding.candidate_search.CodebookClusters`); the
distance from the mean to a box is an exact integer lower bound of its codewords' distances, and
buckets are monotone in the distance.
A row visits clusters nearest-box first until it holds ``keep`` symbols, which gives the bucket of
the k-th key (or the second-to-last bucket: beyond it every symbol is in the clamped last bucket,
where keys are ordered by index alone); it then visits every other cluster whose box lies within
that bucket. Unless that sweep finds a nearer codeword (then the row finishes exhaustively), every
unvisited symbol lies beyond the k-th key, so the result is exactly the full computation's; the
clustering only decides how much work a row takes.

With a search width (:func:`gaussian_compact_searched`) the row visits the nearest boxes only until
it holds that many codewords, and takes the candidates from them: the searched table that
:mod:`rdvq.coding.candidate_search` specifies, at a cost that barely depends on K.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba as nb
import numpy as np
import torch

from rdvq.coding.candidate_search import CodebookClusters
from rdvq.coding.probability import NUM_BUCKETS, TOTAL, WEIGHTS

_WEIGHTS = WEIGHTS.numpy().astype(np.int64)
_LAST = NUM_BUCKETS - 1
_BUCKET_BITS = NUM_BUCKETS.bit_length() - 1  # a (bucket, index) key packs as index << _BUCKET_BITS | bucket
assert 1 << _BUCKET_BITS == NUM_BUCKETS
_CLAMP = np.float32(NUM_BUCKETS - 1)
_PER_NAT = np.float32(64.0)


# ---------------------------------------------------------------------------------------- buckets
@nb.njit(cache=True, nogil=True)
def _bucket(distance, nearest, scale):
    return int(min(np.float32(distance - nearest) * scale, _CLAMP))


@nb.njit(cache=True, nogil=True)
def _better(a, b, largest):
    return a > b if largest else a < b


@nb.njit(cache=True, nogil=True)
def _row_extreme(row, largest):
    """The largest (or smallest) value of a row of finite floats, over four running extremes (a
    single one is a chain of dependent compares; the extreme is the same in any order)."""
    n = row.shape[0]
    m0 = m1 = m2 = m3 = row[0]
    k = 0
    while k + 4 <= n:
        a, b, c, d = row[k], row[k + 1], row[k + 2], row[k + 3]
        m0 = a if _better(a, m0, largest) else m0
        m1 = b if _better(b, m1, largest) else m1
        m2 = c if _better(c, m2, largest) else m2
        m3 = d if _better(d, m3, largest) else m3
        k += 4
    for j in range(k, n):
        m0 = row[j] if _better(row[j], m0, largest) else m0
    m0 = m1 if _better(m1, m0, largest) else m0
    m2 = m3 if _better(m3, m2, largest) else m2
    return m2 if _better(m2, m0, largest) else m0


@nb.njit(cache=True, nogil=True)
def _row_buckets(row, scale, gaussian, q):
    """Buckets of a row into ``q``: of exact relative distances with their float32 ``scale``
    (``gaussian``), else of logits. A plain pass, so that it vectorizes; the histogram is counted
    separately (:func:`_count`)."""
    if gaussian:
        nearest = _row_extreme(row, False)
        for k in range(row.shape[0]):
            q[k] = _bucket(row[k], nearest, scale)
    else:
        peak = _row_extreme(row, True)
        for k in range(row.shape[0]):
            q[k] = int(min((peak - row[k]) * _PER_NAT, _CLAMP))  # the gap is >= 0: truncation is floor


@nb.njit(cache=True, nogil=True)
def _top(q, n):
    """The highest bucket of q[:n] below the last one (-1 if none), which bounds the histogram scans."""
    top = -1
    for k in range(n):
        top = max(top, q[k] if q[k] < _LAST else -1)
    return top


@nb.njit(cache=True, nogil=True)
def _count(q, first, last, hist):
    """Adds the buckets q[first:last] to the histogram ``hist``."""
    for k in range(first, last):
        hist[q[k]] += 1


@nb.njit(cache=True, nogil=True)
def _clear(hist, top):
    """Zeroes a histogram that is empty above ``top`` but for the last bucket (cheaper than all of it)."""
    for b in range(top + 1):
        hist[b] = 0
    hist[_LAST] = 0


@nb.njit(cache=True, nogil=True)
def _radix_sort(keys, n, low_bit, high_bit, spare, counts):
    """Sorts the non-negative keys[:n] by their bits [low_bit, high_bit), which must tell them
    apart: least significant digit first, 8 bits per pass, each pass a stable counting sort.
    ``spare`` holds n keys, ``counts`` 256. (numba's np.sort, a quicksort, took 7 us for the 256
    candidates of a searched row as they come from the clusters: 8x this.)"""
    source, target = keys, spare
    passes = 0
    for shift in range(low_bit, high_bit, 8):
        counts[:256] = 0
        for j in range(n):
            counts[(source[j] >> shift) & 255] += 1
        total = 0
        for digit in range(256):
            total, counts[digit] = total + counts[digit], total
        for j in range(n):
            digit = (source[j] >> shift) & 255
            target[counts[digit]] = source[j]
            counts[digit] += 1
        source, target = target, source
        passes += 1
    if passes % 2:  # the sorted keys are in ``spare``
        keys[:n] = spare[:n]


@nb.njit(cache=True, nogil=True)
def _index_bits(size):
    """Bits that hold every index below ``size``."""
    bits = 1
    while (1 << bits) < size:
        bits += 1
    return bits


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
    """Histogram of q[:n] (all of ``hist`` rewritten), and the highest bucket in use below the last one."""
    hist[:] = 0
    _count(q, 0, n, hist)
    return _top(q, n)


@nb.njit(cache=True, nogil=True)
def _floor_div(x, z, inverse):
    """floor(x / z) for 0 <= x < 2^54, z >= 1: a float64 estimate, corrected exactly."""
    quotient = np.int64(np.float64(x) * inverse)
    rest = x - quotient * z
    return quotient - (rest < 0) + (rest >= z)  # branch-free, so loops of it vectorize


@nb.njit(cache=True, nogil=True)
def _share_rule(hist, top, free, share):
    """For the modelled symbols counted in ``hist``: ``share[b] = floor(free W[b] / Z)`` for every
    bucket up to ``top`` and the last (one division per bucket, not per symbol), and the remainder's
    bonus rule: (bucket t, count n) such that every symbol below bucket t, and the first n of bucket t
    in index order, get one more unit. The loops have no branches and vectorize: sharp predictions
    spread a row over hundreds of buckets."""
    total = hist[_LAST] * _WEIGHTS[_LAST]
    for b in range(top + 1):
        total += hist[b] * _WEIGHTS[b]
    inverse = 1.0 / np.float64(total)
    share[_LAST] = _floor_div(free * _WEIGHTS[_LAST], total, inverse)
    for b in range(top + 1):
        share[b] = _floor_div(free * _WEIGHTS[b], total, inverse)
    given = hist[_LAST] * share[_LAST]
    for b in range(top + 1):
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
def _emit_interval(i, q, top, free, before, hist, share, symbols, starts, freqs):
    """Row ``i``'s symbol interval from its buckets ``q``.

    ``before`` and ``hist`` come in zeroed and go out zeroed. A symbol's frequency is ``1 +
    share[b]``, plus one below the bonus threshold ``t`` and for the first ``need`` symbols at it;
    the symbol's start is therefore ``s + sum share[b_k] + #(b_k < t) + min(#(b_k == t), need)``
    over the symbols ``k < s``. That sum is read off a histogram of those symbols (``before``,
    bucket by bucket) when the buckets in use span fewer than ``s``, else summed symbol by symbol:
    either costs the smaller of the two."""
    symbol = symbols[i]
    by_bucket = top + 1 < symbol
    if by_bucket:
        _count(q, 0, symbol, before)
        _count(q, symbol, q.shape[0], hist)
        for b in range(top + 1):
            hist[b] += before[b]
        hist[_LAST] += before[_LAST]
    else:
        _count(q, 0, q.shape[0], hist)
    threshold, need = _share_rule(hist, top, free, share)
    if by_bucket:
        total = before[_LAST] * share[_LAST]
        below = before[_LAST] if threshold > _LAST else 0
        for b in range(top + 1):
            total += before[b] * share[b]
            below += before[b] * (b < threshold)
        ties = before[threshold] if threshold <= _LAST else 0
        _clear(before, top)
    else:
        total = 0
        below = 0
        ties = 0
        for k in range(symbol):
            b = q[k]
            total += share[b]
            below += b < threshold
            ties += b == threshold
    b = q[symbol]
    starts[i] = symbol + total + below + min(ties, need)
    freqs[i] = 1 + share[b] + (b < threshold) + (b == threshold and ties < need)
    _clear(hist, top)


@nb.njit(cache=True, nogil=True)
def _emit_coder_row(i, q, top, free, hist, share, weight, rows):
    """Row ``i``'s coder weights (frequency - 1) from its buckets ``q``; ``hist`` comes in and goes
    out zeroed. Every symbol of bucket ``b`` weighs ``share[b]``, plus one below the bonus threshold:
    a per-bucket float64 table read by a plain gather; then the first ``need`` symbols at the
    threshold (in index order) get their unit in one early-exit scan."""
    _count(q, 0, q.shape[0], hist)
    threshold, need = _share_rule(hist, top, free, share)
    for b in range(top + 1):
        weight[b] = share[b] + (b < threshold)
    weight[_LAST] = share[_LAST] + (_LAST < threshold)
    out = rows[i]
    for k in range(q.shape[0]):
        out[k] = weight[q[k]]
    k = 0
    while need > 0 and k < q.shape[0]:
        if q[k] == threshold:
            out[k] += 1.0
            need -= 1
        k += 1
    _clear(hist, top)


@nb.njit(cache=True, nogil=True)
def _emit_compact(i, q, top, keep, free, hist, share, candidates, cq, freq, out_candidates, out_freqs):
    """The ``keep`` smallest keys of the full row ``q`` (its histogram ``hist``, empty above ``top``
    but for the last bucket) and their frequencies, into row ``i``."""
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
    hist = np.zeros((2, NUM_BUCKETS), np.int64)
    share = np.empty(NUM_BUCKETS, np.int64)
    weight = np.empty(NUM_BUCKETS, np.float64)
    for i in range(first, last):
        _row_buckets(scores[i], scales[i] if gaussian else _PER_NAT, gaussian, q)
        top = _top(q, size)
        if intervals:
            _emit_interval(i, q, top, free, hist[0], hist[1], share, symbols, starts, freqs)
        else:
            _emit_coder_row(i, q, top, free, hist[0], share, weight, rows)


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
        _row_buckets(scores[i], scales[i] if gaussian else _PER_NAT, gaussian, q)
        top = _histogram(q, size, hist)
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


def coder_rows(scores: np.ndarray, scales: np.ndarray | None, out: np.ndarray | None = None) -> np.ndarray:
    """(N, K) float64 coder weights (frequency - 1), all K symbols modelled (inputs as :func:`intervals`),
    into ``out`` when given."""
    rows = np.empty(scores.shape, np.float64) if out is None else out
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
@nb.njit(cache=True, nogil=True)
def _visit(mu, w, diagonal, block, esq, start, acc, at):
    """Exact relative distances of one cluster's codewords (its (D, count) ``block``, the first
    at reordered position ``start``) into acc[at:]. (Written on slices: with plain offsets LLVM
    cannot rule out aliasing and does not vectorize, 4x slower.)"""
    dim = mu.shape[0]
    count = block.shape[0] // dim
    out = acc[at : at + count]
    if diagonal:
        out[:] = 0.0
        for d in range(dim):
            wd = w[d]
            a = -2.0 * wd * mu[d]
            row = block[d * count : (d + 1) * count]
            for m in range(count):
                e = np.float64(row[m])
                out[m] += wd * (e * e) + a * e
    else:
        out[:] = esq[start : start + count]
        for d in range(dim):
            a = -2.0 * mu[d]
            row = block[d * count : (d + 1) * count]
            for m in range(count):
                out[m] += a * np.float64(row[m])


@nb.njit(cache=True, nogil=True)
def _visit_cluster(c, mu, w, diagonal, clusters, acc, indices, visited, nearest):
    order, offsets, blocks, esq = clusters[0], clusters[1], clusters[2], clusters[3]
    start, stop = offsets[c], offsets[c + 1]
    dim = mu.shape[0]
    _visit(mu, w, diagonal, blocks[start * dim : stop * dim], esq, start, acc, visited)
    end = visited + stop - start
    indices[visited:end] = order[start:stop]
    return end, min(nearest, acc[visited:end].min())


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
def _row_constant(mu, w):
    constant = 0.0
    for d in range(mu.shape[0]):
        constant += w[d] * mu[d] * mu[d]
    return constant


@nb.njit(cache=True, nogil=True)
def _bounds_of(mu, w, constant, low, high, first, last, bounds):
    """bounds[first:last]: exact lower bounds of the relative distances inside boxes first..last-1
    of ``low``/``high`` (D, n): the distance from ``mu`` to the box, less the row ``constant``.
    Integer-valued float64 sums below 2^53: exact in any order, so the loops run over boxes
    innermost, where they vectorize."""
    for c in range(first, last):
        bounds[c] = -constant
    for d in range(mu.shape[0]):
        m, wd = mu[d], w[d]
        for c in range(first, last):
            below, above = low[d, c] - m, m - high[d, c]
            outside = below if below > 0.0 else (above if above > 0.0 else 0.0)
            bounds[c] += wd * (outside * outside)


@nb.njit(cache=True, nogil=True)
def _box_bounds(mu, w, clusters, bounds, seen):
    """Every cluster's bound (:func:`_bounds_of`) into ``bounds``; ``seen`` cleared. Returns the count."""
    low, high = clusters[4], clusters[5]
    num_clusters = low.shape[1]
    _bounds_of(mu, w, _row_constant(mu, w), low, high, 0, num_clusters, bounds)
    seen[:num_clusters] = False
    return num_clusters


@nb.njit(cache=True, nogil=True)
def _key_less(bounds, a, b):
    """Cluster ``a`` ranks before ``b``: smaller bound, ties by the lower number."""
    return bounds[a] < bounds[b] or (bounds[a] == bounds[b] and a < b)


@nb.njit(cache=True, nogil=True)
def _insert_ranked(bounds, c, ranked, size, count):
    """Insert cluster ``c`` into ranked[:size] (sorted by rank, at most ``count`` long, the last
    dropped when full) if it ranks before the last; returns the new size."""
    if size == count and not _key_less(bounds, c, ranked[count - 1]):
        return size
    j = size if size < count else count - 1
    while j > 0 and _key_less(bounds, c, ranked[j - 1]):
        ranked[j] = ranked[j - 1]
        j -= 1
    ranked[j] = c
    return min(size + 1, count)


@nb.njit(cache=True, nogil=True)
def _first_clusters(mu, w, clusters, count, ranked, bounds, group_bounds, group_order):
    """The ``count`` first clusters of the ranking (box bound, ties by number), in order, into
    ranked[:count], without bounding every cluster. Groups of consecutive clusters are taken
    nearest group box first, each of their clusters bounded and inserted into the sorted list. A
    group's box holds its clusters' boxes, so its bound is at most theirs: once it exceeds the
    bound of the count-th cluster in hand, neither it nor any later group can place a cluster."""
    low, high, group_low, group_high, group = clusters[4], clusters[5], clusters[6], clusters[7], clusters[8]
    num_clusters, num_groups = low.shape[1], group_low.shape[1]
    constant = _row_constant(mu, w)
    _bounds_of(mu, w, constant, group_low, group_high, 0, num_groups, group_bounds)
    for g in range(num_groups):  # groups by rank: an insertion sort of about sqrt(C) entries
        _insert_ranked(group_bounds, g, group_order, g, num_groups)
    size = 0
    for r in range(num_groups):
        g = group_order[r]
        if size == count and group_bounds[g] > bounds[ranked[count - 1]]:
            break
        first, last = g * group, min((g + 1) * group, num_clusters)
        _bounds_of(mu, w, constant, low, high, first, last, bounds)
        for c in range(first, last):
            size = _insert_ranked(bounds, c, ranked, size, count)


@nb.njit(cache=True, nogil=True)
def _nearest_unseen(bounds, seen):
    """The unseen cluster with the smallest bound (ties: the lower number), or -1."""
    best = -1
    for c in range(bounds.shape[0]):
        if not seen[c] and (best < 0 or bounds[c] < bounds[best]):
            best = c
    return best


@nb.njit(cache=True, nogil=True)
def _pruned_row(mu, w, diagonal, scale, keep, index_bits, clusters, free, scratch, out_candidates, out_freqs, i):
    acc, q, hist, share, indices, bounds, seen, cq, freq, chosen, tied, _, _ = scratch
    num_clusters = _box_bounds(mu, w, clusters, bounds, seen)
    # 1. Visit clusters nearest box first until the next box's bucket lies beyond the k-th key found
    #    (then nothing unvisited can matter: exact), or until `keep` symbols are in hand.
    visited, nearest, limit = 0, np.inf, _LAST - 1
    exact = False
    while True:
        best = _nearest_unseen(bounds, seen)
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
    # Candidates: visited symbols below the k-th key (ties at its bucket go by index) or, when fewer
    # than `keep` lie below the last bucket, all of those plus the lowest indices of the last bucket.
    kth, count, ties = _split_at_kth(acc, visited, nearest, scale, keep, indices, q, hist, chosen, cq, tied, False)
    if kth < _LAST:
        _radix_sort(tied, ties, 0, index_bits, indices, share)  # `indices` and `share` are free here
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
    _emit_candidates(i, chosen, cq, keep, index_bits, free, hist, share, freq, tied, out_candidates, out_freqs)


@nb.njit(cache=True, nogil=True)
def _split_at_kth(acc, visited, nearest, scale, keep, indices, q, hist, chosen, cq, tied, tie_last):
    """Bucket the ``visited`` distances in ``acc``; find the bucket ``kth`` of the ``keep``-th key
    (at most the last bucket); put the symbols below it into ``chosen`` (with their buckets in
    ``cq``) and those at it into ``tied`` (at the last bucket only if ``tie_last``). Returns
    (kth, how many chosen, how many tied)."""
    for m in range(visited):
        q[m] = _bucket(acc[m], nearest, scale)
    kth, _ = _threshold(hist, _histogram(q, visited, hist), keep)
    kth = min(kth, _LAST)
    tie_at_kth = tie_last or kth < _LAST
    count = 0
    ties = 0
    for m in range(visited):  # without branches (which half goes where is unpredictable): every
        b = q[m]  # symbol is written to both, and only the counts decide what stays
        chosen[count] = indices[m]  # count < keep: fewer than keep keys lie below the k-th bucket
        cq[count] = b
        count += b < kth
        tied[ties] = indices[m]
        ties += (b == kth) & tie_at_kth
    return kth, count, ties


@nb.njit(cache=True, nogil=True)
def _emit_candidates(i, chosen, cq, keep, index_bits, free, hist, share, freq, spare, out_candidates, out_freqs):
    """Row ``i`` of the compact table from its ``keep`` candidates ``chosen`` (any order, indices
    below ``2^index_bits``) and their buckets ``cq``: the candidates in index order and their
    frequencies. ``spare`` holds ``keep`` keys of scratch."""
    for j in range(keep):  # sort (index, bucket) pairs by index, packed into one integer each
        freq[j] = (chosen[j] << _BUCKET_BITS) | cq[j]
    _radix_sort(freq, keep, _BUCKET_BITS, _BUCKET_BITS + index_bits, spare, share)  # share: free until _frequencies
    for j in range(keep):
        out_candidates[i, j] = freq[j] >> _BUCKET_BITS
        cq[j] = freq[j] & _LAST
    _frequencies(cq, keep, free, hist, share, freq)
    for j in range(keep):
        out_freqs[i, j] = freq[j]


@nb.njit(cache=True, nogil=True)
def _searched_row(
    mu, w, diagonal, scale, keep, width, smallest, index_bits, clusters, free, scratch, out_candidates, out_freqs, i
):
    """Row ``i`` of the searched table (:mod:`rdvq.coding.candidate_search`): visit clusters
    nearest box first until ``width`` codewords are in hand, then the ``keep`` smallest keys among
    them, ties at the k-th bucket by index."""
    acc, q, hist, share, indices, bounds, seen, cq, freq, chosen, tied, group_bounds, group_order = scratch
    # The shortest prefix of the ranking holding `width` codewords has at most this many clusters.
    most = min(clusters[4].shape[1], (width + smallest - 1) // smallest)
    ranked = tied[:most]  # `tied` is free until the visits are over
    _first_clusters(mu, w, clusters, most, ranked, bounds, group_bounds, group_order)
    visited, nearest = 0, np.inf
    for j in range(most):
        if visited >= width:
            break
        visited, nearest = _visit_cluster(ranked[j], mu, w, diagonal, clusters, acc, indices, visited, nearest)
    kth, count, ties = _split_at_kth(acc, visited, nearest, scale, keep, indices, q, hist, chosen, cq, tied, True)
    need = keep - count
    if ties > need:  # the lowest indices first; `indices` and `share` are free here
        _radix_sort(tied, ties, 0, index_bits, indices, share)
    for t in range(need):
        chosen[count + t] = tied[t]
        cq[count + t] = kth
    _emit_candidates(i, chosen, cq, keep, index_bits, free, hist, share, freq, tied, out_candidates, out_freqs)


@nb.njit(cache=True, nogil=True)
def _clustered_rows(
    first, last, means, weights, diagonal, scales, keep, width, smallest, size, clusters, out_candidates, out_freqs
):
    """Rows [first, last) by the exact pruned search (``width`` 0) or the candidate search."""
    free = TOTAL - size
    index_bits = _index_bits(size)
    scratch = (
        np.empty(size, np.float64),
        np.empty(size, np.int32),
        np.empty(NUM_BUCKETS, np.int64),
        np.empty(NUM_BUCKETS, np.int64),
        np.empty(size, np.int64),
        np.empty(clusters[4].shape[1], np.float64),
        np.empty(clusters[4].shape[1], np.bool_),
        np.empty(keep, np.int32),
        np.empty(keep, np.int64),
        np.empty(keep, np.int64),
        np.empty(size, np.int64),
        np.empty(clusters[6].shape[1], np.float64),
        np.empty(clusters[6].shape[1], np.int64),
    )
    for i in range(first, last):
        w = weights[i if diagonal else 0]
        if width:
            _searched_row(
                means[i], w, diagonal, scales[i], keep, width, smallest, index_bits, clusters, free, scratch,
                out_candidates, out_freqs, i,
            )
        else:
            _pruned_row(
                means[i], w, diagonal, scales[i], keep, index_bits, clusters, free, scratch, out_candidates, out_freqs, i
            )


def gaussian_compact_pruned(
    means: np.ndarray, scales: np.ndarray, dim_weights: np.ndarray | None, codebook: CodebookClusters, keep: int
) -> tuple[np.ndarray, np.ndarray]:
    """The bounded tail floor of per-position Gaussians without computing every distance.

    ``means`` (N, D) and ``dim_weights`` (N, D, or None: isotropic) are the fixed-point integers as
    float64, ``scales`` (N,) float32."""
    return _clustered(means, scales, dim_weights, codebook, keep, 0)


def gaussian_compact_searched(
    means: np.ndarray, scales: np.ndarray, dim_weights: np.ndarray | None, codebook: CodebookClusters, keep: int,
    width: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The searched table of :mod:`rdvq.coding.candidate_search` (``keep <= width``), inputs as
    :func:`gaussian_compact_pruned`."""
    return _clustered(means, scales, dim_weights, codebook, keep, width)


def _clustered(means, scales, dim_weights, codebook: CodebookClusters, keep: int, width: int):
    n = means.shape[0]
    diagonal = dim_weights is not None
    weights = dim_weights if diagonal else np.ones((1, means.shape[1]))
    candidates, freqs = np.empty((n, keep), np.int64), np.empty((n, keep), np.int64)
    _in_parallel(
        _clustered_rows, n, means, weights, diagonal, scales, keep, width, codebook.smallest, codebook.size,
        codebook.arrays(), candidates, freqs,
    )
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
    clusters = CodebookClusters(np.arange(32).reshape(8, 4), 2)
    for weights in (None, np.ones((2, 4))):
        gaussian_compact_pruned(np.zeros((2, 4)), scales, weights, clusters, 2)
        gaussian_compact_searched(np.zeros((2, 4)), scales, weights, clusters, 2, 3)


if __name__ == "__main__":
    compile_all()
