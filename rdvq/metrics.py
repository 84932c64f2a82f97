"""Image-quality metrics on images in [0, 1], following the field's conventions.

Every metric first rounds both images to 8-bit RGB (``round(clamp(x, 0, 1) * 255)``): the
numbers then describe the image a decoder actually writes to disk, and are comparable with
published results. All functions return one value per image, shape (B,), without gradients.
"""

from __future__ import annotations

from pathlib import Path

import torch
from pytorch_msssim import ms_ssim as _pytorch_ms_ssim
from torch import Tensor
from torchmetrics.functional.image import peak_signal_noise_ratio

from rdvq.perceptual import DISTS, LPIPS, Net, dists_available

__all__ = ["DISTSMetric", "LPIPSMetric", "dists_available", "ms_ssim", "ms_ssim_db", "ms_ssim_min_side", "psnr"]

_MS_SSIM_WIN_SIZE = 11  # pytorch_msssim's default Gaussian window
_MS_SSIM_SCALES = 5  # the standard five-scale weights, i.e. four 2x downsamplings


def _to_8bit(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    if x.shape != y.shape or x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(
            f"expected two (B, 3, H, W) batches of the same shape, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    return (x.clamp(0, 1) * 255).round().float(), (y.clamp(0, 1) * 255).round().float()


@torch.no_grad()
def psnr(x: Tensor, y: Tensor) -> Tensor:
    """PSNR in dB per image on 8-bit RGB.

    Identical 8-bit images give ``+inf`` (zero error), deliberately not capped: any cap would be
    an invented number, and an infinite mean makes a lossless result visible rather than hidden.
    """
    x8, y8 = _to_8bit(x, y)
    return peak_signal_noise_ratio(x8, y8, data_range=255.0, reduction="none", dim=(1, 2, 3))


def ms_ssim_min_side() -> int:
    """Smallest image side (pixels) for which :func:`ms_ssim` returns a number instead of NaN."""
    return (_MS_SSIM_WIN_SIZE - 1) * 2 ** (_MS_SSIM_SCALES - 1) + 1


@torch.no_grad()
def ms_ssim(x: Tensor, y: Tensor) -> Tensor:
    """MS-SSIM per image on 8-bit RGB, in [0, 1].

    Images whose shorter side is below :func:`ms_ssim_min_side` are too small for five scales;
    they get NaN so callers report the metric as unavailable instead of a made-up value.
    """
    x8, y8 = _to_8bit(x, y)
    if min(x8.shape[-2:]) < ms_ssim_min_side():
        return torch.full((x8.shape[0],), float("nan"), device=x8.device)
    return _pytorch_ms_ssim(x8, y8, data_range=255, size_average=False, win_size=_MS_SSIM_WIN_SIZE)


def ms_ssim_db(value: Tensor) -> Tensor:
    """MS-SSIM in dB, ``-10 log10(1 - value)``, which spreads out values close to 1 (1 -> +inf)."""
    return -10.0 * torch.log10(1.0 - value)


class LPIPSMetric(LPIPS):
    """LPIPS per image on 8-bit RGB: AlexNet, the field's evaluation variant, unless ``net="vgg"``
    (the variant used as a training loss).

    Raises :class:`~rdvq.errors.MissingWeightsError` when the trunk or the heads are not installed.
    """

    def __init__(self, backbone_weights: str | Path | None = None, net: Net = "alex") -> None:
        super().__init__(net=net, backbone_weights=backbone_weights)

    @torch.no_grad()
    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        x8, y8 = _to_8bit(x, y)
        return super().forward(x8 / 255, y8 / 255)


class DISTSMetric(DISTS):
    """DISTS (Ding et al., 2020) per image on 8-bit RGB, at full resolution, with the authors' own
    implementation; weights as in :mod:`rdvq.perceptual.dists`.

    Raises :class:`~rdvq.errors.MissingWeightsError` when the VGG16 trunk or alpha/beta are not installed.
    """

    @torch.no_grad()
    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        x8, y8 = _to_8bit(x, y)
        return super().forward(x8 / 255, y8 / 255)
