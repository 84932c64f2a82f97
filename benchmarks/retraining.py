"""Decoder-retraining benchmark behind BENCHMARKS.md (stage D, issue 9).

1. Scalar codec on Kodak (24 images, real files written and read back): for each lambda, USQ and
   TCQ, before and after stage D, and the control where present (the same extra steps, same
   learning-rate schedule, end-to-end with the training surrogate): bpp from the file sizes, PSNR,
   MS-SSIM, encode and decode times, and whether every decoded image equals the encoder's
   reconstruction bit for bit.
2. BD-rate (``bjontegaard`` through :mod:`rdvq.rd_curves`; Akima, PCHIP beside it) of TCQ against
   USQ before and after stage D, of every retrained curve against its original and against its
   control.
3. TCQ's Viterbi search: time per Kodak image (the search alone, and the whole encoder).
4. The Lagrangian of the encoder's rate-distortion decisions, in latent units: the training
   objective ``MSE + lambda * bpp`` implies ``lambda / g``, with ``g`` the synthesis gain (image
   MSE times pixels per unit of squared latent error, measured with small latent perturbations on
   the first 4 Kodak images). TCQ is evaluated (and stage D trains) at that Lagrangian
   (``--rdo-lambda``), and USQ beside plain rounding also with entropy-constrained rounding at its
   own ``lambda / g`` (USQ+RDO), so that TCQ's gain over USQ is not just the gain of RD decisions.
   ``--implied-lambda CKPT`` prints the value for one checkpoint (the commands in BENCHMARKS.md
   pass it to stage D).
5. VQ codec with entropy-constrained index selection (``--rdo-lambda``): PSNR before and after
   stage D on the same files (the encoder and entropy model are frozen, so the indices and file
   sizes are identical), and with nearest-codeword indices, which stage D did not train on.

Checkpoint folders under ``--runs`` are named ``{usq,tcq}_l<lambda>`` (end to end), ``..._d``
(stage D) and ``..._more`` (control), as the commands in BENCHMARKS.md create them. Run from the
repository root:

    python benchmarks/retraining.py --runs runs/bench/sq --vq-before runs/bench/hypervq/checkpoints/last.ckpt \
        --vq-after runs/bench/vq_stage_d/checkpoints/last.ckpt --vq-rdo-lambda 0.5 \
        --json benchmarks/results/retraining.json
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated")

import rdvq.codec.sq as sq_codec  # noqa: E402
from rdvq.codec import ImageCodec, container  # noqa: E402
from rdvq.encode_options import EncodeOptions  # noqa: E402
from rdvq.evaluation import evaluate  # noqa: E402
from rdvq.image_io import find_images, read_image  # noqa: E402
from rdvq.padding import pad_to_multiple  # noqa: E402
from rdvq.rd_curves import RDCurve, bd  # noqa: E402

GAIN_IMAGES = 4  # the first Kodak images, always these, so lambda / g is one number per model
RUN_NAME = re.compile(r"^(usq|tcq)_l([0-9.]+)(_d|_more)?$")
VARIANTS = {"": "original", "_d": "stage D", "_more": "control"}
METHODS = ("akima", "pchip")


@dataclass
class Point:
    quantizer: str
    lmbda: float
    variant: str
    path: Path
    summary: dict | None = None


def discover(runs: Path) -> list[Point]:
    points = []
    for folder in sorted(runs.iterdir()):
        match = RUN_NAME.match(folder.name)
        checkpoint = folder / "checkpoints" / "last.ckpt"
        if match and checkpoint.is_file():
            points.append(Point(match[1], float(match[2]), VARIANTS[match[3] or ""], checkpoint))
    return points


def kodak_images(kodak: Path, limit: int | None) -> list[tuple[str, torch.Tensor]]:
    paths = find_images(kodak)[:limit]
    return [(p.stem, read_image(p)) for p in paths]


def summarize(codec: ImageCodec, images, options: EncodeOptions, label: str) -> tuple[dict, list[bytes]]:
    """Mean rate and quality over real files, and the files' streams (to compare across decoders)."""
    with tempfile.TemporaryDirectory() as folder:
        result = evaluate(codec, images, options=options, files=folder, progress=label)
        streams = [b"".join(container.unpack(p.read_bytes()).streams) for p in sorted(Path(folder).glob("*.rdvq"))]
    mean = result.summary()
    summary = {k: mean[k] for k in ("bpp", "psnr", "ms_ssim", "ms_ssim_db", "encode_seconds", "decode_seconds")}
    summary["all_exact"] = result.all_exact
    summary["images"] = len(result.images)
    return summary, streams


