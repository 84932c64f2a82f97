"""Writes validation reconstructions next to the originals as PNGs (and to W&B when it is the logger)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import WandbLogger

from rdvq.image_io import write_png


class ReconstructionLogger(pl.Callback):
    """Saves ``original | reconstruction`` side by side for the first ``num_images`` validation images.

    Files go to ``<run dir>/reconstructions/step<global step>_<index>.png``; ``last_paths`` holds the
    files of the latest validation, which quickstart prints.
    """

    def __init__(self, num_images: int = 4) -> None:
        super().__init__()
        self.num_images = num_images
        self.last_paths: list[Path] = []

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.last_paths = []

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if batch_idx >= self.num_images or not trainer.is_global_zero or trainer.sanity_checking:
            return
        pair = torch.cat([outputs["x"][0], outputs["x_hat"][0]], dim=-1).detach().float().cpu()
        run_dir = Path(trainer.log_dir or trainer.default_root_dir)
        path = run_dir / "reconstructions" / f"step{trainer.global_step:06d}_{batch_idx}.png"
        write_png(path, pair)
        self.last_paths.append(path)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key=f"val/reconstruction_{batch_idx}", images=[pair], step=trainer.global_step)
