"""Where a compact-table (bounded tail floor) index coding goes: the kernel's tables alone, then
the whole encode and decode, on the large-codebook case of ``entropy_coding.py`` (medians of 21).
``--root`` runs another checkout's rdvq (a ``git worktree`` of an earlier commit) for same-hour
before/after pairs:

    python benchmarks/compact_coding.py --size 65536 --width 2048 [--root /tmp/before]
"""

from __future__ import annotations

import argparse
import statistics
import sys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=65536)
    parser.add_argument("--width", type=int, default=2048, help="search width (0: exact tail floor)")
    parser.add_argument("--top-k", type=int, default=256)
    parser.add_argument("--positions", type=int, default=1536)
    parser.add_argument("--root", help="checkout whose rdvq to import (default: this one)")
    args = parser.parse_args()
    if args.root:
        sys.path.insert(0, args.root)
    import torch

    from entropy_coding import calibrated_gaussians, timed  # noqa: E402  (beside this script)
    from rdvq.coding import IndexDecoder, IndexEncoder, ProbabilityEngine

    torch.set_num_threads(2)
    codebook, params, symbols = calibrated_gaussians(args.size, args.positions)
    engine = ProbabilityEngine("numba", top_k=args.top_k, search_width=args.width or None)

    def encode() -> bytes:
        encoder = IndexEncoder()
        engine.encode_gaussian(encoder, symbols, params, codebook)
        return encoder.finish()

    def median_ms(fn) -> float:
        return 1e3 * statistics.median(timed(fn)[1] for _ in range(21))

    data = encode()
    assert torch.equal(engine.decode_gaussian(IndexDecoder(data), params, codebook), symbols)
    tables = median_ms(lambda: list(engine.gaussian_tables(params, codebook)))
    enc = median_ms(encode)
    dec = median_ms(lambda: engine.decode_gaussian(IndexDecoder(data), params, codebook))
    print(f"K={args.size} top-k {args.top_k} width {args.width}: tables {tables:.1f} ms, encode {enc:.1f} ms "
          f"(coder path {enc - tables:.1f}), decode {dec:.1f} ms")


if __name__ == "__main__":
    main()
