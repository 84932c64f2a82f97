"""The lambda/tau sweep callback (RDVQ's progressive curriculum) on stage C: one checkpoint per RD
point named by its lambda and tau, a manifest ``rdvq eval`` reads, and a run killed with SIGKILL in
its second point resumes there with ``--ckpt_path last`` and ends with three point checkpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from callbacks import RDSweep, SweepTarget
from conftest import CONFIGS, fit
from rd_probes import RankReport
from rdvq.app.main import main
from rdvq.checkpointing import RD_POINT_KEY
from rdvq.errors import ConfigError
from rdvq.sweep_manifest import read_manifest

REPO = Path(__file__).resolve().parents[1]
NAMES = ["rd_point0_lambda0.02_tau0.05.ckpt", "rd_point1_lambda0.1_tau0.05.ckpt", "rd_point2_lambda0.5_tau0.02.ckpt"]
POINTS = [(0.02, 0.05), (0.1, 0.05), (0.5, 0.02)]


def test_a_sweep_killed_in_its_second_point_resumes_there_and_ends_with_three_points(
    stage_b_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    common = ["--config", str(CONFIGS / "tiny_sweep.yaml"), "--model.init_from", str(stage_b_checkpoint),
              "--trainer.default_root_dir", str(tmp_path)]
    killed = subprocess.run(
        [sys.executable, "-m", "rdvq", "fit", *common, "--trainer.callbacks+=rd_probes.KillAt",
         "--trainer.callbacks.step", "4"],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO / "tests")}, timeout=600,
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    folder = tmp_path / "checkpoints"
    assert sorted(p.name for p in folder.glob("*.ckpt")) == ["last.ckpt", NAMES[0]]
    last = torch.load(folder / "last.ckpt", weights_only=True)
    assert last["global_step"] == 4  # inside the second point (steps 3 to 6)

    cli = fit("tiny_sweep.yaml", tmp_path, "--model.init_from", str(stage_b_checkpoint), "--ckpt_path", "last",
              "--trainer.callbacks+=rd_probes.RankReport")
    report = next(c for c in cli.trainer.callbacks if isinstance(c, RankReport)).start
    assert report == {"step": 4, "lmbda": 0.1, "tau": 0.05}  # the same point, the same step
    assert cli.trainer.global_step == 9  # the sweep stopped the run after its last point
    assert sorted(p.name for p in folder.glob("*.ckpt")) == ["last.ckpt", *NAMES]
    for index, name in enumerate(NAMES):
        saved = torch.load(folder / name, weights_only=True)
        assert saved["global_step"] == 3 * (index + 1)
        assert (saved[RD_POINT_KEY]["lmbda"], saved[RD_POINT_KEY]["tau"]) == POINTS[index]
        assert saved["callbacks"]["RDSweep"]["index"] == index
    run, points = read_manifest(folder / "rd_sweep.json")
    assert run == tmp_path.name and [p.name for p, _ in points] == NAMES
    assert [(pt.lmbda, pt.tau, pt.step) for _, pt in points] == [(l, t, 3 * (i + 1)) for i, (l, t) in enumerate(POINTS)]

    # Every point is registered for rdvq eval: the manifest is one curve, its points named by lambda and tau.
    out = tmp_path / "eval"
    code = main(["eval", str(folder / "rd_sweep.json"), "--images", str(_tiny_images(tmp_path)), "--out-dir", str(out)])
    assert code == 0, capsys.readouterr().err
    (curve_file,) = out.glob("*.json")
    curve = json.loads(curve_file.read_text())
    assert curve["name"] == tmp_path.name and len(curve["results"]["bpp"]) == 3
    assert sorted(p["label"] for p in curve["points"]) == ["λ=0.02 τ=0.05", "λ=0.1 τ=0.05", "λ=0.5 τ=0.02"]


def _tiny_images(root: Path) -> Path:
    from rdvq.image_io import read_image, write_png
    from rdvq.sample_photos import sample_photo_paths

    folder = root / "images"
    write_png(folder / "photo.png", read_image(sample_photo_paths("val")[0])[:, :64, :64])
    return folder


def test_a_resumed_sweep_must_be_the_same_sweep() -> None:
    sweep = RDSweep([SweepTarget(0.1, 0.05), SweepTarget(0.5, 0.05)], steps_per_point=3)
    state = sweep.state_dict()
    other = RDSweep([SweepTarget(0.1, 0.05), SweepTarget(0.9, 0.05)], steps_per_point=3)
    with pytest.raises(ConfigError, match="this run was a sweep over"):
        other.load_state_dict(state)
    with pytest.raises(ConfigError, match="steps_per_point must be >= 1"):
        RDSweep([SweepTarget(0.1)], steps_per_point=0)
    with pytest.raises(ConfigError, match="at least one point"):
        RDSweep([], steps_per_point=3)


def test_a_sweep_needs_a_stage_with_a_trade_off_and_enough_steps(tmp_path: Path) -> None:
    sweep = ["--trainer.callbacks+=callbacks.RDSweep", "--trainer.callbacks.steps_per_point", "3",
             "--trainer.callbacks.points", "[{lmbda: 0.1}, {lmbda: 0.2}]"]
    with pytest.raises(ConfigError, match="VQPretrain has none"):
        fit("tiny_stage_a.yaml", tmp_path / "a", *sweep)
    with pytest.raises(ConfigError, match="max_steps 5 ends the run before the sweep's 2 x 3 = 6 steps"):
        fit("tiny_sq.yaml", tmp_path / "b", *sweep, "--trainer.max_steps", "5")


def test_the_example_sweep_config_parses_and_prints_back(tmp_path: Path, capsys) -> None:
    from rdvq.app.training import run_training_cli

    config = REPO / "experiments" / "sweeps" / "sq_rd_sweep_cpu.yaml"
    with pytest.raises(SystemExit):
        run_training_cli(["fit", "--config", str(config), "--print_config"])
    printed = tmp_path / "printed.yaml"
    printed.write_text(capsys.readouterr().out)
    with pytest.raises(SystemExit):
        run_training_cli(["fit", "--config", str(printed), "--print_config"])
    assert capsys.readouterr().out == printed.read_text()
    assert "callbacks.RDSweep" in printed.read_text() and "lmbda: 0.004" in printed.read_text()