def viterbi_seconds(codec: ImageCodec, images, options: EncodeOptions) -> dict:
    """Mean time per image of the Viterbi search alone and of the whole encoder (TCQ codecs)."""
    spent = []
    original = sq_codec.viterbi

    def timed(*args, **kwargs):
        start = time.perf_counter()
        out = original(*args, **kwargs)
        spent[-1] += time.perf_counter() - start
        return out

    sq_codec.viterbi = timed
    encode = []
    try:
        for _, image in tqdm(images, desc="viterbi timing", unit="image"):
            spent.append(0.0)
            start = time.perf_counter()
            codec.compress(image, options)
            encode.append(time.perf_counter() - start)
    finally:
        sq_codec.viterbi = original
    return {"viterbi_s": statistics.fmean(spent), "viterbi_max_s": max(spent), "encode_s": statistics.fmean(encode)}


def implied_lambda(codec: ImageCodec, lmbda: float, images) -> float:
    """The latent-domain Lagrangian the training objective implies: ``lambda / g``."""
    return lmbda / synthesis_gain(codec, images)


def recorded_lambda(path: Path) -> float:
    """The training lambda a scalar-codec checkpoint records."""
    from rdvq.checkpointing import read_checkpoint
    from rdvq.checkpointing import RD_POINT_KEY

    return float(read_checkpoint(path)[RD_POINT_KEY]["lmbda"])


@torch.no_grad()
def synthesis_gain(codec: ImageCodec, images, noise: float = 0.05) -> float:
    """Image MSE times pixels per unit of squared latent error, for small Gaussian latent errors."""
    latent = codec.latent
    gains = []
    generator = torch.Generator().manual_seed(0)
    for _, image in images[:GAIN_IMAGES]:
        padded = pad_to_multiple(image[None], latent.stride)
        symbols = latent.encode(latent.analyze(padded), EncodeOptions()).symbols
        z_hat = latent.hyper_latent(symbols[0])
        means, _ = latent.model.tiled_gaussians(z_hat)
        y_hat = means + symbols[1].to(means)
        error = torch.randn(y_hat.shape, generator=generator) * noise
        change = latent.model.g_s(y_hat + error) - latent.model.g_s(y_hat)
        gains.append(float(change.square().mean() * padded.shape[-2] * padded.shape[-1] / error.square().sum()))
    return statistics.fmean(gains)


def curve(points: list[Point], name: str) -> RDCurve:
    ordered = sorted(points, key=lambda p: p.summary["bpp"])
    return RDCurve(name, "", {"bpp": [p.summary["bpp"] for p in ordered], "psnr-rgb": [p.summary["psnr"] for p in ordered]})


def bd_rows(curves: dict[str, RDCurve], pairs: list[tuple[str, str]]) -> list[dict]:
    rows = []
    for test, anchor in pairs:
        if test in curves and anchor in curves:
            for method in METHODS:
                rows.append(bd(curves[test], curves[anchor], "psnr-rgb", method).row())
    return rows


def vq_section(args, images) -> dict:
    before, after = ImageCodec.from_checkpoint(args.vq_before), ImageCodec.from_checkpoint(args.vq_after)
    out = {"rdo_lambda": args.vq_rdo_lambda}
    for name, options in (("rdo", EncodeOptions(rdo_lambda=args.vq_rdo_lambda)), ("nearest", EncodeOptions())):
        first, streams_before = summarize(before, images, options, f"vq before ({name})")
        second, streams_after = summarize(after, images, options, f"vq stage D ({name})")
        out[name] = {"before": first, "after": second, "same_streams": streams_before == streams_after}
    return out


