"""Entropy-coding and speed benchmark behind BENCHMARKS.md: every number of the speed goals in one run.

1. Rate on Kodak: uniform, static-table and HyperVQ index coding on the *same* trained tokenizer
   (HyperVQ exact and with the bounded tail floor); estimated and real (file-size) bpp, coding
   overhead, saving relative to uniform coding, and the tail floor's rate cost.
2. Speed on Kodak: encode/decode time of the entropy stage and of the whole codec, side by side
   with CompressAI's bmshj2018-hyperprior (quality 3) on the same CPU and images, as ratios; the
   same for further HyperVQ models (``--extra``: by default the CPU-efficient tokenizer's) with
   their bpp and PSNR.
3. Large codebooks: time and peak memory of the probability engine + range coder at K = 1024,
   16384 and 65536 for Kodak-sized index maps, with and without the bounded tail floor, exact or
   with the candidate search at several search widths, as ratios to K = 1024, and the searched
   rows' rate against the exact tail floor's.
4. Coders: constriction's range coder at 24-bit precision (what rdvq uses) against CompressAI's
   16-bit rANS on the same distributions.
5. Start-up: ``rdvq compress`` from process start to its first byte of work (when it starts
   reading the image), and its wall time split into start-up, coding (as the command reports it)
   and the exit after it.

Checkpoints come from experiments/bench_*.yaml (see BENCHMARKS.md for the commands). Run from the
repository root:

    python benchmarks/entropy_coding.py --json benchmarks/results/entropy_coding.json
"""

from __future__ import annotations

import argparse
import ctypes
import json
import re
import statistics
import subprocess
import sys
import tempfile
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
from rdvq.coding.engine import ENGINES  # noqa: E402
from rdvq.encode_options import EncodeOptions  # noqa: E402
from rdvq.entropy import UniformConfig, UniformModel  # noqa: E402
from rdvq.evaluation import evaluate  # noqa: E402
from rdvq.image_io import find_images, read_image  # noqa: E402
from rdvq.tokenizer.quantizer import perplexity  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TIMES = ("enc_entropy", "enc_total", "dec_entropy", "dec_total")


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


# ------------------------------------------------------------------------------------ 1 + 2: Kodak
def same_tokenizer(a: ImageCodec, b: ImageCodec) -> bool:
    """Bit-identical tokenizer weights (NaN-filled unused entries aside)."""
    first, second = a.latent.tokenizer.state_dict(), b.latent.tokenizer.state_dict()
    return first.keys() == second.keys() and all(
        x.shape == y.shape and torch.equal(x, y)
        for x, y in zip(first.values(), second.values())
        if x.is_floating_point() and not x.isnan().any()
    )


def codecs(args) -> dict[str, tuple[ImageCodec, EncodeOptions]]:
    """The models of sections 1 and 2 with their encoder options, all on the HyperVQ checkpoint's tokenizer."""
    hyper = ImageCodec.from_checkpoint(args.hypervq, engine=args.engine)
    static = ImageCodec.from_checkpoint(args.static, engine=args.engine)
    tokenizer = hyper.latent.tokenizer
    if not same_tokenizer(static, hyper):
        raise SystemExit(f"{args.static} was trained on another tokenizer than {args.hypervq}")
    uniform = ImageCodec(VQCodec(tokenizer, UniformModel(), UniformConfig(), engine=args.engine))
    rows = {
        "uniform": (uniform, EncodeOptions()),
        "static": (static, EncodeOptions()),
        "hypervq": (hyper, EncodeOptions()),
        f"hypervq top-{args.top_k}": (hyper, EncodeOptions(top_k=args.top_k)),
    }
    for path in args.extra:  # named by their run folder (runs/bench/NAME/checkpoints/last.ckpt)
        rows[f"hypervq, {Path(path).resolve().parent.parent.name}"] = (ImageCodec.from_checkpoint(path, engine=args.engine), EncodeOptions())
    return rows


