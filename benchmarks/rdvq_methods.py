"""RDVQ's methods on one CPU-trained /16-/32-/64 tokenizer, all 24 Kodak images, real files.

1. ``rates``: uniform, static-table, HyperVQ and masked-transformer coding of the *same* indices
   (the four stage B checkpoints share one bit-identical tokenizer), and the transformer's coding
   window (4, 8 and 16 tokens of the /64 branch; 16 holds a whole Kodak image) with the same weights.
2. ``joint``: stage C against stage B, with the soft-posterior rate (RDVQ's relaxation) and
   without it (hard-index cross-entropy), bpp and PSNR.
3. ``slices``: test-time rate control, bpp and PSNR for every slice count T from one model. Every
   T is encoded (the encoder's reconstruction is the decoder's: the encoder runs the same
   completion); a few T are also decoded from the files and compared bit for bit, with argmax and
   with seeded sampling.
4. ``rdo``: entropy-constrained index selection over a few lambdas, HyperVQ and transformer.
5. ``speed``: time per image of the entropy stage (encoder: entropy model + probability engine +
   range coder + container; decoder: the reverse) and of the whole codec, transformer with and
   without the KV cache, next to HyperVQ.

Checkpoints come from experiments/bench_rdvq_*.yaml (BENCHMARKS.md lists the commands). Run from
the repository root:

    python benchmarks/rdvq_methods.py --json benchmarks/results/rdvq_methods.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from tqdm import tqdm

warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated")

from rdvq.codec import ImageCodec, VQCodec  # noqa: E402
from rdvq.encode_options import EncodeOptions  # noqa: E402
from rdvq.entropy import TransformerModel, UniformConfig, UniformModel, build_entropy_model  # noqa: E402
from rdvq.evaluation import evaluate  # noqa: E402
from rdvq.image_io import find_images, read_image  # noqa: E402
from rdvq.metrics import psnr  # noqa: E402

SECTIONS = ("rates", "joint", "slices", "rdo", "speed")
RUNS = Path("runs/bench")


def _same_tokenizer(a: ImageCodec, b: ImageCodec) -> bool:
    return all(
        torch.equal(x, y)
        for x, y in zip(a.latent.tokenizer.state_dict().values(), b.latent.tokenizer.state_dict().values())
        if x.is_floating_point() and not x.isnan().any()
    )


def variant(codec: ImageCodec, **changes) -> ImageCodec:
    """The same trained transformer under another coding configuration (window, kv_cache)."""
    latent = codec.latent
    config = dataclasses.replace(latent.entropy_config, **changes)
    model = build_entropy_model(config, latent.tokenizer)
    model.load_state_dict(latent.entropy_model.state_dict())
    return ImageCodec(VQCodec(latent.tokenizer, model.eval(), config, latent.engine_name))


def summary(evaluation, **extra) -> dict:
    if not evaluation.all_exact:
        raise SystemExit("a decoded image differs from the encoder's reconstruction")
    mean = evaluation.summary()
    keys = ("bpp", "estimated_bpp", "psnr", "ms_ssim_db", "encode_seconds", "decode_seconds")
    return {**{k: mean.get(k) for k in keys}, "images": len(evaluation.images), "all_exact": True, **extra}


def bpp_at_psnr(points: list[dict], target: float) -> float | None:
    """Rate of a curve at ``target`` PSNR, interpolated linearly in log-bpp between its two nearest
    points; None outside the curve's PSNR range (no extrapolation)."""
    ordered = sorted((row["psnr"], math.log(row["bpp"])) for row in points)
    for (p0, r0), (p1, r1) in zip(ordered, ordered[1:]):
        if p0 <= target <= p1:
            return math.exp(r0 + (r1 - r0) * (target - p0) / (p1 - p0)) if p1 > p0 else math.exp(r0)
    return None


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


# ---------------------------------------------------------------------------------------- sections
def rates(codecs: dict[str, ImageCodec], images, files: Path) -> dict:
    out = {}
    for name, codec in codecs.items():
        out[name] = summary(evaluate(codec, images, files=files, estimate=True, progress=f"rate {name}"))
    for window in (4, 16):
        name = f"transformer window {window}" + (" (whole image)" if window == 16 else "")
        codec = variant(codecs["transformer"], window=window)
        out[name] = summary(evaluate(codec, images, files=files, estimate=True, progress=f"rate {name}"))
    return out


def joint(checkpoints: dict[str, str], images, files: Path) -> dict:
    out = {}
    for name, path in checkpoints.items():
        codec = ImageCodec.from_checkpoint(path)
        out[name] = summary(evaluate(codec, images, files=files, estimate=True, progress=f"joint {name}"))
    return out