def markdown(results: dict, command: str) -> str:
    lines = [f"Command: `{command}`", ""]
    rows = results["points"]
    originals = {(r["quantizer"], r["lmbda"]): r for r in rows if r["variant"] == "original"}
    lines += ["| quantizer | lambda | model | --rdo-lambda | bpp | PSNR dB | MS-SSIM dB | vs original | enc s | dec s | bit-exact |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in sorted(rows, key=lambda r: (r["quantizer"], -r["lmbda"], list(VARIANTS.values()).index(r["variant"]))):
        base = originals.get((r["quantizer"], r["lmbda"]))
        delta = "" if base is None or r["variant"] == "original" else f"{r['psnr'] - base['psnr']:+.3f} dB at {r['bpp'] / base['bpp']:.4f}x bpp"
        rdo = "" if r["rdo_lambda"] is None else f"{r['rdo_lambda']:.4f}"
        lines.append(f"| {r['quantizer'].upper()} | {r['lmbda']:g} | {r['variant']} | {rdo} | {r['bpp']:.4f} | {r['psnr']:.3f} | "
                     f"{r['ms_ssim_db']:.3f} | {delta} | {r['encode_seconds']:.3f} | {r['decode_seconds']:.3f} | "
                     f"{'yes' if r['all_exact'] else 'NO'} |")
    lines += ["", "| test | anchor | interpolation | BD-rate | BD-PSNR | note |", "| --- | --- | --- | --- | --- | --- |"]
    for row in results["bd"]:
        rate = "n/a" if row["bd_rate_percent"] is None else f"{row['bd_rate_percent']:+.2f} %"
        psnr = "n/a" if row["bd_metric"] is None else f"{row['bd_metric']:+.3f} dB"
        lines.append(f"| {row['test']} | {row['anchor']} | {row['method']} | {rate} | {psnr} | {row['note']} |")
    if results.get("viterbi"):
        lines += ["", "| TCQ model | --rdo-lambda (lambda / g) | Viterbi s / image (mean, max) | whole encoder s / image |",
                  "| --- | --- | --- | --- |"]
        for name, v in results["viterbi"].items():
            lines.append(f"| {name} | {v['rdo_lambda']:.4f} | {v['viterbi_s']:.3f}, {v['viterbi_max_s']:.3f} | {v['encode_s']:.3f} |")
    if results.get("vq"):
        vq = results["vq"]
        lines += ["", "| VQ indices | model | bpp | PSNR dB | MS-SSIM dB | same files |", "| --- | --- | --- | --- | --- | --- |"]
        for name, label in (("rdo", f"--rdo-lambda {vq['rdo_lambda']:g}"), ("nearest", "nearest codeword")):
            for which in ("before", "after"):
                s = vq[name][which]
                lines.append(f"| {label} | {'original' if which == 'before' else 'stage D'} | {s['bpp']:.5f} | {s['psnr']:.3f} | "
                             f"{s['ms_ssim_db']:.3f} | {'yes' if vq[name]['same_streams'] else 'no'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/bench/sq"), help="folder of the scalar-codec runs")
    parser.add_argument("--kodak", type=Path, default=Path("../shared/datasets/kodak"))
    parser.add_argument("--limit", type=int, default=None, help="first N Kodak images only (quick checks)")
    parser.add_argument("--vq-before", help="VQ checkpoint before stage D (stage B or C)")
    parser.add_argument("--vq-after", help="its stage D checkpoint")
    parser.add_argument("--vq-rdo-lambda", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--implied-lambda", type=Path, metavar="CKPT", help="only print lambda / g of this checkpoint")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.kodak.is_dir():
        raise SystemExit(f"Kodak folder not found: {args.kodak}")
    gain_images = kodak_images(args.kodak, GAIN_IMAGES)
    if args.implied_lambda is not None:
        codec = ImageCodec.from_checkpoint(args.implied_lambda)
        print(f"{implied_lambda(codec, recorded_lambda(args.implied_lambda), gain_images):.6f}")
        return
    images = kodak_images(args.kodak, args.limit)
    points = discover(args.runs)
    results: dict = {"images": len(images), "points": [], "bd": [], "viterbi": {}}
    # Every point of one (quantizer, lambda) is coded at the Lagrangian its original implies.
    lagrangians = {(p.quantizer, p.lmbda): implied_lambda(ImageCodec.from_checkpoint(p.path), p.lmbda, gain_images)
                   for p in points if p.variant == "original"}
    for point in list(points):
        codec = ImageCodec.from_checkpoint(point.path)
        rdo = lagrangians[(point.quantizer, point.lmbda)]
        runs = [(point, EncodeOptions(rdo_lambda=rdo) if point.quantizer == "tcq" else EncodeOptions())]
        if point.quantizer == "usq" and point.variant == "original":
            extra = Point("usq+rdo", point.lmbda, point.variant, point.path)
            points.append(extra)
            runs.append((extra, EncodeOptions(rdo_lambda=rdo)))
        for target, options in runs:
            target.summary, _ = summarize(codec, images, options, f"{target.quantizer} {target.lmbda:g} {target.variant}")
            results["points"].append({"quantizer": target.quantizer, "lmbda": target.lmbda, "variant": target.variant,
                                      "rdo_lambda": options.rdo_lambda, "checkpoint": str(target.path), **target.summary})
        if point.quantizer == "tcq" and point.variant == "original":
            timing = viterbi_seconds(codec, images, EncodeOptions(rdo_lambda=rdo))
            timing["rdo_lambda"] = rdo
            results["viterbi"][f"TCQ lambda {point.lmbda:g}"] = timing
    curves = {}
    for quantizer in ("usq", "usq+rdo", "tcq"):
        for variant in VARIANTS.values():
            chosen = [p for p in points if p.quantizer == quantizer and p.variant == variant]
            if chosen:
                curves[f"{quantizer.upper()} {variant}"] = curve(chosen, f"{quantizer.upper()} {variant}")
    pairs = [("TCQ original", "USQ original"), ("TCQ original", "USQ+RDO original"), ("USQ+RDO original", "USQ original"),
             ("TCQ stage D", "USQ stage D")]
    for quantizer in ("USQ", "TCQ"):
        pairs += [(f"{quantizer} stage D", f"{quantizer} original"), (f"{quantizer} control", f"{quantizer} original"),
                  (f"{quantizer} stage D", f"{quantizer} control")]
    results["bd"] = bd_rows(curves, pairs)
    if args.vq_before and args.vq_after:
        results["vq"] = vq_section(args, images)
    print(markdown(results, "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
