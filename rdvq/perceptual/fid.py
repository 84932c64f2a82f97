"""FID and KID on patches, the protocol of HiFiC (Mentzer et al., 2020) and MS-ILLM.

A few dozen full images give too few samples for a 2048-d covariance, so every image is cut into
non-overlapping P x P patches, and, when both sides are at least 1.5 P, a second grid shifted by
P / 2 in both directions adds more; the patches of originals and of reconstructions are then
compared as two sets. Patches never cross the border: pixels beyond the last whole patch are
ignored, and an image with a side below P gives no patch. P is 256 by default; GLC and CoD-Lite
use 64 on Kodak, so FID/64 and FID/256 are different numbers.

The distances use torchmetrics' own formulas fed with precomputed features (an identity "feature
extractor" that declares ``num_features``): FID with float64 moments and the trace of the matrix
square root taken as the sum of square roots of the eigenvalues of S1 S2 (the product's
eigenvalues are those of the symmetric S1^1/2 S2 S1^1/2, so this is exact and avoids the
complex rounding noise of ``scipy.linalg.sqrtm``); KID as the unbiased MMD with the cubic
polynomial kernel, averaged over random subsets. Subsets hold at most 1000 features (capped at
the smaller set's size, as clean-fid does) and are drawn from a seeded generator, so KID is
reproducible. Being unbiased, KID can come out slightly negative, e.g. for a set against itself.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from rdvq.perceptual.inception import InceptionFeatures

DEFAULT_PATCH = 256
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000


def _has_shifted_grid(height: int, width: int, patch: int) -> bool:
    return height >= 1.5 * patch and width >= 1.5 * patch


def patch_count(height: int, width: int, patch: int = DEFAULT_PATCH) -> int:
    """How many patches one image of ``height`` x ``width`` gives (both grids)."""
    if patch < 2:
        raise ValueError(f"patch size must be at least 2, got {patch}")
    count = (height // patch) * (width // patch)
    if _has_shifted_grid(height, width, patch):
        count += ((height - patch // 2) // patch) * ((width - patch // 2) // patch)
    return count


def extract_patches(images: Tensor, patch: int = DEFAULT_PATCH) -> Tensor:
    """(B, C, H, W) -> (N, C, patch, patch): the plain grid of every image, then the shifted grid."""
    height, width = images.shape[-2:]
    grids = [_grid(images, patch)]
    if _has_shifted_grid(height, width, patch):
        grids.append(_grid(images[..., patch // 2 :, patch // 2 :], patch))
    return torch.cat(grids)


def _grid(images: Tensor, patch: int) -> Tensor:
    channels = images.shape[1]
    if min(images.shape[-2:]) < patch:
        return images.new_empty((0, channels, patch, patch))
    columns = F.unfold(images, kernel_size=patch, stride=patch)  # (B, C * patch * patch, L)
    return columns.transpose(1, 2).reshape(-1, channels, patch, patch)


class _Precomputed(nn.Module):
    """Hands torchmetrics features that were already extracted."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: Tensor) -> Tensor:
        return features


def frechet_distance(real: Tensor, fake: Tensor) -> float:
    """FID between two (N, D) feature sets (N >= 2 each)."""
    if real.shape[0] < 2 or fake.shape[0] < 2:
        raise ValueError(f"FID needs at least 2 features per set, got {real.shape[0]} and {fake.shape[0]}")
    metric = FrechetInceptionDistance(feature=_Precomputed(real.shape[1]))
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    return float(metric.compute())


def kernel_distance(
    real: Tensor, fake: Tensor, subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE, seed: int = 0
) -> tuple[float, float]:
    """KID (mean, standard deviation over ``subsets``) between two (N, D) feature sets (N >= 2 each)."""
    size = min(subset_size, real.shape[0], fake.shape[0])
    if size < 2:
        raise ValueError(f"KID needs at least 2 features per set, got {real.shape[0]} and {fake.shape[0]}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # its note that features are kept in memory
        metric = KernelInceptionDistance(feature=_Precomputed(real.shape[1]), subsets=subsets, subset_size=size)
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    with torch.random.fork_rng(devices=[]):  # torchmetrics draws subsets from the global generator
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


@dataclass(frozen=True)
class PatchFIDResult:
    patches: int  # patches per side
    fid: float | None  # None: fewer than 2 patches
    kid_mean: float | None
    kid_std: float | None


class PatchFID:
    """Collects Inception features of the patches of (original, reconstruction) pairs, then gives
    FID and KID between the two sets; features stay in memory (8 KiB per patch and side)."""

    def __init__(self, patch: int = DEFAULT_PATCH, extractor: InceptionFeatures | None = None, batch: int = 32) -> None:
        if patch < 2:
            raise ValueError(f"patch size must be at least 2, got {patch}")
        self.patch = patch
        self.extractor = extractor if extractor is not None else InceptionFeatures()
        self.batch = batch
        self._real: list[Tensor] = []
        self._fake: list[Tensor] = []

    def update(self, original: Tensor, reconstruction: Tensor) -> int:
        """Add the patches of (B, 3, H, W) images in [0, 1]; returns how many patches each side gained."""
        if original.shape != reconstruction.shape:
            raise ValueError(f"shapes differ: {tuple(original.shape)} and {tuple(reconstruction.shape)}")
        for images, store in ((original, self._real), (reconstruction, self._fake)):
            patches = extract_patches(images, self.patch)
            store.extend(self.extractor(chunk).cpu() for chunk in patches.split(self.batch) if len(chunk))
        return patch_count(*original.shape[-2:], self.patch) * original.shape[0]

    def compute(self, seed: int = 0) -> PatchFIDResult:
        """FID and KID (subsets drawn with ``seed``) between the patches seen so far."""
        patches = sum(len(features) for features in self._real)
        if patches < 2:
            return PatchFIDResult(patches, None, None, None)
        real, fake = torch.cat(self._real), torch.cat(self._fake)
        kid_mean, kid_std = kernel_distance(real, fake, seed=seed)
        return PatchFIDResult(real.shape[0], frechet_distance(real, fake), kid_mean, kid_std)
