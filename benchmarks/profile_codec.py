"""Where the time goes: the HyperVQ entropy stage and the whole codec, part by part, per Kodak image.

Times every part of the codec path by wrapping it (wall time, summed over the images, so nested
parts are reported as self time of their parent where noted): the tokenizer's analysis and
quantization, the entropy model's hyper-analysis and hyper-synthesis, side-information coding,
probability tables, the range coder, the container, and the tokenizer's synthesis. Each engine
given is profiled on the same images and files, so ``--engines torch numba`` is the before / after
of the probability engine (the torch reference is what every entropy model ran before the fused
CPU kernel). Bytes are checked equal across engines.

    python benchmarks/profile_codec.py --ckpt runs/bench/hypervq/checkpoints/last.ckpt --engines torch numba
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from rdvq.codec import ImageCodec
from rdvq.coding import IndexDecoder, IndexEncoder, ProbabilityEngine
from rdvq.hyper import bottleneck
from rdvq.image_io import find_images, read_image

ENTROPY_PARTS = ("hyper-analysis", "hyper-synthesis", "side information", "probability tables", "range coder", "rest")
CODEC_PARTS = ("tokenizer analysis", "quantization", "entropy stage", "tokenizer synthesis", "rest")


class Stopwatch:
    """Accumulates the wall time of wrapped callables under labels; ``undo`` restores them."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = defaultdict(float)
        self._undo: list[Callable[[], None]] = []

    def wrap(self, owner: object, name: str, label: str) -> None:
        original = getattr(owner, name)
        own = name in vars(owner)  # else it shadows a class attribute, and undoing deletes it

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.spent[label] += time.perf_counter() - start

        setattr(owner, name, timed)
        self._undo.append(lambda: setattr(owner, name, original) if own else delattr(owner, name))

    def undo(self) -> None:
        while self._undo:
            self._undo.pop()()


def _wrap_codec(watch: Stopwatch, codec: ImageCodec) -> None:
    latent = codec.latent
    tokenizer, model = latent.tokenizer, latent.entropy_model
    watch.wrap(tokenizer, "encode", "tokenizer analysis")
    watch.wrap(tokenizer, "quantize", "quantization")
    watch.wrap(tokenizer, "decode_indices", "tokenizer synthesis")
    watch.wrap(latent, "encode", "entropy stage (encoder)")
    watch.wrap(latent, "decode", "entropy stage (decoder)")
    for prior in getattr(model, "priors", []):
        watch.wrap(prior.analysis, "forward", "hyper-analysis")
        watch.wrap(prior, "gaussian", "hyper-synthesis")
    watch.wrap(bottleneck, "encode_hyper", "side information")
    watch.wrap(bottleneck, "decode_hyper", "side information")
    for name in ("encode_gaussian", "decode_gaussian", "encode_logits", "decode_logits"):
        watch.wrap(ProbabilityEngine, name, "engine (tables + coder)")
    for name in ("encode", "encode_intervals"):
        watch.wrap(IndexEncoder, name, "range coder")
    for name in ("decode", "decode_rows"):
        watch.wrap(IndexDecoder, name, "range coder")


def profile(codec: ImageCodec, images: list[torch.Tensor]) -> tuple[dict, dict, list[bytes]]:
    """Per-image mean milliseconds of the encoder's and the decoder's parts, and the files."""
    results, files = {}, []
    for side in ("encoder", "decoder"):
        watch = Stopwatch()
        _wrap_codec(watch, codec)
        total = 0.0
        for i, image in enumerate(images):
            start = time.perf_counter()
            if side == "encoder":
                files.append(codec.compress(image))
            else:
                codec.decompress(files[i])
            total += time.perf_counter() - start
        watch.undo()
        spent = {k: 1e3 * v / len(images) for k, v in watch.spent.items()}
        spent["total"] = 1e3 * total / len(images)
        results[side] = spent
    return _parts(results["encoder"], "encoder"), _parts(results["decoder"], "decoder"), files


