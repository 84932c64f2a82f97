"""Entropy-coding benchmark behind BENCHMARKS.md.

1. Rate on Kodak: uniform, static-table and HyperVQ index coding on the *same* trained tokenizer;
   estimated and real (file-size) bpp, coding overhead, and saving relative to uniform coding.
2. Speed on Kodak: encode/decode time of the entropy stage and of the whole codec, side by side
   with CompressAI's bmshj2018-hyperprior (quality 3) on the same CPU and images, as ratios.
3. Large codebooks: time and peak memory of the probability engine + range coder at K = 1024,
   16384 and 65536 for Kodak-sized index maps, with and without the bounded tail floor.
4. Coders: constriction's range coder at 24-bit precision (what rdvq uses) against CompressAI's
   16-bit rANS on the same distributions.

Checkpoints come from experiments/bench_*.yaml (see BENCHMARKS.md for the commands). Run from the
repository root:

    python benchmarks/entropy_coding.py --json benchmarks/results/entropy_coding.json
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch
from tqdm import tqdm

warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated")

from compressai.zoo import bmshj2018_hyperprior  # noqa: E402

from rdvq.codec import ImageCodec, VQCodec, container  # noqa: E402
from rdvq.coding import IndexDecoder, IndexEncoder, ProbabilityEngine  # noqa: E402
from rdvq.coding import probability as P  # noqa: E402
from rdvq.entropy import UniformConfig, UniformModel  # noqa: E402
from rdvq.evaluation import evaluate  # noqa: E402
from rdvq.image_io import find_images, read_image  # noqa: E402
from rdvq.tokenizer.quantizer import perplexity  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


# ------------------------------------------------------------------------------------ 1 + 2: Kodak
def codecs(args) -> dict[str, ImageCodec]:
    hyper = ImageCodec.from_checkpoint(args.hypervq)
    static = ImageCodec.from_checkpoint(args.static)
    tokenizer = ImageCodec.from_checkpoint(args.hypervq).latent.tokenizer  # same frozen tokenizer
    uniform = ImageCodec(VQCodec(tokenizer, UniformModel(), UniformConfig()))
    for name, codec in (("static", static), ("hypervq", hyper)):
        if not all(
            torch.equal(a, b) for a, b in zip(codec.latent.tokenizer.state_dict().values(), tokenizer.state_dict().values())
            if a.is_floating_point() and not a.isnan().any()
        ):
            raise SystemExit(f"{name} checkpoint was trained on another tokenizer than {args.hypervq}")
    return {"uniform": uniform, "static": static, "hypervq": hyper}


def entropy_stage(codec: ImageCodec, image: torch.Tensor) -> dict:
    """Times of the entropy stage alone (encoder: pack; decoder: unpack) and the streams' share of the file."""
    analysis = codec.analyze(image)
    encoded, t_pack = timed(codec.pack, analysis, *image.shape[-2:])
    decoded, t_unpack = timed(codec.unpack, encoded.data)
    assert all(torch.equal(a, b) for a, b in zip(decoded.symbols, encoded.symbols)), "round trip failed"
    streams = sum(len(s) for s in container.unpack(encoded.data).streams)
    return dict(enc_entropy=t_pack, dec_entropy=t_unpack, stream_bytes=streams, symbols=encoded.symbols)


