"""End-to-end training of the scalar codec through the CLI: validation on real files, checkpoints
that compress and decompress, the rate-distortion point a sweep may move (kept in checkpoints and
restored on resume), falling loss under the TCQ surrogate, and one-line configuration errors."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from conftest import fit
from rdvq.codec import ImageCodec
from rdvq.errors import ConfigError
from rdvq.stages import ScalarCodecTraining
from rdvq.stages.distortion import AdversarialConfig, DistortionConfig
from rdvq.checkpointing import RD_POINT_KEY
from rdvq.sq import ScalarCodecConfig
from test_codec import assert_round_trip
from test_training import FixedBatch, Recorder, _trainer

TINY = ScalarCodecConfig(channels=8, latent_channels=8)
MSE_ONLY = dict(distortion=DistortionConfig(perceptual_weight=0.0), adversarial=AdversarialConfig(weight=0.0))


@pytest.fixture(scope="module")
def usq_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sq_usq")
    fit("tiny_sq.yaml", root)
    return root


def test_a_cli_run_validates_on_real_files_and_checkpoints_a_codec(usq_run: Path) -> None:
    rows = list(csv.DictReader(open(next(usq_run.glob("logs/version_*/metrics.csv")))))
    validation = [r for r in rows if r["val/bpp_real"]]
    assert len(validation) == 2 and all(float(r["val/bit_exact"]) == 1.0 for r in validation)
    assert all(float(r["train/lambda"]) == pytest.approx(0.01) for r in rows if r["train/lambda"])
    checkpoint = torch.load(usq_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 6  # the quantile optimizer's step does not count
    assert checkpoint["rdvq_codec"]["family"] == "sq" and checkpoint[RD_POINT_KEY] == {"lmbda": 0.01, "tau": None}
    assert_round_trip(ImageCodec.from_checkpoint(usq_run / "checkpoints" / "last.ckpt"), torch.rand(3, 45, 77))


def test_the_rate_distortion_point_moves_and_survives_a_resume() -> None:
    stage = ScalarCodecTraining(codec=TINY, lmbda=0.01, **MSE_ONLY)
    point = stage.rd_point
    assert (point.lmbda, point.tau) == (0.01, None)
    point.set_rd_point(0.05, 0.3)  # tau does not apply to the scalar codec
    assert (point.lmbda, point.tau) == (0.05, None)
    checkpoint = {"state_dict": stage.state_dict()}
    stage.on_save_checkpoint(checkpoint)
    resumed = ScalarCodecTraining(codec=TINY, lmbda=0.01, **MSE_ONLY)
    resumed.on_load_checkpoint(checkpoint)
    assert resumed.rd_point.lmbda == 0.05
    with pytest.raises(ConfigError):
        point.set_rd_point(-1.0, None)


def test_the_loss_falls_under_the_tcq_surrogate() -> None:
    torch.manual_seed(0)
    stage = ScalarCodecTraining(codec=ScalarCodecConfig(channels=16, latent_channels=8, quantizer="tcq4"), lmbda=0.001,
                                optimizer=lambda p: torch.optim.Adam(p, lr=3e-3), **MSE_ONLY)
    recorder = Recorder()
    _trainer(25, [recorder]).fit(stage, FixedBatch(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)), 25))
    assert sum(recorder.mse[-5:]) < 0.6 * sum(recorder.mse[:5])


def test_bad_configurations_are_refused(stage_a_checkpoint: Path) -> None:
    with pytest.raises(ConfigError, match="noise surrogate"):
        ScalarCodecTraining(codec=ScalarCodecConfig(quantizer="tcq8"), surrogate="ste", **MSE_ONLY)
    with pytest.raises(ConfigError, match="trains a 'sq' codec"):
        ScalarCodecTraining(init_from=str(stage_a_checkpoint), **MSE_ONLY)
    with pytest.raises(ConfigError, match="quantizer"):
        ScalarCodecConfig(quantizer="tcq6")
