"""Stage A through the Lightning CLI: configs parse, losses fall, resume continues, init_from loads,
DDP keeps codebook statistics identical across ranks, W&B works offline."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from conftest import CONFIGS, fit
from probes import ResumeProbe
from datamodules import sample_photo_paths
from rdvq.errors import CheckpointError
from rdvq.image_io import read_image
from rdvq.app.training import run_training_cli
from rdvq.stages import AdversarialConfig, DistortionConfig, RateAdaptation, VQPretrain
from rdvq.tokenizer import TokenizerConfig

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"
TINY = TokenizerConfig(base_channels=8, channel_mult=[1, 2, 2], scales=[4], embed_dim=8, codebook_size=32)


class FixedBatch(pl.LightningDataModule):
    def __init__(self, batch: torch.Tensor, steps: int) -> None:
        super().__init__()
        self.batch, self.steps = batch, steps

    def train_dataloader(self) -> DataLoader:
        return DataLoader([self.batch] * self.steps, batch_size=None)


class Recorder(pl.Callback):
    def __init__(self) -> None:
        self.mse: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.mse.append(float(trainer.callback_metrics["train/mse"]))


def _trainer(steps: int, callbacks=()) -> pl.Trainer:
    return pl.Trainer(
        max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=list(callbacks),
    )


def test_loss_falls_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    photo = read_image(sample_photo_paths("train")[0])
    batch = torch.stack([photo[:, 32 * i : 32 * i + 32, 100:132] for i in range(4)])
    model = VQPretrain(tokenizer=TINY, distortion=DistortionConfig(perceptual_weight=0.0),
                       adversarial=AdversarialConfig(weight=0.0),
                       optimizer=lambda p: torch.optim.Adam(p, lr=3e-3))
    recorder = Recorder()
    _trainer(40, [recorder]).fit(model, FixedBatch(batch, 40))
    first, last = sum(recorder.mse[:5]) / 5, sum(recorder.mse[-5:]) / 5
    assert last < 0.6 * first, (first, last)


def test_gan_starts_relative_to_the_stage_and_counts_one_step_per_batch() -> None:
    torch.manual_seed(0)
    model = VQPretrain(tokenizer=TINY, distortion=DistortionConfig(perceptual_weight=0.0),
                       adversarial=AdversarialConfig(weight=0.1, start_step=3, base_channels=8, num_layers=2),
                       optimizer=lambda p: torch.optim.Adam(p, lr=1e-3),
                       disc_optimizer=lambda p: torch.optim.Adam(p, lr=1e-3))
    before = [p.detach().clone() for p in model.distortion.discriminator.parameters()]
    trainer = _trainer(6)
    trainer.fit(model, FixedBatch(torch.rand(2, 3, 32, 32), 6))
    assert trainer.global_step == 6  # the discriminator step does not count as a training step
    assert any(not torch.equal(a, b) for a, b in zip(before, model.distortion.discriminator.parameters()))
    assert not model.distortion.gan_active(2) and model.distortion.gan_active(3)


@pytest.mark.parametrize("config", sorted(p.name for p in EXPERIMENTS.glob("*.yaml")))
def test_every_experiment_config_parses_and_prints_back(config: str, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_training_cli(["fit", "--config", str(EXPERIMENTS / config), "--print_config"])
    assert exit_info.value.code == 0
    printed = tmp_path / "printed.yaml"
    printed.write_text(capsys.readouterr().out)
    with pytest.raises(SystemExit) as exit_info:
        run_training_cli(["fit", "--config", str(printed), "--print_config"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == printed.read_text()


@pytest.mark.parametrize("fragment", sorted(p.name for p in (EXPERIMENTS / "loggers").glob("*.yaml")))
def test_logger_fragments_parse_on_top_of_a_stage_config(fragment: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_training_cli(["fit", "--config", str(EXPERIMENTS / "quickstart.yaml"),
                          "--config", str(EXPERIMENTS / "loggers" / fragment), "--print_config"])
    assert exit_info.value.code == 0


def test_resume_from_last_continues_step_and_optimizer_state(tmp_path: Path) -> None:
    fit("tiny_stage_a.yaml", tmp_path)
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 6
    cli = fit("tiny_stage_a.yaml", tmp_path, "--trainer.max_steps", "8", "--ckpt_path", "last",
              "--trainer.callbacks+=probes.ResumeProbe")
    probe = next(c for c in cli.trainer.callbacks if isinstance(c, ResumeProbe))
    assert probe.start_step == 6
    assert cli.trainer.global_step == 8
    # The run ended between two periodic saves (every 3 steps): last.ckpt still holds its end.
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 8
    saved_state = saved["optimizer_states"][0]["state"]
    assert saved_state.keys() == probe.optimizer_state.keys()
    for key, tensors in probe.optimizer_state.items():
        for name, tensor in tensors.items():
            assert torch.equal(tensor, saved_state[key][name]), (key, name)


def test_a_killed_run_resumes_from_its_last_checkpoint(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "rdvq", "fit", "--config", str(CONFIGS / "tiny_stage_a.yaml"),
               "--trainer.default_root_dir", str(tmp_path), "--trainer.max_steps", "100000"]
    last = tmp_path / "checkpoints" / "last.ckpt"
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if last.exists() and torch.load(last, weights_only=True)["global_step"] >= 6:
                break
            time.sleep(0.5)
        process.send_signal(signal.SIGKILL)  # no chance to clean up or finish a write
    finally:
        process.wait()
    saved = torch.load(last, weights_only=True)["global_step"]  # whole despite the kill (atomic writes)
    assert saved >= 6
    cli = fit("tiny_stage_a.yaml", tmp_path, "--ckpt_path", "last", "--trainer.max_steps", str(saved + 2))
    assert cli.trainer.global_step == saved + 2


def test_init_from_loads_weights_and_reports_keys(stage_a_checkpoint: Path, caplog) -> None:
    saved = torch.load(stage_a_checkpoint, weights_only=True)["state_dict"]
    with caplog.at_level("INFO"):
        model = RateAdaptation(init_from=str(stage_a_checkpoint))
    assert model.codec.tokenizer.config == TokenizerConfig.from_dict(
        torch.load(stage_a_checkpoint, weights_only=True)["rdvq_codec"]["tokenizer"])
    for name, tensor in model.codec.tokenizer.state_dict().items():
        if tensor.is_floating_point() and not tensor.isnan().any():
            assert torch.equal(tensor, saved[f"codec.tokenizer.{name}"]), name
    assert "missing" in caplog.text and "codec.entropy_model." in caplog.text


def test_init_from_a_foreign_file_is_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.ckpt"
    bogus.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        RateAdaptation(init_from=str(bogus))
    result = subprocess.run(
        [sys.executable, "-m", "rdvq", "fit", "--config", str(CONFIGS / "tiny_stage_b.yaml"),
         "--model.init_from", str(bogus), "--trainer.default_root_dir", str(tmp_path)],
        capture_output=True, text=True, cwd=REPO,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: cannot read checkpoint")


def test_bad_config_value_is_one_line_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rdvq", "fit", "--config", str(CONFIGS / "tiny_stage_a.yaml"),
         "--model.init_args.tokenizer.scales", "[12]", "--trainer.default_root_dir", str(tmp_path)],
        capture_output=True, text=True, cwd=REPO,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "error: tokenizer: scales, attention_scales and stem must be powers of two, got 12"


@pytest.mark.slow
def test_ddp_two_processes_keep_codebook_statistics_identical(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    result = subprocess.run(
        [sys.executable, "-m", "rdvq", "fit", "--config", str(CONFIGS / "tiny_stage_a.yaml"),
         "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.max_steps", "4",
         "--trainer.default_root_dir", str(tmp_path), "--trainer.callbacks+=probes.QuantizerStateDump",
         "--data.init_args.num_workers", "0"],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    ranks = [torch.load(tmp_path / f"quantizer_rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert int(ranks[0]["world_size"]) == 2
    for key in ranks[0]:
        a, b = ranks[0][key], ranks[1][key]
        assert torch.equal(a, b) or (a.isnan().all() and b.isnan().all()), key
    # Counts are summed over both ranks: the six sample photos split three per rank, so each step
    # counts 2 ranks x 3 crops x (32/4)^2 tokens = 384 indices (one rank alone would see 192). The
    # dead-code window (3 steps) was emptied after step 3, so it holds step 4 alone; the EMA (decay
    # 0.99, from zero) holds 0.01 x 384 x (1 + 0.99 + 0.99^2 + 0.99^3).
    per_step = 2 * 3 * (32 // 4) ** 2
    assert int(ranks[0]["window_steps"]) == 1 and float(ranks[0]["window_counts"].sum()) == per_step
    assert float(ranks[0]["ema_counts"].sum()) == pytest.approx(per_step * (1 - 0.99**4), rel=1e-9)


@pytest.mark.slow
def test_ddp_static_table_counts_every_rank(stage_a_checkpoint: Path, tmp_path: Path) -> None:
    """Stage B's static table sums its counts over both ranks. The six sample photos split three per
    rank, so each step sees 2 ranks x 3 crops of 32 x 32 (64 indices each at stride 4): after 3
    steps the table must hold exactly 1152 counts, which one rank alone could not have seen."""
    result = subprocess.run(
        [sys.executable, "-m", "rdvq", "fit", "--config", str(CONFIGS / "tiny_stage_b.yaml"),
         "--model.init_from", str(stage_a_checkpoint), "--model.init_args.entropy_model=StaticConfig",
         "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.max_steps", "3",
         "--trainer.val_check_interval", "100", "--trainer.default_root_dir", str(tmp_path)],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    counts = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]["codec.entropy_model.counts_0"]
    assert int(counts.sum()) == 3 * 2 * 3 * 64


def test_wandb_logger_runs_offline(tmp_path: Path) -> None:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    result = subprocess.run(
        [sys.executable, "-m", "rdvq", "fit", "--config", str(CONFIGS / "tiny_stage_a.yaml"),
         "--config", str(EXPERIMENTS / "loggers" / "wandb.yaml"), "--trainer.max_steps", "2",
         "--trainer.default_root_dir", str(tmp_path)],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert runs, "no offline W&B run was written"