def kodak_rows(args) -> dict:
    images = [(p.stem, read_image(p)) for p in find_images(args.kodak)]
    results: dict = {}
    usage = None
    for name, codec in codecs(args).items():
        evaluation = evaluate(codec, images, estimate=True, progress=f"kodak {name}")
        if not evaluation.all_exact:
            raise SystemExit(f"{name}: a decoded image differs from the encoder's reconstruction")
        stages = [entropy_stage(codec, image) for _, image in tqdm(images, desc=f"entropy stage {name}", leave=False)]
        if name == "uniform":
            for stage in stages:
                counts = torch.bincount(stage["symbols"][0].flatten(), minlength=codec.latent.tokenizer.config.codebook_size)
                usage = counts if usage is None else usage + counts
        rows = [
            dict(
                bpp_est=r.estimated_bpp,
                bpp_real=r.bpp,
                bpp_streams=stage["stream_bytes"] * 8 / (r.height * r.width),
                enc_entropy=stage["enc_entropy"],
                enc_total=r.encode_seconds,
                dec_entropy=stage["dec_entropy"],
                dec_total=r.decode_seconds,
                psnr=r.psnr,
            )
            for r, stage in zip(evaluation.images, stages)
        ]
        results[name] = {k: statistics.mean(r[k] for r in rows) for k in rows[0]}
        results[name]["images"] = len(rows)
    results["codebook"] = dict(
        size=int(usage.numel()), usage=float((usage > 0).double().mean()),
        perplexity=float(perplexity(usage)), tokens=int(usage.sum()),
    )
    results["compressai_bmshj2018_hyperprior_q3"] = compressai_timing([image for _, image in images])
    return results


def compressai_timing(images: list[torch.Tensor]) -> dict:
    """Whole-codec and entropy-stage times of bmshj2018-hyperprior (untrained weights: timing only)."""
    torch.manual_seed(0)
    model = bmshj2018_hyperprior(quality=3, pretrained=False).eval()
    model.update(force=True)
    spent = {"enc_entropy": 0.0, "dec_entropy": 0.0}

    def wrap(module, method, key):
        original = getattr(module, method)

        def timed_call(*a, **k):
            start = time.perf_counter()
            out = original(*a, **k)
            spent[key] += time.perf_counter() - start
            return out

        setattr(module, method, timed_call)

    for module in (model.entropy_bottleneck, model.gaussian_conditional):
        wrap(module, "compress", "enc_entropy")
        wrap(module, "decompress", "dec_entropy")
    totals = {"enc_total": 0.0, "dec_total": 0.0}
    with torch.no_grad():
        for image in tqdm(images, desc="kodak compressai", leave=False):
            x = image[None]
            out, t_enc = timed(model.compress, x)
            _, t_dec = timed(model.decompress, out["strings"], out["shape"])
            totals["enc_total"] += t_enc
            totals["dec_total"] += t_dec
    n = len(images)
    return {**{k: v / n for k, v in spent.items()}, **{k: v / n for k, v in totals.items()}, "images": n}


# ---------------------------------------------------------------------------- 3: large codebooks
def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def large_codebook_case(size: int, top_k: int | None, positions: int, repeats: int) -> dict:
    """One case in this process: Kodak-sized Gaussian index coding over a random K x 8 codebook
    (large codebooks use small embeddings, as in VQGAN-LC). The latent is a random unit vector, its
    index the nearest codeword; the "hyperprior" predicts it with an error of norm ~0.25 and knows
    that error's scale, so the model is calibrated and an index costs a realistic few bits."""
    g = torch.Generator().manual_seed(size)
    dim, error = 8, 0.25
    codewords = torch.nn.functional.normalize(torch.randn(size, dim, generator=g), dim=-1)
    latents = torch.nn.functional.normalize(torch.randn(positions, dim, generator=g), dim=-1)
    symbols = torch.cat([torch.cdist(chunk, codewords).argmin(-1) for chunk in latents.split(64)])
    sigma = torch.full((positions,), error / dim**0.5)
    mu = latents + sigma[:, None] * torch.randn(positions, dim, generator=g)
    codebook = P.FixedPointCodebook.from_codewords(codewords)
    params = P.GaussianParameters.from_float(mu, sigma, codebook)
    engine = ProbabilityEngine("torch", top_k=top_k)
    def encode() -> bytes:
        encoder = IndexEncoder()
        encoder.encode_tables(symbols, engine.gaussian_tables(params, codebook))
        return encoder.finish()

    def decode(data: bytes) -> torch.Tensor:
        return IndexDecoder(data).decode_tables(engine.gaussian_tables(params, codebook))

    ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed setup memory back, so it is not reused unseen
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS counter (VmHWM)
    baseline = _status_kib("VmRSS")
    data = encode()
    assert torch.equal(decode(data), symbols)
    peak = _status_kib("VmHWM")
    # Times: median of `repeats` runs after the first (which also paid for first-touch memory).
    t_enc = statistics.median(timed(encode)[1] for _ in range(repeats))
    t_dec = statistics.median(timed(decode, data)[1] for _ in range(repeats))
    ideal = sum(float(P.ideal_bits(t.full(), s).sum()) for t, s in
                zip(engine.gaussian_tables(params, codebook), symbols.split(engine.rows_per_chunk(size))))
    return dict(K=size, top_k=top_k, positions=positions, enc_s=t_enc, dec_s=t_dec, bits=len(data) * 8,
                ideal_bits=ideal, peak_mib=(peak - baseline) / 1024)


