"""Test-only callbacks for sweep, RD-evaluation and DDP tests (``--trainer.callbacks+=rd_probes.<Name>``)."""

from __future__ import annotations

import hashlib
import json
import os
import signal

import pytorch_lightning as pl
import torch

from rdvq.run_paths import run_dir


class KillAt(pl.Callback):
    """SIGKILLs its own process when batch ``step + 1`` starts, i.e. right after step ``step`` was
    saved: no hook, no cleanup, no finished write runs after it."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: pl.Trainer, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class RankReport(pl.Callback):
    """Each rank writes where training started (step, RD point) and a digest of every tensor of the
    module at the end to ``<run dir>/rank<r>.json``."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        point = getattr(pl_module, "rd_point", None)
        self.start = {"step": trainer.global_step, "lmbda": getattr(point, "lmbda", None), "tau": getattr(point, "tau", None)}

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        digest = hashlib.sha256()
        for name, tensor in sorted(pl_module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
        report = {"start": self.start, "end_step": trainer.global_step, "world_size": trainer.world_size,
                  "digest": digest.hexdigest()}
        (run_dir(trainer) / f"rank{trainer.global_rank}.json").write_text(json.dumps(report))
