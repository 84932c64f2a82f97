"""The distortion part of every stage that trains a decoder: MSE, LPIPS (VGG, RDVQ's, or the
cheaper AlexNet) and a PatchGAN.

The GAN's start step counts batches from the start of the current stage (``global_step`` of a run
started with ``init_from`` begins at 0), so a later stage never inherits an active GAN by accident.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from rdvq.errors import ConfigError
from rdvq.losses import LPIPS, PatchDiscriminator, hinge_d_loss, hinge_g_loss


@dataclass
class DistortionConfig:
    """Weights of the reconstruction terms. ``perceptual_net``: LPIPS on VGG16 (RDVQ's loss) or on
    AlexNet (about a tenth of VGG's cost on a CPU); its weights come from the registry packages
    (:mod:`rdvq.perceptual`), or from ``perceptual_backbone``, a torchvision checkpoint file."""

    mse_weight: float = 1.0
    perceptual_weight: float = 1.0
    perceptual_net: Literal["vgg", "alex"] = "vgg"
    perceptual_backbone: str | None = None

    def __post_init__(self) -> None:
        if self.mse_weight < 0 or self.perceptual_weight < 0:
            raise ConfigError("distortion weights must be >= 0")
        if self.perceptual_net not in ("vgg", "alex"):
            raise ConfigError(f"distortion.perceptual_net must be vgg or alex, got {self.perceptual_net!r}")


@dataclass
class AdversarialConfig:
    """PatchGAN with hinge loss. ``weight: 0`` builds no discriminator at all.
    ``start_step`` counts batches from the start of the current stage, not of the whole history."""

    weight: float = 0.1
    start_step: int = 25_000
    base_channels: int = 64
    num_layers: int = 3

    def __post_init__(self) -> None:
        if self.weight < 0 or self.start_step < 0 or self.num_layers < 1 or self.base_channels < 1:
            raise ConfigError("adversarial: weight and start_step must be >= 0, num_layers and base_channels >= 1")


class DistortionLoss(nn.Module):
    """Generator-side distortion of a reconstruction, and the discriminator's own loss."""

    def __init__(self, distortion: DistortionConfig | None = None, adversarial: AdversarialConfig | None = None) -> None:
        super().__init__()
        self.config = distortion or DistortionConfig()
        self.adversarial = adversarial or AdversarialConfig()
        # Kept out of the module tree: its frozen VGG weights (~58 MB) do not belong in checkpoints.
        self._perceptual = (
            [LPIPS(net=self.config.perceptual_net, backbone_weights=self.config.perceptual_backbone)]
            if self.config.perceptual_weight > 0
            else []
        )
        self.discriminator = (
            PatchDiscriminator(base_channels=self.adversarial.base_channels, n_layers=self.adversarial.num_layers)
            if self.adversarial.weight > 0
            else None
        )

    def gan_active(self, step: int) -> bool:
        return self.discriminator is not None and step >= self.adversarial.start_step

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(weighted distortion, its terms for logging) of ``x_hat`` against ``x`` at stage step ``step``."""
        mse = F.mse_loss(x_hat, x)
        loss = self.config.mse_weight * mse
        logs = {"train/mse": mse}
        if self._perceptual:
            perceptual = self._perceptual[0].to(x.device)(x_hat.clamp(0, 1), x).mean()
            loss = loss + self.config.perceptual_weight * perceptual
            logs[f"train/lpips_{self.config.perceptual_net}"] = perceptual
        if self.gan_active(step):
            g_adv = hinge_g_loss(self.discriminator(x_hat))
            loss = loss + self.adversarial.weight * g_adv
            logs["train/g_adv"] = g_adv
        return loss, logs

    def discriminator_loss(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        return hinge_d_loss(self.discriminator(x), self.discriminator(x_hat.detach()))
