"""Run paths (issue 12): a printed config reruns under whatever ``--trainer.default_root_dir`` says,
a new run never writes into another run's checkpoint folder, and ``--ckpt_path last`` resumes from
``last.ckpt`` of this run's own folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from rdvq.run_paths import checkpoint_dir
from conftest import CONFIGS, fit
from probes import ResumeProbe
from rdvq.errors import ConfigError
from rdvq.app.training import RdvqLightningCLI, run_training_cli

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"
STAGE_CONFIGS = sorted(p.name for p in EXPERIMENTS.glob("*.yaml"))
FRAGMENTS = sorted(p.name for p in (EXPERIMENTS / "loggers").glob("*.yaml"))


class _Parsed(Exception):
    pass


def _print_config(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        run_training_cli(["fit", *args, "--print_config"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def _parse_only(monkeypatch, *args: str):
    """The fit config as the CLI will instantiate it (links applied), without building anything."""
    original = RdvqLightningCLI.before_instantiate_classes

    def capture(self) -> None:
        original(self)
        raise _Parsed(self.config["fit"])

    monkeypatch.setattr(RdvqLightningCLI, "before_instantiate_classes", capture)
    with pytest.raises(_Parsed) as parsed:
        run_training_cli(["fit", *args])
    return parsed.value.args[0]


def _as_list(value) -> list:
    return value if isinstance(value, list) else [] if value in (None, True, False) else [value]


def _path_keys(node, found: list[tuple[str, object]], prefix: str = "") -> list[tuple[str, object]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("save_dir", "dirpath", "default_root_dir"):
                found.append((prefix + key, value))
            _path_keys(value, found, f"{prefix}{key}.")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _path_keys(value, found, f"{prefix}{index}.")
    return found


def _stderr_error_line(result: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    return result.stderr.strip().splitlines()[-1]


def _earlier_run(root: Path, stage_a_checkpoint: Path) -> Path:
    """``root`` as a finished tiny stage A run (6 steps) left it: its checkpoint folder, copied from
    the session's run, which is cheaper than training again."""
    shutil.copytree(stage_a_checkpoint.parent, root / "checkpoints")
    return root / "checkpoints"


def _rdvq_fit(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "rdvq", "fit", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)


# --- 1. printed configs hold no run path and rerun where they are told ------------------------------


@pytest.mark.parametrize(
    "config, fragments",
    [(config, ()) for config in STAGE_CONFIGS] + [("quickstart.yaml", (fragment,)) for fragment in FRAGMENTS],
    ids=[*STAGE_CONFIGS, *(f"quickstart.yaml+{fragment}" for fragment in FRAGMENTS)],
)
def test_printed_config_has_no_run_path_but_the_root_and_follows_an_override(
    config: str, fragments: tuple[str, ...], tmp_path: Path, capsys, monkeypatch
) -> None:
    sources = ["--config", str(EXPERIMENTS / config)]
    for fragment in fragments:
        sources += ["--config", str(EXPERIMENTS / "loggers" / fragment)]
    printed = tmp_path / "printed.yaml"
    printed.write_text(_print_config(capsys, *sources))
    document = yaml.safe_load(printed.read_text())
    paths = dict(_path_keys(document, []))
    assert paths.pop("trainer.default_root_dir")
    # Derived at run time, never stored: null, or a logger's own default that the link replaces
    # (WandbLogger's save_dir=".").
    assert paths and all(value in (None, ".") for value in paths.values()), paths
    assert "overwrite" not in document
    assert _print_config(capsys, "--config", str(printed)) == printed.read_text()  # parses back unchanged

    elsewhere = tmp_path / "elsewhere"
    parsed = _parse_only(monkeypatch, "--config", str(printed), "--trainer.default_root_dir", str(elsewhere))
    loggers = _as_list(parsed.trainer.logger)
    assert loggers and all(spec.init_args.save_dir == str(elsewhere) for spec in loggers)
    checkpoints = [spec for spec in _as_list(parsed.trainer.callbacks) if "dirpath" in spec.init_args]
    assert checkpoints
    for spec in checkpoints:
        assert spec.init_args.dirpath == str(elsewhere / "checkpoints")
        assert spec.init_args.enable_version_counter is False


