"""W&B sweeps: the command a W&B agent builds from each sweep definition (wandb's own macro
expansion, ``${args}`` as ``--key=value``) reaches ``rdvq fit`` with the sweep's values; one such
command runs end to end with offline W&B logging."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args

from conftest import CONFIGS
from rdvq.app.training import run_training_cli

REPO = Path(__file__).resolve().parents[1]
SWEEPS = sorted((REPO / "experiments" / "sweeps").glob("*.yaml"))
DEFINITIONS = [p for p in SWEEPS if "command" in yaml.safe_load(p.read_text())]


def agent_command(definition: dict, values: dict) -> list[str]:
    """The command line a W&B agent starts for a run with ``values`` (what the server sends), built
    the way ``wandb agent`` builds it: macros in the sweep's ``command`` replaced by wandb's lists."""
    command = create_sweep_command(list(definition["command"]))
    macros = create_sweep_command_args({"args": {k: {"value": v} for k, v in values.items()}})
    macros.update(env=["/usr/bin/env"], interpreter=["python"], program=[definition["program"]])
    expanded: list[str] = []
    for chunk in map(str, command):
        expanded += macros.get(chunk[2:-1], []) if chunk.startswith("${") and chunk.endswith("}") else [chunk]
    return expanded


def first_values(definition: dict) -> dict:
    return {k: spec["values"][0] if "values" in spec else spec["value"] for k, spec in definition["parameters"].items()}


def _lookup(config: dict, dotted: str):
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node


def test_there_are_sweep_definitions() -> None:
    assert {p.name for p in DEFINITIONS} >= {"stage_c_lambda_tau.yaml", "sq_lambda.yaml"}


@pytest.mark.parametrize("path", DEFINITIONS, ids=[p.name for p in DEFINITIONS])
def test_every_sweeps_values_arrive_in_the_parsed_config(path: Path, capsys, monkeypatch) -> None:
    definition = yaml.safe_load(path.read_text())
    values = first_values(definition)
    command = agent_command(definition, values)
    assert command[:3] == ["/usr/bin/env", "rdvq", "fit"]
    assert all(f"--{k}={v}" in command for k, v in values.items())  # the agent's form, after every --config
    assert max(i for i, c in enumerate(command) if c == "--config") < min(i for i, c in enumerate(command) if "=" in c)
    monkeypatch.chdir(REPO)
    with pytest.raises(SystemExit) as exit_info:
        run_training_cli(command[2:] + ["--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    for key, value in values.items():
        assert _lookup(printed, key) == value, key
    assert printed["trainer"]["default_root_dir"] == "runs/sweeps/local/local"


def test_an_agent_command_runs_end_to_end_offline(tmp_path: Path) -> None:
    """Plays the agent for one run: the server's values as ``${args}``, the run and sweep ids in the
    environment, W&B offline; the run trains with those values in its own run directory."""
    definition = yaml.safe_load((CONFIGS / "tiny_wandb_sweep.yaml").read_text())
    command = agent_command(definition, first_values(definition))
    for folder in ("experiments", "tests"):  # the agent runs from the repository root: a stand-in
        (tmp_path / folder).symlink_to(REPO / folder)
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_SWEEP_ID": "sweep1",
           "WANDB_RUN_ID": "run1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    run = tmp_path / "runs" / "sweeps" / "sweep1" / "run1"
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 2  # trainer.max_steps=2 arrived
    assert saved["rdvq_rd_point"] == {"lmbda": 0.037, "tau": None}  # model.init_args.lmbda=0.037 arrived
    assert list((run / "wandb").glob("offline-run-*")), "no offline W&B run was written"
