"""Does perceptual and adversarial training pay on the benchmark tokenizer? (issue 24, item 5)

Trains the benchmark tokenizer (``experiments/bench_tokenizer.yaml``: single-scale /16, 1024 x 32
codebook, photos-train, 1000 steps) once per recipe, same steps, seed and data, then evaluates every
recipe on Kodak from real files with the same uniform index coding (log2 K bits per index, so
every recipe has exactly the same bpp): PSNR, MS-SSIM, LPIPS-Alex, DISTS, and FID / KID on patches
(``--fid-patch``: 256 by default, HiFiC's size, 192 patches from Kodak; 64, the Kodak protocol of GLC
and CoD-Lite, gives 4152 but costs about 45 minutes of Inception on this CPU). LPIPS-VGG is left
out of the evaluation: it costs about 5 s per Kodak image here and is the loss of one recipe.

Recipes (``--recipes``): ``mse``; ``lpips_alex`` (MSE + 1.0 LPIPS-Alex, the CPU-priced option);
``lpips_vgg`` (MSE + 1.0 LPIPS-VGG, RDVQ's); ``lpips_alex_gan`` (MSE + LPIPS-Alex + 0.1 hinge PatchGAN
from step 500). Run from the repository root; trained runs are kept under ``--runs`` and reused:

    python benchmarks/perceptual_training.py --runs runs/bench/perceptual --json benchmarks/results/perceptual_training.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from provenance import provenance  # noqa: E402

RECIPES: dict[str, list[str]] = {
    "mse": [],
    "lpips_alex": ["--model.init_args.distortion.perceptual_weight", "1.0",
                   "--model.init_args.distortion.perceptual_net", "alex"],
    "lpips_vgg": ["--model.init_args.distortion.perceptual_weight", "1.0",
                  "--model.init_args.distortion.perceptual_net", "vgg"],
    "lpips_alex_gan": ["--model.init_args.distortion.perceptual_weight", "1.0",
                       "--model.init_args.distortion.perceptual_net", "alex",
                       "--model.init_args.adversarial.weight", "0.1", "--model.init_args.adversarial.start_step", "500",
                       "--model.init_args.adversarial.base_channels", "32"],
}
KODAK = ROOT.parent / "shared" / "datasets" / "kodak"


def train(recipe: str, runs: Path) -> tuple[Path, float | None]:
    """The recipe's stage A checkpoint (trained unless it exists) and its training time."""
    from rdvq.app.training import run_training_cli

    folder = runs / recipe
    checkpoint = folder / "checkpoints" / "last.ckpt"
    if checkpoint.is_file():
        return checkpoint, None
    start = time.perf_counter()
    run_training_cli(["fit", "--config", str(ROOT / "experiments" / "bench_tokenizer.yaml"),
                      "--trainer.default_root_dir", str(folder), "--trainer.enable_progress_bar", "false", *RECIPES[recipe]])
    return checkpoint, time.perf_counter() - start


def evaluate_recipe(checkpoint: Path, images: list, metrics, files: Path) -> dict:
    from rdvq.checkpointing import load_strict, read_checkpoint, read_codec_description
    from rdvq.codec import ImageCodec, VQCodec
    from rdvq.entropy import UniformConfig
    from rdvq.evaluation import evaluate

    stored = read_checkpoint(checkpoint)
    description = {**read_codec_description(stored, str(checkpoint)), "entropy_model": UniformConfig().to_dict()}
    codec = VQCodec.from_description(description, str(checkpoint), coding_only=True)
    load_strict(codec.tokenizer, stored["state_dict"], "codec.tokenizer.", str(checkpoint))
    result = evaluate(ImageCodec(codec), images, metrics=metrics, files=files, progress=checkpoint.parent.parent.name)
    return {**result.summary(), "all_exact": result.all_exact}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench" / "perceptual")
    parser.add_argument("--recipes", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    parser.add_argument("--images", type=Path, default=KODAK)
    parser.add_argument("--fid-patch", type=int, default=256)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()

    from rdvq.evaluation import PerceptualMetrics
    from rdvq.image_io import find_images

    trained = {recipe: train(recipe, args.runs) for recipe in args.recipes}
    images = [(p.stem, p) for p in find_images(args.images)]
    metrics = PerceptualMetrics.installed(fid_patch=args.fid_patch, lpips_vgg=False)  # VGG: 5 s an image here
    rows = {}
    for recipe, (checkpoint, seconds) in trained.items():
        rows[recipe] = {**evaluate_recipe(checkpoint, images, metrics, args.runs / recipe / "kodak_files"),
                        "train_seconds": seconds, "checkpoint": str(checkpoint)}
    document = {"provenance": provenance(),
                "metrics": metrics.describe(), "images": str(args.images), "recipes": {r: RECIPES[r] for r in rows},
                "results": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=1) + "\n")
    keys = ("bpp", "psnr", "ms_ssim_db", "lpips", "lpips_vgg", "dists", "fid", "kid")
    print("| recipe | " + " | ".join(keys) + " |")
    for recipe, row in rows.items():
        print(f"| {recipe} | " + " | ".join("n/a" if row[k] is None else f"{row[k]:.4f}" for k in keys) + " |")


if __name__ == "__main__":
    main()
