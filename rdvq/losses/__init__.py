"""Training losses: perceptual (LPIPS) and adversarial (PatchGAN + hinge)."""

from rdvq.losses.adversarial import PatchDiscriminator, hinge_d_loss, hinge_g_loss
from rdvq.losses.perceptual import LPIPS, lpips_available, lpips_backbone_path

__all__ = [
    "LPIPS",
    "PatchDiscriminator",
    "hinge_d_loss",
    "hinge_g_loss",
    "lpips_available",
    "lpips_backbone_path",
]
