"""``make quickstart``: stage A then stage B on the bundled photographs, then a real file round trip;
then RDVQ's path on the same tokenizer: a masked-transformer stage B, a joint rate-distortion
stage C, and test-time rate control (one image at two slice counts, both decoded from the files).

Everything lands in a fresh ``runs/quickstart-<time>/`` so nothing earlier is overwritten.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

from callbacks import ReconstructionLogger
from rdvq.app.training import run_training_cli
from rdvq.codec import ImageCodec
from rdvq.encode_options import EncodeOptions
from rdvq.errors import RdvqError
from rdvq.evaluation import PerceptualMetrics, evaluate
from rdvq.image_io import write_png
from rdvq.sample_photos import sample_photo_paths

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def _metric(cli, name: str) -> float:
    value = cli.trainer.callback_metrics.get(name)
    return float("nan") if value is None else float(value)


def _quality(value: float | None) -> str:
    return "unavailable (weights not installed)" if value is None else f"{value:.4f}"


def _fit(config: str, root: Path, *extra: str):
    return run_training_cli(
        ["fit", "--config", str(EXPERIMENTS / config), "--trainer.default_root_dir", str(root), *extra]
    )


def main() -> int:
    warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated")
    root = Path("runs") / time.strftime("quickstart-%Y%m%d-%H%M%S")
    started = time.perf_counter()
    print(f"== stage A: tokenizer pretraining ({EXPERIMENTS / 'quickstart.yaml'}) -> {root / 'tokenizer'}", flush=True)
    stage_a = _fit("quickstart.yaml", root / "tokenizer")
    tokenizer_ckpt = root / "tokenizer" / "checkpoints" / "last.ckpt"
    reconstructions = next(c for c in stage_a.trainer.callbacks if isinstance(c, ReconstructionLogger)).last_paths
    summary = [
        "stage A (tokenizer)",
        f"  checkpoint          {tokenizer_ckpt}",
        f"  reconstructions     {reconstructions[0].parent if reconstructions else 'none'}",
        f"  validation PSNR     {_metric(stage_a, 'val/psnr'):.2f} dB",
        f"  codebook usage      {100 * _metric(stage_a, 'val/usage'):.1f} % (validation set)",
    ]

    print(f"\n== stage B: rate adaptation (HyperVQ) -> {root / 'rate'}", flush=True)
    stage_b = _fit("quickstart_rate.yaml", root / "rate", "--model.init_from", str(tokenizer_ckpt))
    codec_ckpt = root / "rate" / "checkpoints" / "last.ckpt"
    summary += [
        "stage B (HyperVQ entropy model)",
        f"  checkpoint          {codec_ckpt}",
        f"  validation bpp      {_metric(stage_b, 'val/bpp_real'):.4f} real, {_metric(stage_b, 'val/bpp_estimated'):.4f} estimated",
    ]

    image_path = sample_photo_paths("val")[0]
    codec = ImageCodec.from_checkpoint(codec_ckpt)
    metrics = PerceptualMetrics.installed(fid_patch=None, lpips_vgg=False)  # one image: no FID
    result = evaluate(codec, [(image_path.stem, image_path)], files=root, estimate=True, metrics=metrics).images[0]
    decoded_png = root / f"{image_path.stem}_decoded.png"
    write_png(decoded_png, codec.decompress((root / f"{image_path.stem}.rdvq").read_bytes()))
    summary += [
        f"codec round trip on {image_path.name} ({result.width}x{result.height})",
        f"  file                {root / (image_path.stem + '.rdvq')} ({result.bytes} bytes)",
        f"  decoded image       {decoded_png}",
        f"  real bpp            {result.bpp:.4f}",
        f"  estimated bpp       {result.estimated_bpp:.4f} (file is {100 * (result.bpp / result.estimated_bpp - 1):+.2f} %)",
        f"  PSNR                {result.psnr:.2f} dB",
        f"  LPIPS-Alex, DISTS   {_quality(result.lpips)}, {_quality(result.dists)} (lower is better)",
        f"  decoder == encoder  {result.exact}",
    ]

    print(f"\n== stage B: rate adaptation (masked transformer) -> {root / 'transformer'}", flush=True)
    stage_b_transformer = _fit("quickstart_transformer.yaml", root / "transformer", "--model.init_from", str(tokenizer_ckpt))
    summary += [
        "stage B (masked-transformer entropy model)",
        f"  checkpoint          {root / 'transformer' / 'checkpoints' / 'last.ckpt'}",
        f"  validation bpp      {_metric(stage_b_transformer, 'val/bpp_real'):.4f} real, "
        f"{_metric(stage_b_transformer, 'val/bpp_estimated'):.4f} estimated",
    ]
    print(f"\n== stage C: joint rate-distortion fine-tuning -> {root / 'joint_rd'}", flush=True)
    stage_c = _fit("quickstart_joint_rd.yaml", root / "joint_rd", "--model.init_from", str(root / "transformer" / "checkpoints" / "last.ckpt"))
    joint_ckpt = root / "joint_rd" / "checkpoints" / "last.ckpt"
    joint = ImageCodec.from_checkpoint(joint_ckpt)
    count = joint.latent.entropy_model.num_slices
    summary += [
        "stage C (joint RD, transformer entropy model)",
        f"  checkpoint          {joint_ckpt}",
        f"  validation          {_metric(stage_c, 'val/bpp_real'):.4f} bpp real, {_metric(stage_c, 'val/psnr'):.2f} dB",
        f"rate control on {image_path.name}: the first T of {count} slices coded, the rest completed (argmax)",
    ]
    exact = result.exact
    for sent in (count, count // 2):
        files = root / f"slices{sent}"
        files.mkdir()
        controlled = evaluate(joint, [(image_path.stem, image_path)], options=EncodeOptions(slices=sent), files=files,
                              metrics=metrics).images[0]
        exact = exact and controlled.exact
        summary.append(
            f"  T = {sent:2d}              {controlled.bpp:.4f} bpp, {controlled.psnr:.2f} dB, LPIPS-Alex "
            f"{_quality(controlled.lpips)}, DISTS {_quality(controlled.dists)}, decoder == encoder {controlled.exact} "
            f"({files / (image_path.stem + '.rdvq')})"
        )
    summary.append(f"total time            {time.perf_counter() - started:.0f} s")
    print("\n" + "\n".join(summary))
    return 0 if exact else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RdvqError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
