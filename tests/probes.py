"""Test-only callbacks, attached through the CLI with ``--trainer.callbacks+=probes.<Name>``."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch


class ResumeProbe(pl.Callback):
    """Records where a (resumed) run starts: its global step and first optimizer's state."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start_step = trainer.global_step
        self.optimizer_state = {
            k: {name: t.clone() for name, t in v.items() if torch.is_tensor(t)}
            for k, v in trainer.optimizers[0].state_dict()["state"].items()
        }


class QuantizerStateDump(pl.Callback):
    """Each DDP rank saves its quantizer state after training."""

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        quantizer = pl_module.codec.tokenizer.quantizers[0]
        state = {k: v.detach().cpu().clone() for k, v in quantizer.state_dict().items()}
        state["world_size"] = torch.tensor(trainer.world_size)
        torch.save(state, Path(trainer.default_root_dir) / f"quantizer_rank{trainer.global_rank}.pt")