def entropy_stage(codec: ImageCodec, image: torch.Tensor, options: EncodeOptions, repeats: int) -> dict:
    """Times of the entropy stage alone (encoder: pack; decoder: unpack), the median of ``repeats``
    runs (a 15 ms stage on a shared 2-core machine varies by a few ms from run to run), and the
    streams' share of the file."""
    analysis = codec.analyze(image)
    packs, unpacks = [], []
    for _ in range(repeats):
        encoded, t_pack = timed(codec.pack, analysis, *image.shape[-2:], options)
        decoded, t_unpack = timed(codec.unpack, encoded.data)
        assert all(torch.equal(a, b) for a, b in zip(decoded.symbols, encoded.symbols)), "round trip failed"
        packs.append(t_pack)
        unpacks.append(t_unpack)
    streams = sum(len(s) for s in container.unpack(encoded.data).streams)
    return dict(enc_entropy=statistics.median(packs), dec_entropy=statistics.median(unpacks), stream_bytes=streams, symbols=encoded.symbols)


def kodak_rows(args) -> dict:
    images = [(p.stem, read_image(p)) for p in find_images(args.kodak)]
    results: dict = {}
    usage = None
    models = codecs(args)
    for name, (codec, options) in models.items():
        evaluate(codec, images[:2], options=options)  # warm-up: kernels loaded, caches filled
        evaluation = evaluate(codec, images, options=options, estimate=True, progress=f"kodak {name}")
        if not evaluation.all_exact:
            raise SystemExit(f"{name}: a decoded image differs from the encoder's reconstruction")
        stages = [
            entropy_stage(codec, image, options, args.stage_repeats)
            for _, image in tqdm(images, desc=f"entropy stage {name}", leave=False)
        ]
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
        results[name]["same_tokenizer"] = same_tokenizer(codec, models["hypervq"][0])
    results["codebook"] = dict(
        size=int(usage.numel()), usage=float((usage > 0).double().mean()),
        perplexity=float(perplexity(usage)), tokens=int(usage.sum()),
    )
    results["compressai_bmshj2018_hyperprior_q3"] = compressai_timing([image for _, image in images], args.stage_repeats)
    return results


def compressai_timing(images: list[torch.Tensor], repeats: int) -> dict:
    """Whole-codec and entropy-stage times of bmshj2018-hyperprior (untrained weights: timing only).
    Each image is coded ``repeats`` times: its entropy stage is the median, as for rdvq's rows; its
    whole-codec time is the first run's, as rdvq's come from one evaluation run."""
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
    sums = dict.fromkeys(TIMES, 0.0)
    with torch.no_grad():
        model.compress(images[0][None])  # warm-up
        for image in tqdm(images, desc="kodak compressai", leave=False):
            runs = []
            for _ in range(repeats):
                spent.update(enc_entropy=0.0, dec_entropy=0.0)
                out, t_enc = timed(model.compress, image[None])
                _, t_dec = timed(model.decompress, out["strings"], out["shape"])
                runs.append(dict(spent, enc_total=t_enc, dec_total=t_dec))
            for key in ("enc_entropy", "dec_entropy"):
                sums[key] += statistics.median(run[key] for run in runs)
            for key in ("enc_total", "dec_total"):
                sums[key] += runs[0][key]
    n = len(images)
    return {**{k: v / n for k, v in sums.items()}, "images": n, "stage_repeats": repeats}


