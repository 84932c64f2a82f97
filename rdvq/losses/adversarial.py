"""PatchGAN discriminator and hinge losses for the adversarial term of tokenizer training.

A patch discriminator judges overlapping local windows instead of the whole image, so it
pushes the decoder towards realistic texture while MSE and LPIPS keep the content.
"""

from __future__ import annotations

import math
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from rdvq.errors import ConfigError

Norm = Literal["batch", "group"]


def _norm_layer(norm: Norm, channels: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    # up to 32 groups, fewer when the width is not a multiple of 32
    return nn.GroupNorm(math.gcd(32, channels), channels)


class PatchDiscriminator(nn.Module):
    """Maps (B, C, H, W) images to (B, 1, H / 2**n_layers - 2, W / 2**n_layers - 2) logits.

    Layout: a 4x4 stride-2 conv without normalization, ``n_layers - 1`` more stride-2 convs with
    normalization (width doubling up to 8x ``base_channels``), one stride-1 conv and a 1-channel
    stride-1 conv, all 4x4 with padding 1. ``norm="group"`` avoids batch statistics, which mix
    real and fake images and break with per-device batches of one or two images.
    """

    def __init__(
        self, in_channels: int = 3, base_channels: int = 64, n_layers: int = 3, norm: Norm = "batch"
    ) -> None:
        super().__init__()
        if n_layers < 1:
            raise ConfigError(f"PatchDiscriminator n_layers must be >= 1, got {n_layers}")
        if norm not in ("batch", "group"):
            raise ConfigError(f"PatchDiscriminator norm must be 'batch' or 'group', got {norm!r}")

        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, base_channels, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
        ]
        width = base_channels
        for i in range(1, n_layers + 1):
            out = base_channels * min(2**i, 8)
            stride = 2 if i < n_layers else 1
            # the normalization's shift makes a conv bias redundant
            layers += [
                nn.Conv2d(width, out, 4, stride=stride, padding=1, bias=False),
                _norm_layer(norm, out),
                nn.LeakyReLU(0.2),
            ]
            width = out
        layers.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.layers = nn.Sequential(*layers)
        self.apply(_init_weights)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


def _init_weights(module: nn.Module) -> None:
    """DCGAN initialization: small random convs, norms starting close to identity."""
    if isinstance(module, nn.Conv2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def hinge_d_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Discriminator hinge loss: only logits on the wrong side of the +-1 margin are penalized."""
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


def hinge_g_loss(fake_logits: Tensor) -> Tensor:
    """Generator hinge loss: raise the discriminator's logits on reconstructions."""
    return -fake_logits.mean()
