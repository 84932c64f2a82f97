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
    summary = result.summary()
    assert summary["ms_ssim"] is None and summary["ms_ssim_db"] is None  # one image lacks it: no mean is invented
    assert summary["psnr"] == pytest.approx((small.psnr + large.psnr) / 2)
    assert summary["lpips"] is None and small.lpips is None  # no LPIPS network was passed


def test_metrics_are_built_when_installed_and_unavailable_without_their_package(monkeypatch, tmp_path) -> None:
    from conftest import hide_weight_packages
    from rdvq.evaluation import PerceptualMetrics

    assert lpips_available("alex") and lpips_metric() is not None  # make install brings the weights
    hide_weight_packages(monkeypatch, tmp_path)
    assert lpips_metric() is None and lpips_metric("vgg") is None
    metrics = PerceptualMetrics.installed()
    assert (metrics.lpips, metrics.lpips_vgg, metrics.dists, metrics.fid_patch) == (None, None, None, None)
    assert metrics.describe().count("unavailable (weights not installed)") == 3


def test_a_decoder_that_disagrees_is_reported_not_hidden() -> None:
    codec = make_codec("single", "static")
    codec.latent.synthesize = lambda symbols, padded: torch.rand(1, 3, *padded)  # a nondeterministic synthesis
    assert not evaluate(codec, _images()[:1]).all_exact


def test_summaries_have_one_definition_of_ms_ssim_in_db() -> None:
    """The set's MS-SSIM in dB is the dB of the mean MS-SSIM (CompressAI's convention), not the mean
    of per-image dB; the real rate's gap over the estimate is of the means."""
    from dataclasses import replace

    from rdvq.evaluation import ImageResult, summarize

    row = ImageResult("a", 8, 8, 10, 1.25, 30.0, 0.9, 10.0, None, None, 0.1, 0.1, True, estimated_bpp=1.0)
    rows = [row, replace(row, name="b", ms_ssim=0.99, ms_ssim_db=20.0, bpp=0.75, exact=False)]
    summary = summarize(rows)
    assert summary["ms_ssim_db"] == pytest.approx(-10 * math.log10(1 - 0.945))  # not (10 + 20) / 2
    assert summary["bpp_gap_percent"] == pytest.approx(0.0) and summary["bit_exact"] == 0.0 and summary["images"] == 2


def test_perceptual_metrics_reach_every_result(tmp_path: Path) -> None:
    """LPIPS-VGG and DISTS per image, FID and KID of the set on patches, in rows and summaries."""
    from rdvq.evaluation import PerceptualMetrics
    from rdvq.perceptual import patch_count

    metrics = PerceptualMetrics.installed(fid_patch=16)
    assert metrics.lpips_vgg is not None and metrics.dists is not None and metrics.fid_patch == 16
    images = [(f"i{n}", torch.rand(3, 40, 48, generator=torch.Generator().manual_seed(n))) for n in range(2)]
    result = evaluate(make_codec("single", "uniform"), images, metrics=metrics)
    for row in result.images:
        assert 0 < row.lpips < 1 and 0 < row.lpips_vgg < 1 and 0 < row.dists < 1
    assert result.fid_patches == 2 * patch_count(40, 48, 16) == 2 * (2 * 3 + 2 * 2)
    summary = result.summary()
    assert summary["fid"] > 0 and summary["kid"] is not None and summary["lpips_vgg"] == pytest.approx(
        (result.images[0].lpips_vgg + result.images[1].lpips_vgg) / 2)
    assert "FID/KID on 16-px patches" in metrics.describe()
    off = evaluate(make_codec("single", "uniform"), images[:1])  # nothing asked for: nothing invented
    assert off.fid is None and off.images[0].lpips_vgg is None and off.summary()["fid"] is None
