"""Why the candidate search's clusters hold 64 codewords: rate and kernel time of the searched tail
floor against the exact one, for several cluster sizes and search widths, on the calibrated
large-codebook model of ``entropy_coding.py``.

The cluster size is part of the format (``rdvq.coding.candidate_search.LEAF_SIZE``); this script
builds clusters of other sizes only to compare them. Rate is the exact code length of the true
indices under each table (bits per index); time is the CPU kernel alone, one thread.

    python benchmarks/candidate_search.py --json benchmarks/results/candidate_search.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from entropy_coding import calibrated_gaussians
from rdvq.coding import cpu_kernel
from rdvq.coding import probability as P
from rdvq.coding.candidate_search import LEAF_SIZE, CodebookClusters, searched_table
from rdvq.coding.engine import coding_block


def _bits(tables, symbols: torch.Tensor) -> float:
    start, bits = 0, 0.0
    for table in tables:
        bits += float(P.ideal_bits(table.full(), symbols[start : start + table.num_positions]).sum())
        start += table.num_positions
    return bits


def _blocks(params: P.GaussianParameters, size: int):
    step = coding_block(size)
    return [params[slice(start, start + step)] for start in range(0, params.num_positions, step)]


def case(size: int, positions: int, top_k: int, cluster_sizes: list[int], widths: list[int], repeats: int) -> list[dict]:
    codebook, params, symbols = calibrated_gaussians(size, positions)
    blocks = _blocks(params, size)
    exact = _bits((P.frequency_table(P.gaussian_buckets(b, codebook), top_k) for b in blocks), symbols)
    arrays = (params.mean.double().numpy(), params.scale.numpy(), None)
    rows = []
    for cluster_size in cluster_sizes:
        clusters = CodebookClusters.of(codebook, cluster_size)
        for width in widths:
            bits = _bits((searched_table(b, codebook, clusters, top_k, width) for b in blocks), symbols)
            cpu_kernel.gaussian_compact_searched(*arrays, clusters, top_k, width)  # compiled, caches warm
            seconds = []
            for _ in range(repeats):
                start = time.perf_counter()
                cpu_kernel.gaussian_compact_searched(*arrays, clusters, top_k, width)
                seconds.append(time.perf_counter() - start)
            rows.append(dict(K=size, cluster_size=cluster_size, width=width, bits_per_index=bits / positions,
                             vs_exact=bits / exact - 1, kernel_us_per_row=1e6 * statistics.median(seconds) / positions))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=768)
    parser.add_argument("--top-k", type=int, default=256)
    parser.add_argument("--cluster-sizes", type=int, nargs="+", default=[32, LEAF_SIZE, 256])
    parser.add_argument("--widths", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [r for size in (16384, 65536)
            for r in case(size, args.positions, args.top_k, args.cluster_sizes, args.widths, args.repeats)]
    print(f"Command: `python benchmarks/candidate_search.py{' --json ' + args.json if args.json else ''}`\n")
    print(f"top-k {args.top_k}, {args.positions} positions; rate against the exact tail floor; CPU kernel, one thread.\n")
    print("| K | cluster size | search width | bits / index | vs exact | kernel µs / row |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['K']} | {r['cluster_size']} | {r['width']} | {r['bits_per_index']:.3f} | "
              f"{100 * r['vs_exact']:+.1f} % | {r['kernel_us_per_row']:.1f} |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
