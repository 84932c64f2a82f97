"""Stage A recipes for the quickstart, compared on what `make quickstart` shows: each tokenizer's
reconstruction PSNR on the three held-out bundled photographs (whole images, cropped to a multiple of
the tokenizer's stride), without entropy coding, which is lossless for the indices.

    python benchmarks/quickstart_recipes.py runs/qs2/base_s1 runs/qs2/dim8_s1 ...

Each argument is a stage A run folder (``checkpoints/last.ckpt`` inside it). One run per recipe is
not enough at this budget: seeds move astronaut by more than 1 dB, so BENCHMARKS.md lists seeds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from rdvq.checkpointing import load_strict, read_checkpoint, read_codec_description
from rdvq.codec.vq import TOKENIZER_PREFIX
from rdvq.image_io import read_image
from rdvq.metrics import psnr
from rdvq.sample_photos import sample_photo_paths
from rdvq.tokenizer import Tokenizer
from rdvq.tokenizer.config import TokenizerConfig


def stage_a_tokenizer(path: Path) -> Tokenizer:
    checkpoint = read_checkpoint(path)
    description = read_codec_description(checkpoint, str(path))
    tokenizer = Tokenizer(TokenizerConfig.from_dict(description["tokenizer"]))
    load_strict(tokenizer, checkpoint["state_dict"], TOKENIZER_PREFIX, str(path))
    return tokenizer.eval()


def reconstruction_psnr(tokenizer: Tokenizer, image: torch.Tensor) -> float:
    stride = tokenizer.stride
    x = image[None, :, : image.shape[-2] // stride * stride, : image.shape[-1] // stride * stride]
    with torch.inference_mode():
        y, _ = tokenizer(x)
    return float(psnr(y.clamp(0, 1), x))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    photos = [(p.stem, read_image(p)) for p in sample_photo_paths("val")]
    print("| run | " + " | ".join(name for name, _ in photos) + " |")
    print("| --- |" + " --- |" * len(photos))
    for run in args.runs:
        tokenizer = stage_a_tokenizer(run / "checkpoints" / "last.ckpt")
        cells = [f"{reconstruction_psnr(tokenizer, image):.2f}" for _, image in photos]
        print(f"| {run} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