def test_a_stale_path_in_an_older_printed_config_is_replaced(tmp_path: Path, monkeypatch) -> None:
    """Configs printed before run paths were derived hold resolved paths; they follow the root too."""
    document = yaml.safe_load((CONFIGS / "tiny_stage_a.yaml").read_text())
    document["trainer"]["logger"][0]["init_args"]["save_dir"] = "runs/tiny"
    document["trainer"]["callbacks"][0]["init_args"]["dirpath"] = "runs/tiny/checkpoints"
    old = tmp_path / "old.yaml"
    old.write_text(yaml.safe_dump(document))
    parsed = _parse_only(monkeypatch, "--config", str(old), "--trainer.default_root_dir", str(tmp_path / "x"))
    assert parsed.trainer.logger[0].init_args.save_dir == str(tmp_path / "x")
    assert parsed.trainer.callbacks[0].init_args.dirpath == str(tmp_path / "x" / "checkpoints")


def test_printed_quickstart_config_writes_everything_under_the_new_root(tmp_path: Path, capsys, monkeypatch) -> None:
    """The issue's commands: print quickstart.yaml, rerun it with another default_root_dir."""
    printed = tmp_path / "my.yaml"
    printed.write_text(_print_config(capsys, "--config", str(EXPERIMENTS / "quickstart.yaml")))
    workdir = tmp_path / "cwd"  # relative paths of the printed config (runs/quickstart) would land here
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    elsewhere = tmp_path / "elsewhere"
    cli = run_training_cli([
        "fit", "--config", str(printed), "--trainer.max_steps", "2", "--trainer.default_root_dir", str(elsewhere),
        "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1",
        "--trainer.enable_progress_bar", "false",
    ])
    assert cli.trainer.global_step == 2
    assert list(workdir.iterdir()) == []
    written = sorted(str(p.relative_to(elsewhere)) for p in elsewhere.rglob("*") if p.is_file())
    assert "checkpoints/last.ckpt" in written
    assert "logs/version_0/metrics.csv" in written and "logs/version_0/config.yaml" in written
    assert any(name.startswith("logs/version_0/reconstructions/") for name in written)
    # The config a run saves holds the paths it used; rerun elsewhere, they follow the new root.
    saved = elsewhere / "logs" / "version_0" / "config.yaml"
    paths = dict(_path_keys(yaml.safe_load(saved.read_text()), []))
    assert paths.pop("trainer.default_root_dir") == str(elsewhere)
    assert all(str(value).startswith(str(elsewhere)) for value in paths.values()), paths
    again = tmp_path / "again"
    parsed = _parse_only(monkeypatch, "--config", str(saved), "--trainer.default_root_dir", str(again))
    assert parsed.trainer.logger[0].init_args.save_dir == str(again)
    dirpaths = {spec.init_args.dirpath for spec in parsed.trainer.callbacks if "dirpath" in spec.get("init_args", {})}
    assert dirpaths == {str(again / "checkpoints")}


