"""Stage A recipes for the quickstart, compared on what `make quickstart` shows: each tokenizer's
reconstruction PSNR on the three held-out bundled photographs (whole images, padded to the
tokenizer's stride as the codec pads them), without entropy coding, which is lossless for the indices.
The chroma PSNR beside it (Cb and Cr of BT.601, on the 8-bit pictures) is what a colour cast lowers.

    python benchmarks/quickstart_recipes.py runs/qs2/base_s1 runs/qs2/dim8_s1 ...

Each argument is a stage A run folder (``checkpoints/last.ckpt`` inside it). One run per recipe is
not enough at this budget: seeds move astronaut by more than 1 dB, so BENCHMARKS.md lists seeds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from skimage.color import rgb2ycbcr
from torchmetrics.functional.image import peak_signal_noise_ratio

from rdvq.checkpointing import load_strict, read_checkpoint, read_codec_description
from rdvq.codec.vq import VQCodec
from rdvq.image_io import read_image
from rdvq.metrics import psnr
from rdvq.padding import pad_to_multiple
from rdvq.sample_photos import sample_photo_paths
from rdvq.tokenizer import Tokenizer


def stage_a_tokenizer(path: Path) -> Tokenizer:
    checkpoint = read_checkpoint(path)
    codec = VQCodec.from_description(read_codec_description(checkpoint, str(path)), str(path), coding_only=False)
    load_strict(codec.tokenizer, checkpoint["state_dict"], "codec.tokenizer.", str(path))
    return codec.tokenizer.eval()


def reconstruct(tokenizer: Tokenizer, image: torch.Tensor) -> torch.Tensor:
    height, width = image.shape[-2:]
    with torch.inference_mode():
        y, _ = tokenizer(pad_to_multiple(image[None], tokenizer.stride))
    return y[0, :, :height, :width].clamp(0, 1)


def chroma_psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """PSNR of the Cb and Cr channels together (BT.601, 8-bit pictures, peak 255)."""
    def chroma(image: torch.Tensor) -> torch.Tensor:
        rgb8 = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        return torch.from_numpy(rgb2ycbcr(rgb8)[..., 1:])
    return float(peak_signal_noise_ratio(chroma(x), chroma(y), data_range=255.0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    photos = [(p.stem, read_image(p)) for p in sample_photo_paths("val")]
    print("| run | " + " | ".join(f"{name} PSNR / chroma PSNR" for name, _ in photos) + " |")
    print("| --- |" + " --- |" * len(photos))
    for run in args.runs:
        tokenizer = stage_a_tokenizer(run / "checkpoints" / "last.ckpt")
        cells = []
        for _, image in photos:
            decoded = reconstruct(tokenizer, image)
            cells.append(f"{float(psnr(decoded[None], image[None])):.2f} / {chroma_psnr(decoded, image):.2f}")
        print(f"| {run} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
