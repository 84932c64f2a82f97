"""Stages C and D, the lambda/tau sweep and the RD evaluation under 2-process DDP on the CPU (gloo):
every rank ends with the same weights, gathered statistics cover both ranks' images, and each
checkpoint is written once. (Stages A and B: tests/test_training.py.)"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import CONFIGS
from rdvq.app.training import run_training_cli

REPO = Path(__file__).resolve().parents[1]
SWEEP = ["rd_point0_lambda0.02_tau0.05.ckpt", "rd_point1_lambda0.5_tau0.02.ckpt"]
# Two RD points of two steps, RD evaluation at the end, last.ckpt at the end only: what DDP changes, cheaply.
CALLBACKS = """[
  {class_path: callbacks.RDSweep, init_args: {steps_per_point: 2, points: [{lmbda: 0.02, tau: 0.05}, {lmbda: 0.5, tau: 0.02}]}},
  {class_path: callbacks.RDEvaluation, init_args: {every_n_train_steps: 4}},
  {class_path: callbacks.ResumableCheckpoint, init_args: {every_n_train_steps: 100, save_last: true, save_top_k: 0}}
]"""


def _ddp_fit(config: str, root: Path, *extra: str) -> None:
    command = [sys.executable, "-m", "rdvq", "fit", "--config", str(CONFIGS / config), "--trainer.devices", "2",
               "--trainer.strategy", "ddp", "--trainer.default_root_dir", str(root), *extra,
               "--trainer.callbacks+=rd_probes.RankReport"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def _ranks(root: Path) -> list[dict]:
    reports = [json.loads((root / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 for r in reports)
    assert reports[0]["digest"] == reports[1]["digest"]  # identical weights, buffers and tables on both ranks
    return reports


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())  # hidden temporary files of a write included


@pytest.mark.slow
def test_ddp_stage_c_sweep_and_rd_evaluation(stage_b_checkpoint: Path, tmp_path: Path) -> None:
    _ddp_fit("tiny_sweep.yaml", tmp_path, "--model.init_from", str(stage_b_checkpoint), "--trainer.callbacks", CALLBACKS,
             "--data.init_args.val_max_images", "2")
    assert [r["end_step"] for r in _ranks(tmp_path)] == [4, 4]
    assert _files(tmp_path / "checkpoints") == ["last.ckpt", *SWEEP, "rd_sweep.json"]
    for index, name in enumerate(SWEEP):
        assert torch.load(tmp_path / "checkpoints" / name, weights_only=True)["global_step"] == 2 * (index + 1)
    # Each rank coded its share of the two validation images; the logged numbers cover both.
    assert _files(tmp_path / "rd_evaluation" / "step0000004") == ["val000.rdvq", "val001.rdvq"]
    with (tmp_path / "logs" / "version_0" / "metrics.csv").open() as handle:
        logged = [row for row in csv.DictReader(handle) if row.get("rd/images")]
    assert [(int(r["step"]), float(r["rd/images"])) for r in logged] == [(4, 2.0)]


@pytest.mark.slow
def test_ddp_stage_d_decoder_retraining(stage_b_checkpoint: Path, tmp_path: Path) -> None:
    _ddp_fit("tiny_stage_d.yaml", tmp_path, "--model.init_from", str(stage_b_checkpoint), "--trainer.max_steps", "3",
             "--data.init_args.val_max_images", "2")
    assert [r["end_step"] for r in _ranks(tmp_path)] == [3, 3]
    assert _files(tmp_path / "checkpoints") == ["last.ckpt"]
    with (tmp_path / "logs" / "version_0" / "metrics.csv").open() as handle:
        validation = [row for row in csv.DictReader(handle) if row.get("val/psnr")]
    assert len(validation) == 1  # validated once, over both ranks' images


@pytest.mark.parametrize("fragment", ["gpus.yaml", "multinode.yaml"])
def test_distributed_fragments_parse_on_top_of_stage_configs(fragment: str, capsys) -> None:
    for stage in ("stage_a_rdvq_multiscale.yaml", "stage_c_joint_rd.yaml"):
        with pytest.raises(SystemExit) as exit_info:
            run_training_cli(["fit", "--config", str(REPO / "experiments" / stage),
                              "--config", str(REPO / "experiments" / "distributed" / fragment), "--print_config"])
        assert exit_info.value.code == 0
        trainer = yaml.safe_load(capsys.readouterr().out)["trainer"]
        assert trainer["accelerator"] == "gpu" and trainer["strategy"] == "ddp_find_unused_parameters_true"
        assert trainer["num_nodes"] == (1 if fragment == "gpus.yaml" else 2)