def large_codebooks(positions: int, repeats: int) -> list[dict]:
    cases = [(1024, None), (16384, None), (16384, 256), (65536, None), (65536, 256)]
    rows = []
    for size, top_k in tqdm(cases, desc="large codebooks", leave=False):
        # A fresh process per case, so that peak memory is that case's own.
        out = subprocess.run(
            [sys.executable, __file__, "--large-case", str(size), str(top_k or 0), "--positions", str(positions),
             "--repeats", str(repeats)],
            capture_output=True, text=True, check=True, cwd=ROOT,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return rows


# ------------------------------------------------------------------------------------ 4: coders
def coder_comparison(positions: int) -> list[dict]:
    from compressai._CXX import pmf_to_quantized_cdf
    from compressai.ans import RansDecoder, RansEncoder

    rows = []
    for size in (1024, 16384):
        g = torch.Generator().manual_seed(size)
        logits = torch.randn(positions, size, generator=g) * 3.0
        p = torch.softmax(logits.double(), -1)
        symbols = torch.multinomial(p, 1, generator=g).squeeze(-1)
        ideal = float(-torch.log2(p.gather(-1, symbols[:, None])).sum())
        table = P.frequency_table(P.logit_buckets(logits))
        encoder = IndexEncoder()
        (_, t_enc) = timed(encoder.encode, symbols, table)
        data = encoder.finish()
        decoded, t_dec = timed(IndexDecoder(data).decode, table)
        assert torch.equal(decoded, symbols)
        rows.append(dict(coder="constriction range, 24-bit", K=size, bits=len(data) * 8, ideal=ideal,
                         us_enc=1e6 * t_enc / positions, us_dec=1e6 * t_dec / positions))
        # CompressAI rANS: 16-bit CDFs with an escape bin, one row per position.
        cdfs = [pmf_to_quantized_cdf(row.tolist() + [0.0], 16) for row in p]
        lengths = [size + 2] * positions
        offsets = [0] * positions
        indexes = list(range(positions))
        sym = symbols.tolist()
        start = time.perf_counter()
        stream = RansEncoder().encode_with_indexes(sym, indexes, cdfs, lengths, offsets)
        t_enc = time.perf_counter() - start
        start = time.perf_counter()
        out = RansDecoder().decode_with_indexes(stream, indexes, cdfs, lengths, offsets)
        t_dec = time.perf_counter() - start
        assert out == sym
        rows.append(dict(coder="CompressAI rANS, 16-bit", K=size, bits=len(stream) * 8, ideal=ideal,
                         us_enc=1e6 * t_enc / positions, us_dec=1e6 * t_dec / positions))
    return rows


# ------------------------------------------------------------------------------------- reporting
def markdown(results: dict, command: str) -> str:
    lines = [f"Command: `{command}`", ""]
    if "kodak" in results:
        k = results["kodak"]
        uni = k["uniform"]["bpp_real"]
        cb = k["codebook"]
        lines += [
            f"Kodak ({k['uniform']['images']} images), same tokenizer for all three models; PSNR {k['uniform']['psnr']:.2f} dB; "
            f"codebook of {cb['size']}: {100 * cb['usage']:.1f} % of the codes used over the {cb['tokens']} Kodak indices, "
            f"perplexity {cb['perplexity']:.0f}.",
            "",
            "| index coding | est. bpp | real bpp (file) | overhead: streams only | overhead: whole file | saving vs uniform (file) |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for name in ("uniform", "static", "hypervq"):
            r = k[name]
            lines.append(
                f"| {name} | {r['bpp_est']:.5f} | {r['bpp_real']:.5f} | {100 * (r['bpp_streams'] / r['bpp_est'] - 1):+.2f} % "
                f"| {100 * (r['bpp_real'] / r['bpp_est'] - 1):+.2f} % | {100 * (1 - r['bpp_real'] / uni):.2f} % |"
            )
        ca = k["compressai_bmshj2018_hyperprior_q3"]
        lines += [
            "",
            "Mean time per Kodak image (ms); ratio = time / bmshj2018-hyperprior's time.",
            "",
            "| codec | enc entropy | enc total | dec entropy | dec total |",
            "| --- | --- | --- | --- | --- |",
            f"| CompressAI bmshj2018-hyperprior q3 | {1e3 * ca['enc_entropy']:.1f} | {1e3 * ca['enc_total']:.1f} "
            f"| {1e3 * ca['dec_entropy']:.1f} | {1e3 * ca['dec_total']:.1f} |",
        ]
        for name in ("uniform", "static", "hypervq"):
            r = k[name]
            cells = [f"{1e3 * r[key]:.1f} ({r[key] / ca[key]:.2f}x)" for key in ("enc_entropy", "enc_total", "dec_entropy", "dec_total")]
            lines.append(f"| rdvq {name} | " + " | ".join(cells) + " |")
    if "large" in results:
        lines += ["", f"Index coding of {results['large'][0]['positions']} positions (a Kodak image at stride 16), "
                  "engine + range coder; median of repeated runs; peak RSS growth measured from a reset counter.",
                  "", "| K | tail floor | encode ms | decode ms | bits/index | overhead vs table | peak RSS growth MiB |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for r in results["large"]:
            lines.append(
                f"| {r['K']} | {r['top_k'] or 'off'} | {1e3 * r['enc_s']:.0f} | {1e3 * r['dec_s']:.0f} "
                f"| {r['bits'] / r['positions']:.3f} | {100 * (r['bits'] / r['ideal_bits'] - 1):+.2f} % | {r['peak_mib']:.0f} |"
            )
    if "coders" in results:
        lines += ["", "| coder | K | bits / ideal | µs/symbol enc | µs/symbol dec |", "| --- | --- | --- | --- | --- |"]
        for r in results["coders"]:
            lines.append(f"| {r['coder']} | {r['K']} | {r['bits'] / r['ideal']:.4f} | {r['us_enc']:.2f} | {r['us_dec']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hypervq", default="runs/bench/hypervq/checkpoints/last.ckpt")
    parser.add_argument("--static", default="runs/bench/static/checkpoints/last.ckpt")
    parser.add_argument("--kodak", default="../shared/datasets/kodak")
    parser.add_argument("--positions", type=int, default=1536, help="index positions per image (Kodak at /16)")
    parser.add_argument("--sections", nargs="+", default=["kodak", "large", "coders"], choices=["kodak", "large", "coders"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per large-codebook case (median)")
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument("--large-case", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.large_case:
        size, top_k = args.large_case
        print(json.dumps(large_codebook_case(size, top_k or None, args.positions, args.repeats)))
        return
    if "kodak" in args.sections:
        for path in (args.hypervq, args.static):
            if not Path(path).is_file():
                raise SystemExit(f"missing {path}: train it first (see BENCHMARKS.md)")
        if not Path(args.kodak).is_dir():
            raise SystemExit(f"missing {args.kodak}: the Kodak images are needed for this section")
    results: dict = {"threads": args.threads, "torch": torch.__version__}
    if "kodak" in args.sections:
        results["kodak"] = kodak_rows(args)
    if "large" in args.sections:
        results["large"] = large_codebooks(args.positions, args.repeats)
    if "coders" in args.sections:
        results["coders"] = coder_comparison(512)
    command = "python " + " ".join([str(Path(sys.argv[0]).relative_to(ROOT)) if Path(sys.argv[0]).is_absolute() else sys.argv[0], *sys.argv[1:]])
    print(markdown(results, command))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
