"""Checkpointing that always leaves the final state of a run in ``last.ckpt``."""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint


class ResumableCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` is refreshed when training ends.

    Lightning writes ``last`` at the end of fit only if the run saved no ``last`` before, so a
    resumed run that stops between two periodic saves would leave an older step in ``last.ckpt``
    and a later ``--ckpt_path last`` would silently redo steps. (Uses Lightning's own record of
    the last saved step, a private attribute.)
    """

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        if self.save_last and trainer.global_step != self._last_global_step_saved:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
