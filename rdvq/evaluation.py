"""Rate-distortion evaluation on real files: the one implementation every caller uses.

For each image: encode to bytes (timed), optionally write the file and read it back, decode
(timed), and check that the decoded image equals the encoder's own reconstruction bit for bit.
Rates come from the file sizes (header included) over the original pixels; quality metrics follow
the field's conventions (:mod:`rdvq.metrics`: PSNR and MS-SSIM on 8-bit RGB, MS-SSIM also in dB;
with :class:`PerceptualMetrics`, LPIPS-Alex, LPIPS-VGG and DISTS per image and FID / KID of the
set on patches, from the weights the registry packages ship). A metric that cannot be computed is
``None`` in the results ("unavailable"), never an invented number.

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
from rdvq.perceptual import DEFAULT_PATCH, InceptionFeatures, PatchFID, inception_available

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
    lpips: float | None  # LPIPS-Alex; None: not computed (its weights not installed)
    dists: float | None  # None: not computed (its weights not installed)
    encode_seconds: float
    decode_seconds: float
    exact: bool  # decoded image == the encoder's reconstruction, bit for bit
    estimated_bpp: float | None = None  # the model's own estimate, when asked for
    lpips_vgg: float | None = None


def gather(items: list) -> list:
    """Every rank's items, rank after rank, under DDP (the list itself without a process group)."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return items
    parts: list[list] = [[] for _ in range(dist.get_world_size())]
    dist.all_gather_object(parts, items)
    return [item for part in parts for item in part]


# A results curve's quality keys (CompressAI's layout, rdvq.rd_curves.METRICS) -> summarize()'s names.
CURVE_KEYS = {
    "psnr-rgb": "psnr", "ms-ssim-rgb": "ms_ssim", "lpips-alex": "lpips", "lpips-vgg": "lpips_vgg", "dists": "dists",
    "fid": "fid", "kid": "kid",
}


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
        for name in ("bpp", "estimated_bpp", "psnr", "ms_ssim", "lpips", "lpips_vgg", "dists", "encode_seconds",
                     "decode_seconds")
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
    fid: float | None = None  # of the set, on patches; None: not computed or too few patches
    kid: float | None = None
    fid_patches: int = 0  # patches per side the FID and KID compare

    @property
    def all_exact(self) -> bool:
        return all(r.exact for r in self.images)

    def summary(self) -> dict[str, float | None]:
        return {**summarize(self.images), "fid": self.fid, "kid": self.kid, "fid_patches": float(self.fid_patches)}

    def rows(self) -> list[dict]:
        return [asdict(r) for r in self.images]


def lpips_metric(net: str = "alex") -> LPIPSMetric | None:
    """LPIPS (AlexNet by default) when its weights are installed, else None (reported as unavailable)."""
    return LPIPSMetric(net=net) if lpips_available(net) else None


def dists_metric() -> DISTSMetric | None:
    """DISTS when its weights are installed, else None (reported as unavailable)."""
    return DISTSMetric() if dists_available() else None


@dataclass
class PerceptualMetrics:
    """The perceptual networks an evaluation computes; each is None where its weights are not
    installed (the metric is then reported unavailable). ``fid_patch``: FID and KID of the set on
    patches of that size (:mod:`rdvq.perceptual.fid`) with the ``inception`` network, None to leave
    them out."""

    lpips: LPIPSMetric | None = None
    lpips_vgg: LPIPSMetric | None = None
    dists: DISTSMetric | None = None
    fid_patch: int | None = None
    inception: InceptionFeatures | None = None
    lpips_vgg_wanted: bool = False  # asked for, so its absence is reported

    @classmethod
    def installed(cls, fid_patch: int | None = DEFAULT_PATCH, lpips_vgg: bool = True) -> "PerceptualMetrics":
        """Every metric whose weights are installed (LPIPS-VGG only with ``lpips_vgg``; FID/KID only
        with a ``fid_patch`` size)."""
        fid = bool(fid_patch) and inception_available()
        return cls(lpips_metric("alex"), lpips_metric("vgg") if lpips_vgg else None, dists_metric(),
                   fid_patch if fid else None, InceptionFeatures() if fid else None, lpips_vgg)

    def describe(self) -> str:
        """One line: which metrics are on, and why the others are not."""
        parts = [f"{name} {'on' if network is not None else 'unavailable (weights not installed)'}"
                 for name, network in (("LPIPS-Alex", self.lpips), ("LPIPS-VGG", self.lpips_vgg), ("DISTS", self.dists))
                 if network is not None or name != "LPIPS-VGG" or self.lpips_vgg_wanted]
        parts.append(f"FID/KID on {self.fid_patch}-px patches" if self.fid_patch else "FID/KID off (no Inception weights or not asked for)")
        return ", ".join(parts)


def _optional(value: torch.Tensor) -> float | None:
    number = float(value)
    return None if math.isnan(number) else number


@torch.no_grad()
def evaluate(
    codec: ImageCodec,
    images: Iterable[ImageSource],
    *,
    options: EncodeOptions = EncodeOptions(),
    metrics: PerceptualMetrics | None = None,
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
    ``metrics``: the perceptual metrics to compute (none by default).
    """
    metrics = metrics or PerceptualMetrics()
    fid = PatchFID(metrics.fid_patch, metrics.inception) if metrics.fid_patch else None
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
                lpips=None if metrics.lpips is None else float(metrics.lpips(x_hat, x)),
                dists=None if metrics.dists is None else float(metrics.dists(x_hat, x)),
                encode_seconds=encode_seconds,
                decode_seconds=decode_seconds,
                exact=torch.equal(decoded, reconstruction),
                estimated_bpp=codec.estimate_bits(analysis, encoded.symbols) / pixels if estimate else None,
                lpips_vgg=None if metrics.lpips_vgg is None else float(metrics.lpips_vgg(x_hat, x)),
            )
        )
        if fid is not None:
            fid.update(x, x_hat)
        if observe is not None:
            observe(encoded, decoded)
    if fid is not None:
        distances = fid.compute()
        result.fid, result.kid, result.fid_patches = distances.fid, distances.kid_mean, distances.patches
    return result
