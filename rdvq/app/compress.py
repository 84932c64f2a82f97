"""``rdvq compress`` and ``rdvq decompress``: files in, files out, one line per file.

Both print the bpp (whole file size, header included, over the original pixels) and the time
taken. Every failure is one line on stderr and a non-zero exit; an output that already exists is
never overwritten without ``--force``, and a failed write leaves nothing behind.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rdvq.atomic import atomic_write_bytes
from rdvq.codec.image_codec import DEFAULT_MAX_PIXELS, ImageCodec
from rdvq.coding.engine import ENGINES
from rdvq.encode_options import EncodeOptions
from rdvq.errors import ConfigError, RdvqError
from rdvq.image_io import read_image, write_png

SUFFIX = ".rdvq"


def _parser(command: str) -> argparse.ArgumentParser:
    compress = command == "compress"
    parser = argparse.ArgumentParser(
        prog=f"rdvq {command}",
        description="compress images into .rdvq files" if compress else "decompress .rdvq files into PNG images",
    )
    parser.add_argument("inputs", nargs="+", metavar="IMAGE" if compress else "FILE")
    parser.add_argument("--ckpt", required=True, help="stage B (or later) checkpoint with an entropy model")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("-o", "--output", help="output file (only with a single input)")
    target.add_argument("--out-dir", help="directory for the outputs (default: next to each input)")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    parser.add_argument("--engine", choices=ENGINES, default="auto", help="probability engine (auto: Triton for CUDA tensors, numba on the CPU)")
    parser.add_argument("--device", default="cpu", help="torch device for the networks (default: cpu)")
    if compress:
        EncodeOptions.add_arguments(parser)
        parser.add_argument(
            "--recon-dir", help="also write the encoder's reconstruction as <name>.png here (what decompress must produce)"
        )
    else:
        parser.add_argument(
            "--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
            help=f"refuse files that declare a larger image (default {DEFAULT_MAX_PIXELS})",
        )
    return parser


def _outputs(inputs: list[str], output: str | None, out_dir: str | None, suffix: str, *, flag: str = "--out-dir") -> list[Path]:
    if output is not None:
        if len(inputs) != 1:
            raise ConfigError("-o/--output takes a single input; use --out-dir for several")
        return [Path(output)]
    names = [Path(p).with_suffix(suffix).name for p in inputs]
    if len(set(names)) != len(names) and out_dir is not None:
        raise ConfigError(f"several inputs share a file name; their outputs would collide in {flag}")
    return [Path(out_dir) / n if out_dir else Path(p).with_suffix(suffix) for p, n in zip(inputs, names)]


def _check_free(paths: list[Path], force: bool) -> None:
    for path in paths:
        if path.exists() and not force:
            raise ConfigError(f"{path} exists (use --force to overwrite)")


def run(command: str, argv: list[str]) -> int:
    args = _parser(command).parse_args(argv)
    compress = command == "compress"
    outputs = _outputs(args.inputs, args.output, args.out_dir, SUFFIX if compress else ".png")
    # The encoder's reconstructions are outputs too: the same rules, checked before any work.
    recon_dir = args.recon_dir if compress else None
    recons = _outputs(args.inputs, None, recon_dir, ".png", flag="--recon-dir") if recon_dir is not None else []
    clash = {p.resolve() for p in outputs} & {p.resolve() for p in recons}
    if clash:
        raise ConfigError(f"{sorted(clash)[0]} would be both an output and a reconstruction (--recon-dir)")
    _check_free(outputs + recons, args.force)
    options = EncodeOptions.from_arguments(args) if compress else None
    codec = ImageCodec.from_checkpoint(args.ckpt, engine=args.engine, device=args.device)
    failures = 0
    for index, (source, target) in enumerate(zip(args.inputs, outputs)):
        start = time.perf_counter()
        try:
            if compress:
                image = read_image(source)
                encoded = codec.encode(image, options, reconstruct=bool(recons), estimate=False)
                atomic_write_bytes(target, encoded.data)
                if recons:
                    write_png(recons[index], encoded.reconstruction)
                height, width, size = encoded.height, encoded.width, len(encoded.data)
            else:
                data = Path(source).read_bytes()
                image = codec.decompress(data, max_pixels=args.max_pixels)
                write_png(target, image)
                height, width = image.shape[-2:]
                size = len(data)
        except (RdvqError, OSError) as exc:
            failures += 1
            print(f"error: {source}: {exc}", file=sys.stderr)
            continue
        seconds = time.perf_counter() - start
        print(f"{source} -> {target}  {size * 8 / (height * width):.4f} bpp  {size} bytes  {seconds:.3f} s")
    return 1 if failures else 0