def test_the_sweep_takes_no_path_and_writes_its_points_into_this_runs_checkpoint_folder(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    """callbacks.RDSweep writes its own checkpoints: they follow --trainer.default_root_dir into the
    run's checkpoint folder, where a new run's check for an earlier run sees them."""
    sweep = ["--trainer.callbacks+=callbacks.RDSweep", "--trainer.callbacks.steps_per_point", "1",
             "--trainer.callbacks.points", "[{lmbda: 0.01}, {lmbda: 0.02}]", "--trainer.max_steps", "-1"]
    printed = yaml.safe_load(_print_config(capsys, "--config", str(CONFIGS / "tiny_sq.yaml"), *sweep))
    spec = next(c for c in printed["trainer"]["callbacks"] if c["class_path"] == "callbacks.RDSweep")
    assert sorted(spec["init_args"]) == ["points", "steps_per_point"]
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    run = tmp_path / "run"
    cli = fit("tiny_sq.yaml", run, *sweep)
    assert cli.trainer.global_step == 2 and list(workdir.iterdir()) == []
    assert sorted(p.name for p in checkpoint_dir(cli.trainer).iterdir()) == [
        "last.ckpt", "rd_point0_lambda0.01.ckpt", "rd_point1_lambda0.02.ckpt", "rd_sweep.json"]
    with pytest.raises(ConfigError, match=r"already holds checkpoints of an earlier run \(last.ckpt, rd_point0"):
        fit("tiny_sq.yaml", run, *sweep)


# --- 2. a new run never writes into another run's checkpoint folder ---------------------------------


def test_second_new_run_in_the_same_folder_stops_with_a_one_line_error(tmp_path: Path) -> None:
    fit("tiny_stage_a.yaml", tmp_path)
    folder = tmp_path / "checkpoints"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    result = _rdvq_fit("--config", str(CONFIGS / "tiny_stage_a.yaml"), "--trainer.default_root_dir", str(tmp_path))
    assert result.returncode == 1
    line = _stderr_error_line(result)
    assert line.startswith(f"error: {folder} already holds checkpoints of an earlier run (last.ckpt)")
    assert "--ckpt_path last" in line and "--trainer.default_root_dir" in line and "--overwrite true" in line
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # nothing written, no last-v1.ckpt
    assert not list((tmp_path / "logs").glob("version_1"))  # stopped before training


def test_overwrite_true_deletes_the_earlier_checkpoints_and_starts_over(
    tmp_path: Path, capsys, stage_a_checkpoint: Path
) -> None:
    _earlier_run(tmp_path, stage_a_checkpoint)
    stray = tmp_path / "checkpoints" / "step000003.ckpt"
    shutil.copy(tmp_path / "checkpoints" / "last.ckpt", stray)
    cli = fit("tiny_stage_a.yaml", tmp_path, "--overwrite", "true", "--trainer.max_steps", "2",
              "--trainer.callbacks+=probes.ResumeProbe")
    assert next(c for c in cli.trainer.callbacks if isinstance(c, ResumeProbe)).start_step == 0
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.ckpt"]
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2
    # A one-off action, not configuration: never part of a printed or saved config.
    printed = yaml.safe_load(
        _print_config(capsys, "--config", str(CONFIGS / "tiny_stage_a.yaml"), "--overwrite", "true"))
    assert "overwrite" not in printed
    assert "overwrite" not in yaml.safe_load((tmp_path / "logs" / "version_0" / "config.yaml").read_text())


def test_overwrite_with_a_ckpt_path_is_a_config_error(tmp_path: Path, stage_a_checkpoint: Path) -> None:
    _earlier_run(tmp_path, stage_a_checkpoint)
    with pytest.raises(ConfigError, match="cannot be combined with --ckpt_path"):
        fit("tiny_stage_a.yaml", tmp_path, "--overwrite", "true", "--ckpt_path", "last")
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


def test_continuing_another_runs_checkpoint_needs_an_empty_folder(tmp_path: Path, stage_a_checkpoint: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    fit("tiny_stage_a.yaml", first)
    _earlier_run(second, stage_a_checkpoint)
    with pytest.raises(ConfigError, match="already holds checkpoints of another run"):
        fit("tiny_stage_a.yaml", second, "--ckpt_path", str(first / "checkpoints" / "last.ckpt"))
    # Into an empty folder it continues the other run's state there (a branch of that run).
    branch = tmp_path / "branch"
    cli = fit("tiny_stage_a.yaml", branch, "--ckpt_path", str(first / "checkpoints" / "last.ckpt"),
              "--trainer.max_steps", "7")
    assert cli.trainer.global_step == 7
    assert sorted(p.name for p in (branch / "checkpoints").iterdir()) == ["last.ckpt"]


# --- 3. --ckpt_path last means this run's own last.ckpt, and says so --------------------------------


def test_ckpt_path_last_resumes_this_runs_last_ckpt_and_says_which(tmp_path: Path, caplog) -> None:
    run, other = tmp_path / "run", tmp_path / "other"
    fit("tiny_stage_a.yaml", run)
    fit("tiny_stage_a.yaml", other, "--trainer.max_steps", "3")
    # A newer last-v1.ckpt (as earlier versions wrote beside another run's last.ckpt): Lightning's own
    # resolution of "last" takes the newest last*.ckpt; rdvq's takes last.ckpt.
    decoy = run / "checkpoints" / "last-v1.ckpt"
    shutil.copy(other / "checkpoints" / "last.ckpt", decoy)
    os.utime(decoy, (time.time() + 60, time.time() + 60))
    with caplog.at_level("INFO"):
        cli = fit("tiny_stage_a.yaml", run, "--ckpt_path", "last", "--trainer.max_steps", "8",
                  "--trainer.callbacks+=probes.ResumeProbe")
    assert next(c for c in cli.trainer.callbacks if isinstance(c, ResumeProbe)).start_step == 6
    assert cli.trainer.global_step == 8
    last = os.path.realpath(run / "checkpoints" / "last.ckpt")
    assert f"--ckpt_path last: resuming from {last}" in caplog.text


def test_ckpt_path_last_before_any_checkpoint_starts_a_new_run(tmp_path: Path, caplog) -> None:
    """Set and forget, as in Lightning: a job that is requeued can pass --ckpt_path last from the start."""
    with caplog.at_level("INFO"):
        cli = fit("tiny_stage_a.yaml", tmp_path, "--ckpt_path", "last", "--trainer.max_steps", "2")
    assert cli.trainer.global_step == 2
    assert "no checkpoint in" in caplog.text and "starting a new run" in caplog.text


def test_ckpt_path_last_without_a_last_ckpt_beside_other_checkpoints_is_an_error(
    tmp_path: Path, stage_a_checkpoint: Path
) -> None:
    _earlier_run(tmp_path, stage_a_checkpoint)
    (tmp_path / "checkpoints" / "last.ckpt").rename(tmp_path / "checkpoints" / "step000006.ckpt")
    result = _rdvq_fit("--config", str(CONFIGS / "tiny_stage_a.yaml"), "--trainer.default_root_dir", str(tmp_path),
                       "--ckpt_path", "last")
    assert result.returncode == 1
    line = _stderr_error_line(result)
    assert "holds checkpoints (step000006.ckpt) but no last.ckpt" in line


def test_a_moved_run_resumes_without_a_versioned_last(tmp_path: Path) -> None:
    """Lightning forgets last_model_path when the folder changed; without its version counter the
    resumed run still writes last.ckpt, not last-v1.ckpt beside it."""
    fit("tiny_stage_a.yaml", tmp_path / "before")
    (tmp_path / "before").rename(tmp_path / "after")
    cli = fit("tiny_stage_a.yaml", tmp_path / "after", "--ckpt_path", "last", "--trainer.max_steps", "8")
    assert cli.trainer.global_step == 8
    assert sorted(p.name for p in (tmp_path / "after" / "checkpoints").iterdir()) == ["last.ckpt"]
    assert torch.load(tmp_path / "after" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 8


def test_validate_with_ckpt_path_last_loads_this_runs_last_ckpt(tmp_path: Path, caplog) -> None:
    fit("tiny_stage_a.yaml", tmp_path)
    with caplog.at_level("INFO"):
        run_training_cli(["validate", "--config", str(CONFIGS / "tiny_stage_a.yaml"),
                          "--trainer.default_root_dir", str(tmp_path), "--ckpt_path", "last"])
    assert f"--ckpt_path last: loading {os.path.realpath(tmp_path / 'checkpoints' / 'last.ckpt')}" in caplog.text
    with pytest.raises(ConfigError, match="no last.ckpt"):
        run_training_cli(["validate", "--config", str(CONFIGS / "tiny_stage_a.yaml"),
                          "--trainer.default_root_dir", str(tmp_path / "empty"), "--ckpt_path", "last"])