def _parts(spent: dict[str, float], side: str) -> dict:
    entropy = spent.get(f"entropy stage ({side})", 0.0)
    engine = spent.get("engine (tables + coder)", 0.0)
    coder = spent.get("range coder", 0.0)
    hyper = spent.get("hyper-analysis", 0.0) + spent.get("hyper-synthesis", 0.0) + spent.get("side information", 0.0)
    entropy_parts = {
        "hyper-analysis": spent.get("hyper-analysis", 0.0),
        "hyper-synthesis": spent.get("hyper-synthesis", 0.0),
        "side information": spent.get("side information", 0.0),
        "probability tables": engine - coder,
        "range coder": coder,
    }
    entropy_parts["rest"] = entropy - hyper - engine
    codec_parts = {
        "tokenizer analysis": spent.get("tokenizer analysis", 0.0),
        "quantization": spent.get("quantization", 0.0),
        "entropy stage": entropy,
        "tokenizer synthesis": spent.get("tokenizer synthesis", 0.0),
    }
    codec_parts["rest"] = spent["total"] - sum(codec_parts.values())
    return {"entropy": entropy_parts, "entropy_total": entropy, "codec": codec_parts, "codec_total": spent["total"]}


def markdown(results: dict, command: str) -> str:
    lines = [f"Command: `{command}`", "", f"{results['images']} Kodak images, {results['threads']} threads; mean ms per image.", ""]
    for side in ("encoder", "decoder"):
        lines += [f"HyperVQ entropy stage, {side}:", "", "| engine | " + " | ".join(ENTROPY_PARTS) + " | total |",
                  "| --- |" + " --- |" * (len(ENTROPY_PARTS) + 1)]
        for engine, r in results["engines"].items():
            parts = r[side]["entropy"]
            cells = [f"{parts[p]:.1f} ({100 * parts[p] / r[side]['entropy_total']:.0f} %)" for p in ENTROPY_PARTS]
            lines.append(f"| {engine} | " + " | ".join(cells) + f" | {r[side]['entropy_total']:.1f} |")
        lines += ["", f"Whole codec, {side}:", "", "| engine | " + " | ".join(CODEC_PARTS) + " | total |",
                  "| --- |" + " --- |" * (len(CODEC_PARTS) + 1)]
        for engine, r in results["engines"].items():
            parts = r[side]["codec"]
            cells = [f"{parts[p]:.1f} ({100 * parts[p] / r[side]['codec_total']:.0f} %)" for p in CODEC_PARTS]
            lines.append(f"| {engine} | " + " | ".join(cells) + f" | {r[side]['codec_total']:.1f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default="runs/bench/hypervq/checkpoints/last.ckpt", help="a HyperVQ checkpoint")
    parser.add_argument("--kodak", default="../shared/datasets/kodak")
    parser.add_argument("--engines", nargs="+", default=["torch", "numba"], choices=["torch", "numba", "triton"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    if not Path(args.ckpt).is_file():
        raise SystemExit(f"missing {args.ckpt}: train it first (see BENCHMARKS.md)")
    images = [read_image(p) for p in find_images(args.kodak)]
    if not images:
        raise SystemExit(f"no images in {args.kodak}")
    results: dict = {"images": len(images), "threads": args.threads, "engines": {}}
    reference: list[bytes] | None = None
    for engine in tqdm(args.engines, desc="engines"):
        codec = ImageCodec.from_checkpoint(args.ckpt, engine=engine)
        profile(codec, images[:2])  # warm-up: kernels compiled or loaded, caches filled
        encoder, decoder, files = profile(codec, images)
        if reference is not None and files != reference:
            raise SystemExit(f"engine {engine} wrote other bytes than {args.engines[0]}")
        reference = files
        results["engines"][engine] = {"encoder": encoder, "decoder": decoder}
    print(markdown(results, "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