# ---------------------------------------------------------------------------- 3: large codebooks
def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def calibrated_gaussians(size: int, positions: int) -> tuple[P.FixedPointCodebook, P.GaussianParameters, torch.Tensor]:
    """(codebook, Gaussians, symbols) over a random K x 8 codebook (large codebooks use small
    embeddings, as in VQGAN-LC). The latent is a random unit vector, its index the nearest
    codeword; the "hyperprior" predicts it with an error of norm ~0.25 and knows that error's
    scale, so the model is calibrated and an index costs a realistic few bits."""
    g = torch.Generator().manual_seed(size)
    dim, error = 8, 0.25
    codewords = torch.nn.functional.normalize(torch.randn(size, dim, generator=g), dim=-1)
    latents = torch.nn.functional.normalize(torch.randn(positions, dim, generator=g), dim=-1)
    symbols = torch.cat([torch.cdist(chunk, codewords).argmin(-1) for chunk in latents.split(64)])
    sigma = torch.full((positions,), error / dim**0.5)
    mu = latents + sigma[:, None] * torch.randn(positions, dim, generator=g)
    codebook = P.FixedPointCodebook.from_codewords(codewords)
    return codebook, P.GaussianParameters.from_float(mu, sigma, codebook), symbols


def large_codebook_case(
    size: int, top_k: int | None, width: int | None, positions: int, repeats: int, engine_name: str
) -> dict:
    """One case in this process: Kodak-sized index coding under :func:`calibrated_gaussians`."""
    codebook, params, symbols = calibrated_gaussians(size, positions)
    engine = ProbabilityEngine(engine_name, top_k=top_k, search_width=width)

    def encode() -> bytes:
        encoder = IndexEncoder()
        engine.encode_gaussian(encoder, symbols, params, codebook)
        return encoder.finish()

    def decode(data: bytes) -> torch.Tensor:
        return engine.decode_gaussian(IndexDecoder(data), params, codebook)

    assert torch.equal(decode(encode()), symbols)  # warm-up (kernels loaded, clusters built)
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed setup memory back, so it is not reused unseen
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS counter (VmHWM)
    baseline = _status_kib("VmRSS")
    data = encode()
    assert torch.equal(decode(data), symbols)
    peak = _status_kib("VmHWM")
    t_enc = statistics.median(timed(encode)[1] for _ in range(repeats))
    t_dec = statistics.median(timed(decode, data)[1] for _ in range(repeats))
    ideal, start = 0.0, 0
    for table in ProbabilityEngine("torch", top_k=top_k, search_width=width).gaussian_tables(params, codebook):
        ideal += float(P.ideal_bits(table.full(), symbols[start : start + table.num_positions]).sum())
        start += table.num_positions
    return dict(K=size, top_k=top_k, search_width=width, positions=positions, enc_s=t_enc, dec_s=t_dec, bits=len(data) * 8,
                ideal_bits=ideal, peak_mib=(peak - baseline) / 1024)


