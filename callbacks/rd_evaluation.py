"""Real-file rate-distortion evaluation during training.

Every ``every_n_train_steps`` steps (or ``every_n_epochs`` epochs) the codec exactly as a
checkpoint of this moment would deploy it (the stage's ``deployed_codec()``) compresses the
validation images to real files through :mod:`rdvq.evaluation`; the real bpp, the model's
estimate, their gap, PSNR, MS-SSIM and, where their weights are installed, LPIPS-Alex, LPIPS-VGG
and DISTS (aggregated by :func:`rdvq.evaluation.summarize`) go to every logger, and the run's RD
curve so far is written as a results JSON (CompressAI's layout) and PNG plots under
``<run dir>/rd_evaluation/``. FID and KID need more patches than a validation set gives and are
left to ``rdvq eval``. Under DDP each rank codes a share of the images and the
results are gathered, so every rank logs the same numbers for the whole set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import WandbLogger

from rdvq.run_paths import run_dir
from rdvq.errors import ConfigError
from rdvq.evaluation import CURVE_KEYS, ImageResult, PerceptualMetrics, evaluate, gather, summarize
from rdvq.plots import plot_rd
from rdvq.rd_curves import RDCurve, write_curve

FOLDER = "rd_evaluation"


def rd_folder(trainer: pl.Trainer) -> Path:
    """Where :class:`RDEvaluation` writes: ``<run dir>/rd_evaluation``."""
    return run_dir(trainer) / FOLDER


class RDEvaluation(pl.Callback):
    """``max_images``: evaluate only the first N validation images (None: all of them)."""

    def __init__(
        self, every_n_train_steps: int | None = None, every_n_epochs: int | None = None, max_images: int | None = None
    ) -> None:
        super().__init__()
        if (every_n_train_steps is None) == (every_n_epochs is None):
            raise ConfigError("RDEvaluation needs exactly one of every_n_train_steps and every_n_epochs")
        for name, value in (("every_n_train_steps", every_n_train_steps), ("every_n_epochs", every_n_epochs),
                            ("max_images", max_images)):
            if value is not None and value < 1:
                raise ConfigError(f"RDEvaluation {name} must be >= 1, got {value}")
        self.every_n_train_steps = every_n_train_steps
        self.every_n_epochs = every_n_epochs
        self.max_images = max_images
        self.history: list[dict[str, float]] = []  # one entry per evaluation, kept in checkpoints
        self._metrics: PerceptualMetrics | None = None

    # ------------------------------------------------------------------ when
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.deployed_codec()  # a stage without an entropy model fails here, not after N steps

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if self.every_n_train_steps and step % self.every_n_train_steps == 0:
            self.evaluate(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.every_n_epochs and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self.evaluate(trainer, pl_module)

    # ------------------------------------------------------------------ what
    def _images(self, trainer: pl.Trainer) -> list[torch.Tensor]:
        datamodule = trainer.datamodule
        if datamodule is None:
            raise ConfigError("RDEvaluation takes its images from the data module's validation set; this run has none")
        dataset = datamodule.val_dataloader().dataset
        count = len(dataset) if self.max_images is None else min(self.max_images, len(dataset))
        return [dataset[i] for i in range(count)]

    def evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        """Code this rank's share of the validation images, gather every rank's results, log and plot."""
        step = trainer.global_step
        if self.history and self.history[-1]["step"] == step:  # e.g. a run resumed at this very step
            return self.history[-1]
        codec = pl_module.deployed_codec()
        images = self._images(trainer)
        mine = [(f"val{i:03d}", images[i]) for i in range(trainer.global_rank, len(images), trainer.world_size)]
        files = rd_folder(trainer) / f"step{step:07d}"
        if self._metrics is None:  # built once, on first use: the perceptual networks take seconds to load
            self._metrics = PerceptualMetrics.installed(fid_patch=None)
        results = gather(evaluate(codec, mine, files=files, estimate=True, metrics=self._metrics).images)
        entry = self._summary(step, sorted(results, key=lambda r: r.name))
        self.history.append(entry)
        if trainer.is_global_zero:
            metrics = {f"rd/{k}": v for k, v in entry.items() if k != "step" and v is not None}
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=step)
            self._write_curve(trainer)
        return entry

    @staticmethod
    def _summary(step: int, results: list[ImageResult]) -> dict[str, float]:
        summary = summarize(results)
        keep = ("bpp_gap_percent", "psnr", "ms_ssim", "ms_ssim_db", "lpips", "lpips_vgg", "dists", "bit_exact", "images")
        return {"step": step, "bpp_real": summary["bpp"], "bpp_estimated": summary["estimated_bpp"],
                **{name: summary[name] for name in keep}}

    def _write_curve(self, trainer: pl.Trainer) -> None:
        """The run so far: real and estimated rate against quality, one point per evaluation."""
        folder = rd_folder(trainer)
        run = run_dir(trainer).resolve().name
        real = self._curve(f"{run} (real files)", "bpp_real", labelled=True)
        estimated = self._curve(f"{run} (model estimate)", "bpp_estimated", labelled=False)
        write_curve(folder / "rd_curve.json", real)
        for metric in ("psnr-rgb", "ms-ssim-db", "lpips-alex", "lpips-vgg", "dists"):
            path = folder / f"rd_{metric}.png"
            title = f"{run}: validation set ({int(self.history[-1]['images'])} images), step {self.history[-1]['step']}"
            if plot_rd(path, [real, estimated], metric, title=title):
                for logger in trainer.loggers:
                    if isinstance(logger, WandbLogger):
                        logger.log_image(key=f"rd/{metric}", images=[str(path)], step=trainer.global_step)

    def _curve(self, name: str, rate: str, labelled: bool) -> RDCurve:
        entries = [e for e in self.history if e[rate] is not None]
        results = {"bpp": [e[rate] for e in entries]}
        for key, field in CURVE_KEYS.items():
            if all(e.get(field) is not None for e in entries):
                results[key] = [e[field] for e in entries]
        points = [{"label": f"step {e['step']}" if labelled else None, "step": e["step"]} for e in entries]
        return RDCurve(name, "rdvq RDEvaluation during training (validation set)", results, {"source": "RDEvaluation"}, points)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {"history": [dict(e) for e in self.history]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [dict(e) for e in state_dict.get("history", [])]


