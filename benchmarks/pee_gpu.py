"""GPU benchmark of the probability engine: the fused Triton kernel against the torch reference.

Kodak-sized inputs (a 768x512 image gives N = 1536 index positions at stride 16 and 6144 at
stride 8), D = 32, codebooks of K = 1024, 16384 and 65536 codewords (the large ones with and
without the bounded tail floor), for the Gaussian entry point in "table" mode (what the decoder
needs) and "interval" mode (what the encoder needs). Times are medians of CUDA-event timings after
warm-up; the reference runs the way ProbabilityEngine runs it, in row chunks of at most
``--chunk-cells`` table cells (0: all rows at once). Peak memory is the increase of
``torch.cuda.max_memory_allocated`` over what was allocated before the case (inputs excluded).
Every case also checks that both engines give identical integers.

    python benchmarks/pee_gpu.py
    python benchmarks/pee_gpu.py --positions 1536 --sizes 1024 16384 --repeats 50

Without a CUDA GPU it says so and exits with status 0.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys

import torch

from rdvq.coding import probability as P

MODES = ("table", "interval")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, nargs="+", default=[1536, 6144], help="rows N (Kodak at /16 and /8)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 16384, 65536], help="codebook sizes K")
    parser.add_argument("--dim", type=int, default=32, help="embedding dimension D")
    parser.add_argument("--top-k", type=int, default=64, help="tail floor used for K >= --top-k-from (0: never)")
    parser.add_argument("--top-k-from", type=int, default=16384, help="smallest K also measured with the tail floor")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--diagonal", action="store_true", help="per-dimension sigmas instead of one per position")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per case (median reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs first (includes compilation)")
    parser.add_argument("--chunk-cells", type=int, default=1 << 22, help="reference row chunks, as ProbabilityEngine")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def make_inputs(n: int, k_size: int, dim: int, diagonal: bool, seed: int, device: str = "cuda"):
    """Codewords on the unit sphere, means near random codewords (the coded symbols), sigmas
    log-uniform in [0.03, 1]; everything on ``device``."""
    g = torch.Generator(device=device).manual_seed(seed)
    codewords = torch.nn.functional.normalize(torch.randn(k_size, dim, device=device, generator=g), dim=-1)
    codebook = P.FixedPointCodebook.from_codewords(codewords)
    symbols = torch.randint(0, k_size, (n,), device=device, generator=g)
    mean = codewords[symbols] + 0.05 * torch.randn(n, dim, device=device, generator=g)
    shape = (n, dim) if diagonal else (n,)
    sigma = torch.exp(torch.empty(shape, device=device).uniform_(-3.5, 0.0, generator=g))
    return P.GaussianParameters.from_float(mean, sigma, codebook), codebook, symbols


def reference(params, codebook, top_k, mode, symbols, chunk_cells):
    """The torch engine, chunked like ProbabilityEngine, results left on the GPU."""
    n = params.num_positions
    step = n if chunk_cells <= 0 else max(1, chunk_cells // codebook.size)
    out = []
    for start in range(0, n, step):
        chunk = params[start : start + step]
        buckets = P.gaussian_buckets(chunk, codebook)
        if mode == "table":
            out.append(P.frequency_table(buckets, top_k))
        else:
            out.append(P.symbol_intervals(P.frequencies(buckets, top_k), symbols[start : start + step]))
    return out


def same_result(mode, ref_chunks, kernel_out) -> bool:
    if mode == "table":
        freqs = torch.cat([t.freqs for t in ref_chunks])
        if ref_chunks[0].candidates is None:
            return kernel_out.candidates is None and torch.equal(freqs, kernel_out.freqs)
        candidates = torch.cat([t.candidates for t in ref_chunks])
        return torch.equal(candidates, kernel_out.candidates) and torch.equal(freqs, kernel_out.freqs)
    start = torch.cat([s for s, _ in ref_chunks])
    freq = torch.cat([f for _, f in ref_chunks])
    return torch.equal(start, kernel_out[0]) and torch.equal(freq, kernel_out[1])


def measure(fn, repeats: int, warmup: int) -> tuple[float, float]:
    """(median milliseconds, peak extra MiB) of ``fn`` on the current CUDA device."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times), peak


def run_case(args, kernel, n, k_size, top_k, mode) -> dict:
    params, codebook, symbols = make_inputs(n, k_size, args.dim, args.diagonal, args.seed)
    prepared = kernel.KernelCodebook.from_fixed_point(codebook, "cuda")
    row = {"N": n, "K": k_size, "top_k": top_k or "-", "mode": mode}
    try:
        ref_out = reference(params, codebook, top_k, mode, symbols, args.chunk_cells)
        row["torch_ms"], row["torch_mib"] = measure(
            lambda: reference(params, codebook, top_k, mode, symbols, args.chunk_cells), args.repeats, args.warmup
        )
    except torch.cuda.OutOfMemoryError:
        ref_out, row["torch_ms"], row["torch_mib"] = None, None, None
    torch.cuda.empty_cache()
    kernel_out = kernel.gaussian_tables(params, prepared, top_k, mode, symbols)
    row["triton_ms"], row["triton_mib"] = measure(
        lambda: kernel.gaussian_tables(params, prepared, top_k, mode, symbols), args.repeats, args.warmup
    )
    row["exact"] = "n/a (torch OOM)" if ref_out is None else ("yes" if same_result(mode, ref_out, kernel_out) else "NO")
    del ref_out, kernel_out
    torch.cuda.empty_cache()
    return row


def fmt(value, digits=2) -> str:
    return "OOM" if value is None else f"{value:.{digits}f}"


def markdown(rows: list[dict]) -> str:
    lines = [
        "| N | K | top_k | mode | torch ms | triton ms | speed-up | torch peak MiB | triton peak MiB | exact |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        speedup = None if r["torch_ms"] is None else r["torch_ms"] / r["triton_ms"]
        lines.append(
            f"| {r['N']} | {r['K']} | {r['top_k']} | {r['mode']} | {fmt(r['torch_ms'])} | {fmt(r['triton_ms'])} | "
            f"{'-' if speedup is None else f'{speedup:.1f}x'} | {fmt(r['torch_mib'], 1)} | {fmt(r['triton_mib'], 1)} | "
            f"{r['exact']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        print("No CUDA GPU available: benchmarks/pee_gpu.py times the Triton kernel on a GPU, so there is nothing to measure here.")
        return 0
    try:
        from triton_kernels import probability as kernel
    except ImportError as exc:
        print(f"error: the Triton kernel does not import ({exc}); install triton to run this benchmark", file=sys.stderr)
        return 1
    rows = []
    for n in args.positions:
        for k_size in args.sizes:
            top_ks = [None] + ([args.top_k] if args.top_k and k_size >= args.top_k_from else [])
            for top_k in top_ks:
                for mode in args.modes:
                    rows.append(run_case(args, kernel, n, k_size, top_k, mode))
                    print(f"done: N={n} K={k_size} top_k={top_k} {mode}", file=sys.stderr, flush=True)
    import triton

    print(f"# Probability engine on {torch.cuda.get_device_name()}: D={args.dim}, "
          f"{'diagonal' if args.diagonal else 'isotropic'} Gaussians, median of {args.repeats} runs")
    print()
    print(markdown(rows))
    print()
    print(f"torch {torch.__version__}, triton {triton.__version__}; reference chunks of {args.chunk_cells} cells")
    print("command: python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(sys.argv[1:] if argv is None else argv)]))
    return 0 if all(r["exact"] != "NO" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