def slices(codec: ImageCodec, images, verify: list[int], files: Path) -> dict:
    count = codec.latent.entropy_model.num_slices
    analyses = [(name, image, codec.analyze(image)) for name, image in images]
    rows = {}
    for sent in tqdm(range(1, count + 1), desc="rate control (every T)", unit="T"):
        bpp, quality = [], []
        for _, image, analysis in analyses:
            height, width = image.shape[-2:]
            encoded = codec.pack(analysis, height, width, EncodeOptions(slices=sent))
            reconstruction = codec.reconstruct(encoded.symbols, height, width)
            bpp.append(len(encoded.data) * 8 / (height * width))
            quality.append(float(psnr(reconstruction[None], image[None])))
        rows[sent] = {"bpp": statistics.mean(bpp), "psnr": statistics.mean(quality)}
    checked = {}
    for sent in verify:
        for completion, seed in (("argmax", 0), ("sample", 1234)):
            options = EncodeOptions(slices=sent, completion=completion, seed=seed)
            checked[f"T={sent} {completion}"] = summary(
                evaluate(codec, images, options=options, files=files, progress=f"decode T={sent} {completion}")
            )
    return {"slices": count, "every_T": rows, "decoded": checked}


def rdo(codecs: dict[str, ImageCodec], images, lambdas: list[float], files: Path) -> dict:
    out = {}
    for name, codec in codecs.items():
        out[name] = {}
        for rdo_lambda in lambdas:
            options = EncodeOptions(rdo_lambda=rdo_lambda or None)
            out[name][rdo_lambda] = summary(evaluate(codec, images, options=options, files=files, progress=f"rdo {name} {rdo_lambda}"))
    return out


def speed(codecs: dict[str, ImageCodec], images, repeats: int) -> dict:
    """Median over ``repeats`` of the entropy stage and whole-codec times, mean over images."""
    out = {}
    for name, codec in codecs.items():
        rows = []
        for _, image in tqdm(images, desc=f"speed {name}", unit="image"):
            height, width = image.shape[-2:]
            samples = []
            for _ in range(repeats):
                analysis, t_analyze = timed(codec.analyze, image)
                encoded, t_pack = timed(codec.pack, analysis, height, width)
                decoded, t_unpack = timed(codec.unpack, encoded.data)
                _, t_synth = timed(codec.reconstruct, decoded.symbols, height, width)
                samples.append((t_pack, t_analyze + t_pack, t_unpack, t_unpack + t_synth))
            rows.append([statistics.median(column) for column in zip(*samples)])
        means = [statistics.mean(column) for column in zip(*rows)]
        out[name] = dict(zip(("enc_entropy", "enc_total", "dec_entropy", "dec_total"), means))
    return out


