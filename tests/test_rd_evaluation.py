"""RDEvaluation: during training, the validation set as real files, metrics to every logger, and the
run's RD curve so far, for any codec family (here the scalar-quantization stage)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from callbacks import RDEvaluation
from conftest import fit
from rdvq.errors import ConfigError
from rdvq.evaluation import lpips_metric

EVALUATION = ["--trainer.callbacks+=callbacks.RDEvaluation", "--trainer.callbacks.every_n_train_steps", "2",
              "--data.init_args.val_center_crop", "176", "--data.init_args.val_max_images", "2"]


def test_real_files_every_n_steps_logged_and_plotted(tmp_path: Path) -> None:
    cli = fit("tiny_sq.yaml", tmp_path, *EVALUATION, "--trainer.max_steps", "4", "--trainer.val_check_interval", "100")
    callback = next(c for c in cli.trainer.callbacks if isinstance(c, RDEvaluation))
    assert [e["step"] for e in callback.history] == [2, 4]
    folder = tmp_path / "rd_evaluation"
    for entry in callback.history:
        files = sorted((folder / f"step{entry['step']:07d}").glob("*.rdvq"))
        assert [f.name for f in files] == ["val000.rdvq", "val001.rdvq"]
        sizes = [f.stat().st_size for f in files]
        assert entry["bpp_real"] == pytest.approx(sum(s * 8 / (176 * 176) for s in sizes) / 2)
        assert entry["bpp_gap_percent"] == pytest.approx(100 * (entry["bpp_real"] / entry["bpp_estimated"] - 1))
        assert entry["bit_exact"] == 1.0 and entry["ms_ssim"] is not None
        if lpips_metric() is None:  # weights missing: reported as unavailable, never invented
            assert entry["lpips"] is None
        else:
            assert 0.0 < entry["lpips"] < 1.0
    with (tmp_path / "logs" / "version_0" / "metrics.csv").open() as handle:
        logged = [row for row in csv.DictReader(handle) if row.get("rd/bpp_real")]
    assert [int(r["step"]) for r in logged] == [2, 4]
    for name in ("rd/bpp_real", "rd/bpp_estimated", "rd/bpp_gap_percent", "rd/psnr", "rd/ms_ssim", "rd/ms_ssim_db"):
        assert all(r[name] for r in logged), name
    assert float(logged[-1]["rd/bpp_real"]) == pytest.approx(callback.history[-1]["bpp_real"])
    curve = json.loads((folder / "rd_curve.json").read_text())
    assert len(curve["results"]["bpp"]) == 2 and {"psnr-rgb", "ms-ssim-rgb"} <= curve["results"].keys()
    assert (folder / "rd_psnr-rgb.png").stat().st_size > 5_000 and (folder / "rd_ms-ssim-db.png").is_file()
    # The history travels in checkpoints, so a resumed run's plot keeps the points before the resume.
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["callbacks"]["RDEvaluation"]
    assert [e["step"] for e in saved["history"]] == [2, 4]


def test_bad_settings_are_config_errors(stage_a_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="exactly one of"):
        RDEvaluation()
    with pytest.raises(ConfigError, match="max_images must be >= 1"):
        RDEvaluation(every_n_epochs=1, max_images=0)
    with pytest.raises(Exception, match="has no entropy model"):  # stage A: nothing to code yet, before step 1
        fit("tiny_stage_a.yaml", tmp_path, *EVALUATION)