def large_codebooks(positions: int, repeats: int, top_k: int, widths: list[int], engine: str) -> list[dict]:
    cases = [(1024, None, None), (1024, top_k, None)]
    for size in (16384, 65536):
        cases += [(size, None, None), (size, top_k, None)] + [(size, top_k, w) for w in widths]
    rows = []
    for size, floor, width in tqdm(cases, desc="large codebooks", leave=False):
        # A fresh process per case, so that peak memory is that case's own.
        out = subprocess.run(
            [sys.executable, __file__, "--large-case", str(size), str(floor or 0), str(width or 0),
             "--positions", str(positions), "--repeats", str(repeats), "--engine", engine],
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


# ----------------------------------------------------------------------------------- 5: start-up
# The console script (rdvq.app.main:console), with the moment it starts reading its input image
# written to stderr: the first byte of work. Nothing else about the command changes.
_TIMED_CONSOLE = """
import sys, time
import rdvq.app.compress as command
from rdvq.app.main import console
launched, read_image = float(sys.argv.pop(1)), command.read_image
def timed_read_image(*args, **kwargs):
    sys.stderr.write(f"first byte of work after {time.time() - launched:.6f} s\\n")
    return read_image(*args, **kwargs)
command.read_image = timed_read_image
console()
"""


def startup(checkpoint: str, image: Path, repeats: int) -> dict:
    """``rdvq compress`` of one image: seconds from launching the process to its first byte of work,
    and its wall time with the coding time it reports and the exit after the work (medians)."""
    samples = []
    with tempfile.TemporaryDirectory() as out:
        for _ in range(repeats):
            arguments = ["compress", str(image), "--ckpt", checkpoint, "--out-dir", out, "--force"]
            launched = time.time()
            done = subprocess.run([sys.executable, "-c", _TIMED_CONSOLE, repr(launched), *arguments],
                                  capture_output=True, text=True, check=True, cwd=ROOT)
            wall = time.time() - launched
            first = float(re.search(r"first byte of work after ([0-9.]+) s", done.stderr).group(1))
            work = float(re.search(r"([0-9.]+) s$", done.stdout.strip()).group(1))
            samples.append((first, wall, work, wall - first - work))
    startup_s, wall, work, exit_s = (statistics.median(column) for column in zip(*samples))
    # The floor under any command that runs a torch network: starting Python and importing torch.
    torch_import = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch"], check=True, cwd=ROOT)
        torch_import.append(time.perf_counter() - start)
    return dict(startup_s=startup_s, wall_s=wall, work_s=work, exit_s=exit_s,
                torch_import_s=statistics.median(torch_import), repeats=repeats)


# ------------------------------------------------------------------------------------- reporting
def _ratio(value: float, anchor: float) -> str:
    return f"{value / anchor:.2f}x"


def goals(results: dict) -> list[str]:
    """The speed goals' column: each number as measured in this run."""
    lines = ["| what | measured in this run |", "| --- | --- |"]
    if "kodak" in results:
        k, ca = results["kodak"], results["kodak"]["compressai_bmshj2018_hyperprior_q3"]
        exact = k["hypervq"]
        floor = next(v for n, v in k.items() if n.startswith("hypervq top-"))
        floor_name = next(n for n in k if n.startswith("hypervq top-"))
        lines.append(
            f"| HyperVQ entropy stage per Kodak image, K = 1024, encode / decode | exact {1e3 * exact['enc_entropy']:.1f} / "
            f"{1e3 * exact['dec_entropy']:.1f} ms ({_ratio(exact['enc_entropy'], ca['enc_entropy'])} / "
            f"{_ratio(exact['dec_entropy'], ca['dec_entropy'])} CompressAI's entropy stage); {floor_name}: "
            f"{1e3 * floor['enc_entropy']:.1f} / {1e3 * floor['dec_entropy']:.1f} ms at "
            f"{100 * (floor['bpp_real'] / exact['bpp_real'] - 1):+.2f} % rate |"
        )
        for name in [n for n in k if n.startswith("hypervq, ")]:
            r = k[name]
            lines.append(
                f"| HyperVQ entropy stage per Kodak image, K = {k['codebook']['size']}, exact ({name}) | "
                f"{1e3 * r['enc_entropy']:.1f} / {1e3 * r['dec_entropy']:.1f} ms ({_ratio(r['enc_entropy'], ca['enc_entropy'])} / "
                f"{_ratio(r['dec_entropy'], ca['dec_entropy'])} CompressAI's entropy stage), {r['bpp_real']:.4f} bpp |"
            )
        for name in [n for n in k if n.startswith("hypervq") and "top-" not in n]:
            r = k[name]
            lines.append(
                f"| whole codec per Kodak image, encode / decode ({name}) | {1e3 * r['enc_total']:.0f} / {1e3 * r['dec_total']:.0f} ms "
                f"({_ratio(r['enc_total'], ca['enc_total'])} / {_ratio(r['dec_total'], ca['dec_total'])} CompressAI's hyperprior q3), "
                f"{r['bpp_real']:.4f} bpp, {r['psnr']:.2f} dB |"
            )
    if "large" in results:
        base = next(r for r in results["large"] if r["K"] == 1024 and r["top_k"] is None)
        for r in results["large"]:
            if r["K"] > 1024 and r["top_k"]:
                exact = next(e for e in results["large"] if e["K"] == r["K"] and e["top_k"] and not e.get("search_width"))
                search = (
                    f", search width {r['search_width']}, {100 * (r['bits'] / exact['bits'] - 1):+.1f} % bits vs the exact search"
                    if r.get("search_width") else ", exact search"
                )
                lines.append(
                    f"| index coding of {r['positions']} positions at K = {r['K']}, top-k {r['top_k']}{search}, encode / decode | "
                    f"{1e3 * r['enc_s']:.0f} / {1e3 * r['dec_s']:.0f} ms ({_ratio(r['enc_s'], base['enc_s'])} / "
                    f"{_ratio(r['dec_s'], base['dec_s'])} the K = 1024 time), peak {r['peak_mib']:.0f} MiB |"
                )
    if "startup" in results:
        s = results["startup"]
        lines.append(
            f"| `rdvq compress` start-up to the first byte of work | {s['startup_s']:.2f} s (median of {s['repeats']}); "
            f"`python -c 'import torch'` alone (start to exit): {s['torch_import_s']:.2f} s |"
        )
    return lines


def markdown(results: dict, command: str) -> str:
    lines = [f"Command: `{command}`", "", *goals(results)]
    if "kodak" in results:
        k = results["kodak"]
        names = [n for n in k if n not in ("codebook", "compressai_bmshj2018_hyperprior_q3")]
        uni = k["uniform"]["bpp_real"]
        cb = k["codebook"]
        lines += [
            "",
            f"Kodak ({k['uniform']['images']} images), same tokenizer for uniform, static and HyperVQ; PSNR {k['uniform']['psnr']:.2f} dB; "
            f"codebook of {cb['size']}: {100 * cb['usage']:.1f} % of the codes used over the {cb['tokens']} Kodak indices, "
            f"perplexity {cb['perplexity']:.0f}.",
            "",
            "| index coding | est. bpp | real bpp (file) | overhead: streams only | overhead: whole file | saving vs uniform (file) | PSNR |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name in names:
            r = k[name]
            saving = f"{100 * (1 - r['bpp_real'] / uni):.2f} %" if r["same_tokenizer"] else "other tokenizer"
            lines.append(
                f"| {name} | {r['bpp_est']:.5f} | {r['bpp_real']:.5f} | {100 * (r['bpp_streams'] / r['bpp_est'] - 1):+.2f} % "
                f"| {100 * (r['bpp_real'] / r['bpp_est'] - 1):+.2f} % | {saving} | {r['psnr']:.2f} |"
            )
        ca = k["compressai_bmshj2018_hyperprior_q3"]
        lines += [
            "",
            "Mean time per Kodak image (ms); ratio = time / bmshj2018-hyperprior's time. The entropy "
            f"stage is each image's median of {ca['stage_repeats']} runs; the whole codec one run per image.",
            "",
            "| codec | enc entropy | enc total | dec entropy | dec total |",
            "| --- | --- | --- | --- | --- |",
            "| CompressAI bmshj2018-hyperprior q3 | " + " | ".join(f"{1e3 * ca[t]:.1f}" for t in TIMES) + " |",
        ]
        for name in names:
            r = k[name]
            lines.append(f"| rdvq {name} | " + " | ".join(f"{1e3 * r[t]:.1f} ({_ratio(r[t], ca[t])})" for t in TIMES) + " |")
    if "large" in results:
        base = next(r for r in results["large"] if r["K"] == 1024 and r["top_k"] is None)
        lines += ["", f"Index coding of {results['large'][0]['positions']} positions (a Kodak image at stride 16), "
                  "engine + range coder; median of repeated runs; peak RSS growth measured from a reset counter.",
                  "", "| K | tail floor | candidate search | encode ms | decode ms | vs K = 1024 exact | bits/index | overhead vs table | peak RSS growth MiB |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in results["large"]:
            search = f"width {r['search_width']}" if r.get("search_width") else ("exact" if r["top_k"] else "-")
            lines.append(
                f"| {r['K']} | {r['top_k'] or 'off'} | {search} | {1e3 * r['enc_s']:.1f} | {1e3 * r['dec_s']:.1f} "
                f"| {_ratio(r['enc_s'], base['enc_s'])} / {_ratio(r['dec_s'], base['dec_s'])} "
                f"| {r['bits'] / r['positions']:.3f} | {100 * (r['bits'] / r['ideal_bits'] - 1):+.2f} % | {r['peak_mib']:.0f} |"
            )
    if "coders" in results:
        lines += ["", "| coder | K | bits / ideal | µs/symbol enc | µs/symbol dec |", "| --- | --- | --- | --- | --- |"]
        for r in results["coders"]:
            lines.append(f"| {r['coder']} | {r['K']} | {r['bits'] / r['ideal']:.4f} | {r['us_enc']:.2f} | {r['us_dec']:.2f} |")
    if "startup" in results:
        s = results["startup"]
        lines += ["", f"`rdvq compress` of one Kodak image: {s['wall_s']:.2f} s in all: {s['startup_s']:.2f} s to the first byte "
                  f"of work (interpreter, imports, checkpoint), {s['work_s']:.2f} s coding (as the command reports it) and "
                  f"{s['exit_s']:.2f} s to exit."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hypervq", default="runs/bench/hypervq/checkpoints/last.ckpt")
    parser.add_argument("--static", default="runs/bench/static/checkpoints/last.ckpt")
    parser.add_argument("--extra", nargs="*", default=["runs/bench/hypervq_stem4/checkpoints/last.ckpt"],
                        help="further HyperVQ checkpoints, each a Kodak row of its own (default: the CPU-efficient tokenizer's)")
    parser.add_argument("--kodak", default="../shared/datasets/kodak")
    parser.add_argument("--engine", default="auto", choices=ENGINES)
    parser.add_argument("--top-k", type=int, default=64, help="tail floor of the Kodak HyperVQ row (the large-codebook cases use top-k 256, as the goal)")
    parser.add_argument("--positions", type=int, default=1536, help="index positions per image (Kodak at /16)")
    parser.add_argument("--search-widths", type=int, nargs="*", default=[1024, 2048, 4096],
                        help="candidate-search widths of the large-codebook tail-floor cases")
    parser.add_argument("--sections", nargs="+", default=["kodak", "large", "coders", "startup"],
                        choices=["kodak", "large", "coders", "startup"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per large-codebook and start-up case (median)")
    parser.add_argument("--stage-repeats", type=int, default=5, help="timed repeats of each Kodak image's entropy stage (median)")
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument("--large-case", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.large_case:
        size, top_k, width = args.large_case
        print(json.dumps(large_codebook_case(size, top_k or None, width or None, args.positions, args.repeats, args.engine)))
        return
    if {"kodak", "startup"} & set(args.sections):
        for path in [args.hypervq, args.static, *args.extra]:
            if not Path(path).is_file():
                raise SystemExit(f"missing {path}: train it first (see BENCHMARKS.md)")
        if not Path(args.kodak).is_dir():
            raise SystemExit(f"missing {args.kodak}: the Kodak images are needed for this section")
    results: dict = {"threads": args.threads, "torch": torch.__version__, "engine": args.engine}
    if "kodak" in args.sections:
        results["kodak"] = kodak_rows(args)
    if "large" in args.sections:
        results["large"] = large_codebooks(args.positions, args.repeats, 256, args.search_widths, args.engine)
    if "coders" in args.sections:
        results["coders"] = coder_comparison(512)
    if "startup" in args.sections:
        results["startup"] = startup(args.extra[0] if args.extra else args.hypervq, find_images(args.kodak)[0], args.repeats)
    command = "python " + " ".join([str(Path(sys.argv[0]).relative_to(ROOT)) if Path(sys.argv[0]).is_absolute() else sys.argv[0], *sys.argv[1:]])
    print(markdown(results, command))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