# ---------------------------------------------------------------------------------------- report
def markdown(results: dict, command: str) -> str:
    lines = [f"Command: `{command}`", ""]
    if "rates" in results:
        r = results["rates"]
        uniform = r["uniform"]["bpp"]
        lines += ["| index coding | est. bpp | real bpp (file) | saving vs uniform | vs HyperVQ | PSNR dB |", "| --- | --- | --- | --- | --- | --- |"]
        for name, row in r.items():
            lines.append(
                f"| {name} | {row['estimated_bpp']:.5f} | {row['bpp']:.5f} | {100 * (1 - row['bpp'] / uniform):.2f} % "
                f"| {100 * (row['bpp'] / r['hypervq']['bpp'] - 1):+.2f} % | {row['psnr']:.2f} |"
            )
        lines.append("")
    if "joint" in results:
        lines += ["| model | real bpp | PSNR dB | MS-SSIM dB |", "| --- | --- | --- | --- |"]
        for name, row in results["joint"].items():
            lines.append(f"| {name} | {row['bpp']:.5f} | {row['psnr']:.2f} | {row['ms_ssim_db']:.2f} |")
        lines.append("")
        stage_b = list(results.get("rdo", {}).get("transformer", {}).values())
        if stage_b:
            lines += ["Stage C against stage B at equal PSNR: stage B's curve is its entropy-constrained index selection "
                      "(the rdo rows of the transformer below), interpolated in log-bpp.", "",
                      "| model | PSNR dB | real bpp | stage B's bpp at that PSNR | rate change |", "| --- | --- | --- | --- | --- |"]
            for name, row in results["joint"].items():
                if name.startswith("stage C"):
                    anchor = bpp_at_psnr(stage_b, row["psnr"])
                    cells = ("outside stage B's curve", "n/a") if anchor is None else (f"{anchor:.5f}", f"{100 * (row['bpp'] / anchor - 1):+.1f} %")
                    lines.append(f"| {name} | {row['psnr']:.2f} | {row['bpp']:.5f} | " + " | ".join(cells) + " |")
            lines.append("")
    if "slices" in results:
        s = results["slices"]
        rows = s["every_T"]
        lines += [f"Rate control, {s['slices']} slices ({s['model']}); every T encoded, real file sizes:", "",
                  "| T | real bpp | PSNR dB |", "| --- | --- | --- |"]
        lines += [f"| {t} | {row['bpp']:.5f} | {row['psnr']:.2f} |" for t, row in rows.items()]
        first, last = rows[min(rows, key=int)], rows[max(rows, key=int)]
        lines += ["", f"bpp span T=all / T=1: {last['bpp'] / first['bpp']:.1f}x", "",
                  f"| decoded from files | real bpp | PSNR dB | all {results['images']} decoded == encoder reconstruction |", "| --- | --- | --- | --- |"]
        lines += [f"| {name} | {row['bpp']:.5f} | {row['psnr']:.2f} | {row['all_exact']} |" for name, row in s["decoded"].items()]
        lines.append("")
    if "rdo" in results:
        lines += ["| model | rdo lambda | real bpp | PSNR dB |", "| --- | --- | --- | --- |"]
        for name, by_lambda in results["rdo"].items():
            for rdo_lambda, row in by_lambda.items():
                lines.append(f"| {name} | {rdo_lambda} | {row['bpp']:.5f} | {row['psnr']:.2f} |")
        lines.append("")
    if "speed" in results:
        sp = results["speed"]
        base = sp["hypervq"]
        lines += ["Mean time per Kodak image (ms); ratio = time / HyperVQ's.", "",
                  "| codec | enc entropy | enc total | dec entropy | dec total |", "| --- | --- | --- | --- | --- |"]
        for name, row in sp.items():
            cells = [f"{1e3 * row[k]:.0f} ({row[k] / base[k]:.2f}x)" for k in ("enc_entropy", "enc_total", "dec_entropy", "dec_total")]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--static", default=str(RUNS / "rdvq_static/checkpoints/last.ckpt"))
    parser.add_argument("--hypervq", default=str(RUNS / "rdvq_hypervq/checkpoints/last.ckpt"))
    parser.add_argument("--transformer", default=str(RUNS / "rdvq_transformer/checkpoints/last.ckpt"))
    parser.add_argument("--joint-soft", default=str(RUNS / "rdvq_joint_rd/checkpoints/last.ckpt"))
    parser.add_argument("--joint-hard", default=str(RUNS / "rdvq_joint_rd_hard/checkpoints/last.ckpt"))
    parser.add_argument("--kodak", default="../shared/datasets/kodak")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--verify-slices", type=int, nargs="+", default=[4, 12], help="slice counts also decoded from files")
    parser.add_argument("--rdo-lambdas", type=float, nargs="+", default=[0.0, 0.01, 0.02, 0.05, 0.1, 0.2])
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats per image (median)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    images = [(p.stem, read_image(p)) for p in find_images(args.kodak)]
    transformer = ImageCodec.from_checkpoint(args.transformer)
    hypervq = ImageCodec.from_checkpoint(args.hypervq)
    static = ImageCodec.from_checkpoint(args.static)
    for name, codec in (("static", static), ("hypervq", hypervq)):
        if not _same_tokenizer(codec, transformer):
            raise SystemExit(f"{name} checkpoint was trained on another tokenizer than {args.transformer}")
    uniform = ImageCodec(VQCodec(transformer.latent.tokenizer, UniformModel(), UniformConfig()))
    assert isinstance(transformer.latent.entropy_model, TransformerModel)

    results: dict = {"images": len(images), "threads": args.threads}
    with tempfile.TemporaryDirectory() as files:
        files = Path(files)
        if "rates" in args.sections:
            results["rates"] = rates({"uniform": uniform, "static": static, "hypervq": hypervq, "transformer": transformer}, images, files)
        if "joint" in args.sections:
            results["joint"] = joint(
                {"stage B (transformer, rate only)": args.transformer, "stage C, soft posterior": args.joint_soft,
                 "stage C, hard-index cross-entropy": args.joint_hard},
                images, files,
            )
        if "slices" in args.sections:
            model = args.joint_soft if Path(args.joint_soft).is_file() else args.transformer
            results["slices"] = {"model": model, **slices(ImageCodec.from_checkpoint(model), images, args.verify_slices, files)}
            results["slices"]["decoded"][f"T={results['slices']['slices']} (all)"] = summary(
                evaluate(ImageCodec.from_checkpoint(model), images, files=files, progress="decode T=all")
            )
        if "rdo" in args.sections:
            results["rdo"] = rdo({"hypervq": hypervq, "transformer": transformer}, images, args.rdo_lambdas, files)
        if "speed" in args.sections:
            results["speed"] = speed(
                {"hypervq": hypervq, "transformer (KV cache)": transformer, "transformer (no KV cache)": variant(transformer, kv_cache=False)},
                images, args.repeats,
            )
    print(markdown(results, "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
