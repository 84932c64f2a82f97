"""DISTS (Ding et al., 2020) computed by the authors' ``DISTS_pytorch`` package with weights from disk.

The package computes the score at the image's own resolution; its VGG16 trunk would come from
torchvision's download server, so the network is built around a weightless VGG16 whose
convolutions are filled from :mod:`rdvq.perceptual.backbones` (the trunk LPIPS-VGG uses), and its
calibrated alpha/beta come from the package's own file, hash-pinned.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import torch
import torchvision
from torch import Tensor, nn

from rdvq.errors import CheckpointError
from rdvq.perceptual.backbones import trunk_available, trunk_state
from rdvq.perceptual.weights import DISTS_ALPHA_BETA, installed, read_verified


def dists_available() -> bool:
    """Whether :class:`DISTS` can be built without naming a trunk file."""
    return trunk_available("vgg") and installed(DISTS_ALPHA_BETA)


class DISTS(nn.Module):
    """Frozen DISTS between images in [0, 1], one value per image; ``backbone_weights`` names a
    torchvision-format VGG16 checkpoint to use instead of the default sources."""

    def __init__(self, backbone_weights: str | Path | None = None) -> None:
        super().__init__()
        trunk = trunk_state("vgg", backbone_weights)
        calibration = torch.load(io.BytesIO(read_verified(DISTS_ALPHA_BETA)), map_location="cpu", weights_only=True)
        if not isinstance(calibration, dict) or not {"alpha", "beta"} <= set(calibration):
            raise CheckpointError(f"{DISTS_ALPHA_BETA.member} does not hold DISTS alpha and beta")
        from DISTS_pytorch import DISTS_pt

        vgg = torchvision.models.vgg
        weightless = SimpleNamespace(vgg16=lambda pretrained: SimpleNamespace(features=vgg.make_layers(vgg.cfgs["D"])))
        with mock.patch.object(DISTS_pt, "models", weightless):
            self.model = DISTS_pt.DISTS(load_weights=False)
        self.model.alpha.data.copy_(calibration["alpha"])
        self.model.beta.data.copy_(calibration["beta"])
        # DISTS keeps each VGG layer's torchvision index as its name inside ``stageK``
        convolutions = {}
        for name in self.model.state_dict():
            match = re.fullmatch(r"stage\d\.(\d+)\.(weight|bias)", name)
            if match is not None:
                convolutions[name] = trunk[f"features.{match[1]}.{match[2]}"]
        self.model.load_state_dict(convolutions, strict=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> DISTS:
        """Ignore ``mode``: a fixed function."""
        return super().train(False)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Per-image score (B,) between two (B, 3, H, W) batches in [0, 1]; 0 for identical images."""
        return self.model(x, y).reshape(x.shape[0])
