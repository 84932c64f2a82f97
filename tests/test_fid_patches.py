"""The FID/KID patch protocol (HiFiC, MS-ILLM) and the distances, on synthetic features (no network)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from rdvq.perceptual import PatchFID, extract_patches, frechet_distance, kernel_distance, patch_count


@pytest.mark.parametrize(
    ("height", "width", "patch", "expected"),
    [
        (512, 768, 256, 3 * 2 + 2 * 1),  # Kodak landscape at FID/256
        (768, 512, 64, 12 * 8 + 11 * 7),  # Kodak portrait at FID/64
        (767, 513, 64, 11 * 8 + 11 * 7),  # odd sides: (767 - 32) // 64 = 11, (513 - 32) // 64 = 7
        (95, 200, 64, 1 * 3),  # 95 < 1.5 * 64: the shifted grid is skipped
        (96, 96, 64, 1 + 1),  # exactly 1.5 patches: shifted grid of one patch
        (63, 500, 64, 0),  # a side below one patch: nothing
        (383, 384, 256, 1),
        (384, 385, 256, 1 + 1),
    ],
)
def test_patch_count_matches_the_patches_extracted(height: int, width: int, patch: int, expected: int) -> None:
    assert patch_count(height, width, patch) == expected
    patches = extract_patches(torch.zeros(2, 3, height, width), patch)
    assert patches.shape == (2 * expected, 3, patch, patch)


def test_patches_are_the_plain_grid_then_the_half_shifted_grid() -> None:
    image = torch.arange(3 * 100 * 130, dtype=torch.float32).reshape(1, 3, 100, 130)
    patches = extract_patches(image, 40)  # plain 2 x 3, shifted (80 // 40) x (110 // 40) = 2 x 2
    assert patches.shape[0] == 6 + 4
    assert torch.equal(patches[0], image[0, :, :40, :40])
    assert torch.equal(patches[5], image[0, :, 40:80, 80:120])  # row-major order
    assert torch.equal(patches[6], image[0, :, 20:60, 20:60])
    assert torch.equal(patches[9], image[0, :, 60:100, 60:100])


def test_fid_is_zero_on_the_same_set_and_matches_gaussian_closed_forms() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(20000, 4, generator=g)
    b = torch.randn(20000, 4, generator=g)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    # N(0, I) vs N(m, I): |m|^2; N(0, I) vs N(0, 4 I): d (1 + 4 - 2 * 2) = d
    assert frechet_distance(a, b + torch.tensor([1.0, 1.0, 0.0, 0.0])) == pytest.approx(2.0, abs=0.06)
    assert frechet_distance(a, 2 * b) == pytest.approx(4.0, abs=0.15)
    # rank-deficient covariances (fewer samples than dimensions), as with few patches: the zero
    # eigenvalues come out as rounding noise whose square roots add up, still negligible
    few = torch.rand(50, 256, generator=g, dtype=torch.float64)
    assert abs(frechet_distance(few, few)) < 1e-6 * torch.cov(few.T).trace().item()


def test_kid_is_unbiased_reproducible_and_grows_with_the_shift() -> None:
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(3000, 16, generator=g), torch.randn(3000, 16, generator=g)
    same, _ = kernel_distance(a, b, subsets=20)
    shifted, spread = kernel_distance(a, b + 0.5, subsets=20)
    assert abs(same) < 0.01 and shifted > 0.05 and spread < shifted
    assert kernel_distance(a, b, subsets=5, seed=3) == kernel_distance(a, b, subsets=5, seed=3)
    small = kernel_distance(a[:40], b[:30], subsets=3)  # subsets shrink to the smaller set
    assert all(map(lambda v: v == v, small))  # not NaN


class _ChannelStatistics(nn.Module):
    """A stand-in extractor: per-channel means and standard deviations of each patch."""

    num_features = 6

    def forward(self, images: Tensor) -> Tensor:
        return torch.cat([images.mean(dim=(2, 3)), images.std(dim=(2, 3))], dim=1)


def test_patch_fid_collects_both_sides_and_reports_too_few_patches_as_unavailable() -> None:
    g = torch.Generator().manual_seed(2)
    originals = torch.rand(3, 3, 48, 80, generator=g)
    fid = PatchFID(patch=16, extractor=_ChannelStatistics(), batch=7)
    assert fid.update(originals, originals) == 3 * patch_count(48, 80, 16)
    same = fid.compute()
    assert same.patches == 3 * patch_count(48, 80, 16) and same.fid == pytest.approx(0.0, abs=1e-9)

    darker = PatchFID(patch=16, extractor=_ChannelStatistics())
    darker.update(originals, originals / 2)  # means 0.5 -> 0.25 and deviations halved on 3 channels
    result = darker.compute()
    assert result.fid > 0.2 and result.kid_mean > 0

    tiny = PatchFID(patch=64, extractor=_ChannelStatistics())
    assert tiny.update(originals, originals) == 0
    assert tiny.compute() == type(tiny.compute())(0, None, None, None)
    with pytest.raises(ValueError, match="shapes differ"):
        tiny.update(originals, originals[..., :40])
