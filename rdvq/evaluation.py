"""Rate-distortion evaluation on real files: the one implementation every caller uses.

For each image: encode to bytes (timed), optionally write the file and read it back, decode
(timed), and check that the decoded image equals the encoder's own reconstruction bit for bit.
Rates come from the file sizes (header included) over the original pixels; quality metrics follow
the field's conventions (:mod:`rdvq.metrics`: PSNR and MS-SSIM on 8-bit RGB, MS-SSIM also in dB,
LPIPS-alex and DISTS where their weights are on disk). A metric that cannot be computed is ``None`` in the
results ("unavailable"), never an invented number.

Stage validation, quickstart, the benchmarks and ``rdvq eval`` all go through :func:`evaluate`, and
all aggregate its rows with :func:`summarize`.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from rdvq.atomic import atomic_write_bytes
from rdvq.codec import Encoded, ImageCodec
from rdvq.encode_options import EncodeOptions
from rdvq.image_io import read_image
from rdvq.losses import lpips_available
from rdvq.metrics import DISTSMetric, LPIPSMetric, dists_available, ms_ssim, ms_ssim_db, psnr

ImageSource = tuple[str, "torch.Tensor | str | os.PathLike"]


@dataclass
class ImageResult:
    name: str
    height: int
    width: int
    bytes: int
    bpp: float  # whole file, over the original pixels
    psnr: float
    ms_ssim: float | None  # None: image too small for five scales
    ms_ssim_db: float | None
    lpips: float | None  # None: LPIPS-alex weights not on disk
    dists: float | None  # None: DISTS' VGG16 weights not on disk
    encode_seconds: float
    decode_seconds: float
    exact: bool  # decoded image == the encoder's reconstruction, bit for bit
    estimated_bpp: float | None = None  # the model's own estimate, when asked for


def gather(items: list) -> list:
    """Every rank's items, rank after rank, under DDP (the list itself without a process group)."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return items
    parts: list[list] = [[] for _ in range(dist.get_world_size())]
    dist.all_gather_object(parts, items)
    return [item for part in parts for item in part]


def _mean(results: Sequence[ImageResult], name: str) -> float | None:
    values = [getattr(r, name) for r in results]
    return None if any(v is None for v in values) else statistics.fmean(values)


def summarize(results: Sequence[ImageResult]) -> dict[str, float | None]:
    """The set's numbers, one definition for every caller: the mean of each per-image number (None
    where any image lacks it), MS-SSIM in dB *of the mean* MS-SSIM (CompressAI's and the field's
    convention for curves), the gap of the real rate over the model's estimate in percent, whether
    every image decoded bit-exactly (1.0 or 0.0) and the image count."""
    summary = {
        name: _mean(results, name)
        for name in ("bpp", "estimated_bpp", "psnr", "ms_ssim", "lpips", "dists", "encode_seconds", "decode_seconds")
    }
    quality, bpp, estimated = summary["ms_ssim"], summary["bpp"], summary["estimated_bpp"]
    summary["ms_ssim_db"] = None if quality is None else float(ms_ssim_db(torch.tensor(quality, dtype=torch.float64)))
    summary["bpp_gap_percent"] = 100.0 * (bpp / estimated - 1.0) if estimated else None
    summary["bit_exact"] = float(all(r.exact for r in results))
    summary["images"] = float(len(results))
    return summary


@dataclass
class Evaluation:
    images: list[ImageResult] = field(default_factory=list)

    @property
    def all_exact(self) -> bool:
        return all(r.exact for r in self.images)

    def summary(self) -> dict[str, float | None]:
        return summarize(self.images)

    def rows(self) -> list[dict]:
        return [asdict(r) for r in self.images]


def lpips_metric() -> LPIPSMetric | None:
    """LPIPS-alex when its backbone weights are on disk, else None (reported as unavailable)."""
    return LPIPSMetric() if lpips_available("alex") else None


def dists_metric() -> DISTSMetric | None:
    """DISTS when its VGG16 backbone weights are on disk, else None (reported as unavailable)."""
    return DISTSMetric() if dists_available() else None


def _optional(value: torch.Tensor) -> float | None:
    number = float(value)
    return None if math.isnan(number) else number


@torch.no_grad()
def evaluate(
    codec: ImageCodec,
    images: Iterable[ImageSource],
    *,
    options: EncodeOptions = EncodeOptions(),
    lpips: LPIPSMetric | None = None,
    dists: DISTSMetric | None = None,
    files: str | os.PathLike | None = None,
    estimate: bool = False,
    progress: str | None = None,
    observe: Callable[[Encoded, torch.Tensor], None] | None = None,
) -> Evaluation:
    """Evaluate ``codec`` on ``(name, image or path)`` pairs.

    ``files``: write each compressed file there as ``<name>.rdvq``, take the rate from its size on
    disk and decode what was read back. ``estimate``: also record the model's estimated bpp.
    ``progress``: a progress-bar label (no bar when None). ``observe``: called with each image's
    encoding (its symbols) and the decoded image, for callers that keep more than the numbers.
    """
    sources: Sequence[ImageSource] = list(images)
    result = Evaluation()
    for name, source in tqdm(sources, desc=progress, disable=progress is None, unit="image"):
        image = source if isinstance(source, torch.Tensor) else read_image(source)
        height, width = image.shape[-2:]
        pixels = height * width
        start = time.perf_counter()
        analysis = codec.analyze(image)
        encoded = codec.pack(analysis, height, width, options)
        encode_seconds = time.perf_counter() - start
        data = encoded.data
        if files is not None:
            path = Path(files) / f"{name}.rdvq"
            atomic_write_bytes(path, data)
            data = path.read_bytes()
        start = time.perf_counter()
        decoded = codec.decompress(data)
        decode_seconds = time.perf_counter() - start
        reconstruction = codec.reconstruct(encoded.symbols, height, width)
        x, x_hat = image[None].cpu(), decoded[None]
        quality = ms_ssim(x_hat, x)
        result.images.append(
            ImageResult(
                name=name,
                height=height,
                width=width,
                bytes=len(data),
                bpp=len(data) * 8 / pixels,
                psnr=float(psnr(x_hat, x)),
                ms_ssim=_optional(quality),
                ms_ssim_db=_optional(ms_ssim_db(quality)),
                lpips=None if lpips is None else float(lpips(x_hat, x)),
                dists=None if dists is None else float(dists(x_hat, x)),
                encode_seconds=encode_seconds,
                decode_seconds=decode_seconds,
                exact=torch.equal(decoded, reconstruction),
                estimated_bpp=codec.estimate_bits(analysis, encoded.symbols) / pixels if estimate else None,
            )
        )
        if observe is not None:
            observe(encoded, decoded)
    return result
