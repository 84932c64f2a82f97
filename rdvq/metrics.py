"""Image-quality metrics on images in [0, 1], following the field's conventions.

Every metric first rounds both images to 8-bit RGB (``round(clamp(x, 0, 1) * 255)``): the
numbers then describe the image a decoder actually writes to disk, and are comparable with
published results. All functions return one value per image, shape (B,), without gradients.
"""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import torch
import torchvision
from pytorch_msssim import ms_ssim as _pytorch_ms_ssim
from torch import Tensor, nn
from torchmetrics.functional.image import peak_signal_noise_ratio

from rdvq.errors import CheckpointError, MissingWeightsError
from rdvq.losses.perceptual import LPIPS, lpips_backbone_path

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
    """LPIPS-alex per image on 8-bit RGB, the field's evaluation variant (VGG is the loss).

    Raises :class:`~rdvq.errors.MissingWeightsError` when the AlexNet backbone is not on disk.
    """

    def __init__(self, backbone_weights: str | Path | None = None) -> None:
        super().__init__(net="alex", backbone_weights=backbone_weights)

    @torch.no_grad()
    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        x8, y8 = _to_8bit(x, y)
        return super().forward(x8 / 255, y8 / 255)


def dists_available() -> bool:
    """Whether :class:`DISTSMetric` can be built from the default backbone location."""
    return lpips_backbone_path("vgg").is_file()


class DISTSMetric(nn.Module):
    """DISTS (Ding et al., 2020) per image on 8-bit RGB, at full resolution, with the authors' own
    implementation (the ``DISTS_pytorch`` package).

    Its calibrated alpha/beta weights ship inside that package; its backbone is torchvision's
    ImageNet VGG16, the same checkpoint file LPIPS-VGG uses, read from disk. The package would ask
    torchvision to download it, so the module is built with a weightless VGG16 whose convolutions
    are then filled from the file; :class:`~rdvq.errors.MissingWeightsError` when it is absent.
    """

    def __init__(self, backbone_weights: str | Path | None = None) -> None:
        super().__init__()
        path = Path(backbone_weights) if backbone_weights is not None else lpips_backbone_path("vgg")
        if not path.is_file():
            raise MissingWeightsError(
                f"DISTS needs the torchvision VGG16 checkpoint {path.name}, not found at {path}; "
                "set TORCH_HOME or pass backbone_weights to use another location"
            )
        from DISTS_pytorch import DISTS_pt

        vgg = torchvision.models.vgg
        weightless = SimpleNamespace(vgg16=lambda pretrained: SimpleNamespace(features=vgg.make_layers(vgg.cfgs["D"])))
        with mock.patch.object(DISTS_pt, "models", weightless):
            self.model = DISTS_pt.DISTS(load_weights=False)
        calibration = torch.load(files("DISTS_pytorch").joinpath("weights.pt"), map_location="cpu", weights_only=True)
        self.model.alpha.data.copy_(calibration["alpha"])
        self.model.beta.data.copy_(calibration["beta"])
        _load_vgg_convolutions(self.model, path)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "DISTSMetric":
        """Ignore ``mode``: a fixed function."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        x8, y8 = _to_8bit(x, y)
        return self.model(x8 / 255, y8 / 255).reshape(x.shape[0])


def _load_vgg_convolutions(model: nn.Module, path: Path) -> None:
    """Copy torchvision ``features.N.*`` tensors into DISTS' ``stageK.N.*`` convolutions (each
    layer keeps its torchvision index as its name); every convolution must come from the file."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"VGG16 checkpoint {path} is not a readable torch state dict ({type(exc).__name__})") from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"VGG16 checkpoint {path} is not a state dict")
    state = {}
    for name, own in model.state_dict().items():
        match = re.fullmatch(r"stage\d\.(\d+)\.(weight|bias)", name)
        if match is None:
            continue
        source = f"features.{match[1]}.{match[2]}"
        tensor = checkpoint.get(source)
        if tensor is None or tensor.shape != own.shape:
            found = "missing" if tensor is None else f"shape {tuple(tensor.shape)}"
            raise CheckpointError(f"VGG16 checkpoint {path} does not fit: {source!r} is {found}, expected {tuple(own.shape)}")
        state[name] = tensor
    model.load_state_dict(state, strict=False)
