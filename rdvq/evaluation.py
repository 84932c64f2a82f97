"""Rate-distortion evaluation on real files: the one implementation every caller uses.

For each image: encode to bytes (timed), optionally write the file and read it back, decode
(timed), and check that the decoded image equals the encoder's own reconstruction bit for bit.
Rates come from the file sizes (header included) over the original pixels; quality metrics follow
the field's conventions (:mod:`rdvq.metrics`: PSNR and MS-SSIM on 8-bit RGB, MS-SSIM also in dB,
LPIPS-alex and DISTS where their weights are on disk). A metric that cannot be computed is ``None`` in the
results ("unavailable"), never an invented number.

Stage validation, quickstart, the benchmarks and ``rdvq eval`` all go through :func:`evaluate`.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from rdvq.atomic import atomic_write_bytes
from rdvq.codec import ImageCodec
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


@dataclass
class Evaluation:
    images: list[ImageResult] = field(default_factory=list)

    @property
    def all_exact(self) -> bool:
        return all(r.exact for r in self.images)

    def mean(self) -> dict[str, float | None]:
        """Mean of every numeric field over the images; None where any image lacks the value."""
        out: dict[str, float | None] = {}
        for name, value in asdict(self.images[0]).items():
            if isinstance(value, bool) or name in ("name", "height", "width"):
                continue
            values = [getattr(r, name) for r in self.images]
            out[name] = None if any(v is None for v in values) else statistics.fmean(values)
        return out

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
) -> Evaluation:
    """Evaluate ``codec`` on ``(name, image or path)`` pairs.

    ``files``: write each compressed file there as ``<name>.rdvq``, take the rate from its size on
    disk and decode what was read back. ``estimate``: also record the model's estimated bpp.
    ``progress``: a progress-bar label (no bar when None).
    """
    sources: Sequence[ImageSource] = list(images)
    result = Evaluation()
    for name, source in tqdm(sources, desc=progress, disable=progress is None, unit="image"):
        image = source if isinstance(source, torch.Tensor) else read_image(source)
        height, width = image.shape[-2:]
        pixels = height * width
        start = time.perf_counter()
        encoded = codec.encode(image, options, reconstruct=False, estimate=False)
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
                estimated_bpp=codec.latent.estimate_bits(codec.analyze(image), encoded.symbols) / pixels if estimate else None,
            )
        )
    return result
