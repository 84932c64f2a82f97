"""LPIPS with backbone weights read from a local torchvision checkpoint.

The ``lpips`` package ships its calibrated linear heads but asks torchvision to download the
VGG/AlexNet backbone, which is impossible here. So the package builds a randomly initialised
backbone and this module fills it from the checkpoint file torchvision would have downloaded,
failing with :class:`MissingWeightsError` when that file is not on disk.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

import lpips
import torch
import torchvision
from torch import Tensor, nn

from rdvq.errors import CheckpointError, MissingWeightsError

Net = Literal["vgg", "alex"]

_BACKBONE_WEIGHTS = {
    "vgg": torchvision.models.VGG16_Weights.IMAGENET1K_V1,
    "alex": torchvision.models.AlexNet_Weights.IMAGENET1K_V1,
}


def _check_net(net: str) -> None:
    if net not in _BACKBONE_WEIGHTS:
        raise ValueError(f"LPIPS net must be one of {sorted(_BACKBONE_WEIGHTS)}, got {net!r}")


def lpips_backbone_path(net: Net) -> Path:
    """Where torchvision caches the backbone checkpoint: ``<torch hub dir>/checkpoints/<file>``.

    The hub dir follows ``TORCH_HOME`` (default ``~/.cache/torch/hub``), so a file downloaded
    elsewhere by ``torchvision.models.vgg16(weights="IMAGENET1K_V1")`` is found without copying.
    """
    _check_net(net)
    file_name = Path(urlparse(_BACKBONE_WEIGHTS[net].url).path).name
    return Path(torch.hub.get_dir()) / "checkpoints" / file_name


def lpips_available(net: Net) -> bool:
    """Whether :class:`LPIPS` can be built for ``net`` from the default backbone location."""
    return lpips_backbone_path(net).is_file()


class LPIPS(nn.Module):
    """Frozen LPIPS distance between images in [0, 1], differentiable with respect to the images.

    The module stays in eval mode whatever its parent does: dropout in the linear heads must not
    make a loss or metric random.
    """

    def __init__(self, net: Net = "vgg", backbone_weights: str | Path | None = None) -> None:
        super().__init__()
        _check_net(net)
        path = Path(backbone_weights) if backbone_weights is not None else lpips_backbone_path(net)
        if not path.is_file():
            raise MissingWeightsError(
                f"LPIPS-{net} needs the torchvision backbone checkpoint {path.name}, "
                f"not found at {path}; set TORCH_HOME or pass backbone_weights to use another location"
            )
        with warnings.catch_warnings():
            # lpips still calls torchvision with the deprecated ``pretrained=False`` argument
            warnings.simplefilter("ignore", UserWarning)
            self.model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
        _load_backbone(self.model.net, path)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> LPIPS:
        """Ignore ``mode``: the distance is a fixed function, never trained."""
        return super().train(False)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Per-image distance (B,) between two (B, 3, H, W) batches in [0, 1]."""
        return self.model(x, y, normalize=True).flatten()


def _load_backbone(backbone: nn.Module, path: Path) -> None:
    """Copy torchvision ``features.N.*`` tensors into lpips' ``sliceK.N.*`` modules.

    lpips splits ``features`` into slices but keeps each layer's torchvision index as its name,
    so ``sliceK.N.weight`` is ``features.N.weight``. Loading is strict: every backbone tensor
    must come from the file.
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"LPIPS backbone checkpoint {path} is not a readable torch state dict ({type(exc).__name__})"
        ) from exc
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"LPIPS backbone checkpoint {path} is not a state dict")
    state = {}
    for name, own in backbone.state_dict().items():
        source = "features." + name.split(".", 1)[1]
        tensor = checkpoint.get(source)
        if tensor is None or tensor.shape != own.shape:
            found = "missing" if tensor is None else f"shape {tuple(tensor.shape)}"
            raise CheckpointError(
                f"LPIPS backbone checkpoint {path} does not fit: {source!r} is {found}, "
                f"expected shape {tuple(own.shape)}"
            )
        state[name] = tensor
    backbone.load_state_dict(state, strict=True)
