"""rdvq.evaluation: real files, rates from their sizes, metrics that are honest about what is missing."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from rdvq.evaluation import evaluate, lpips_metric
from rdvq.losses import lpips_available
from rdvq.metrics import ms_ssim_min_side
from test_codec import make_codec


def _images() -> list[tuple[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(4)
    return [("small", torch.rand(3, 24, 40, generator=g)), ("large", torch.rand(3, 176, 200, generator=g))]


def test_rates_come_from_the_files_and_decodes_are_checked(tmp_path: Path) -> None:
    codec = make_codec("multi", "hypervq")
    result = evaluate(codec, _images(), files=tmp_path, estimate=True)
    for row in result.images:
        size = (tmp_path / f"{row.name}.rdvq").stat().st_size
        assert row.bytes == size and row.bpp == size * 8 / (row.height * row.width)
        assert row.exact and row.encode_seconds > 0 and row.decode_seconds > 0
        assert row.estimated_bpp is not None and row.estimated_bpp > 0
    assert result.all_exact


def test_metrics_too_small_or_without_weights_are_unavailable() -> None:
    result = evaluate(make_codec("single", "uniform"), _images())
    small, large = result.images
    assert min(small.height, small.width) < ms_ssim_min_side() <= min(large.height, large.width)
    assert small.ms_ssim is None and small.ms_ssim_db is None
    assert large.ms_ssim is not None and math.isfinite(large.ms_ssim_db)
    mean = result.mean()
    assert mean["ms_ssim"] is None  # one image lacks it: no mean is invented
    assert mean["psnr"] == pytest.approx((small.psnr + large.psnr) / 2)
    assert mean["lpips"] is None and small.lpips is None


def test_lpips_metric_only_when_its_weights_are_on_disk() -> None:
    assert (lpips_metric() is None) == (not lpips_available("alex"))


def test_a_decoder_that_disagrees_is_reported_not_hidden() -> None:
    codec = make_codec("single", "static")
    codec.latent.synthesize = lambda symbols, padded: torch.rand(1, 3, *padded)  # a nondeterministic synthesis
    assert not evaluate(codec, _images()[:1]).all_exact
