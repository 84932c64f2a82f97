"""RDVQ's progressive lambda curriculum: several rate-distortion points trained one after another in
one run, each continuing from the previous point's weights.

Point ``i`` trains global steps ``[i * steps_per_point, (i + 1) * steps_per_point)``. When it ends,
its checkpoint is written to the run's checkpoint folder as ``rd_point<i>_lambda<λ>[_tau<τ>].ckpt``
and the sweep manifest ``rd_sweep.json`` beside it is rewritten (``rdvq eval`` takes the manifest
and names each point by its lambda and tau); then the next point is set. After the last point the
run stops. The callback's position travels in every checkpoint, so ``--ckpt_path last`` after a
kill resumes in the same point at the same step.

The stage must have a rate-distortion point: ``pl_module.rd_point``, an
:class:`~rdvq.stages.rd_point.RDPoint`, which the stage keeps in its checkpoints.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import pytorch_lightning as pl
from lightning_fabric.utilities.rank_zero import rank_zero_info, rank_zero_warn

from rdvq.run_paths import checkpoint_dir
from rdvq.errors import ConfigError
from rdvq.sweep_manifest import MANIFEST_NAME, SweepPoint, checkpoint_name, point_label, write_manifest


@dataclass(frozen=True)
class SweepTarget:
    """One point of the sweep as configured (``tau`` None keeps the stage's temperature)."""

    lmbda: float
    tau: float | None = None


class RDSweep(pl.Callback):
    def __init__(self, points: list[SweepTarget], steps_per_point: int) -> None:
        super().__init__()
        if not points:
            raise ConfigError("RDSweep needs at least one point")
        if steps_per_point < 1:
            raise ConfigError(f"RDSweep steps_per_point must be >= 1, got {steps_per_point}")
        self.points = [p if isinstance(p, SweepTarget) else SweepTarget(**p) for p in points]
        self.steps_per_point = steps_per_point
        self.index = 0  # the point being trained
        self.completed: list[SweepPoint] = []

    @property
    def total_steps(self) -> int:
        return len(self.points) * self.steps_per_point

    # ------------------------------------------------------------------ lifecycle
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if getattr(pl_module, "rd_point", None) is None:
            raise ConfigError(f"RDSweep needs a stage with a rate-distortion point; {type(pl_module).__name__} has none")
        if 0 <= trainer.max_steps < self.total_steps:
            raise ConfigError(f"trainer.max_steps {trainer.max_steps} ends the run before the sweep's "
                              f"{len(self.points)} x {self.steps_per_point} = {self.total_steps} steps; "
                              f"set it to {self.total_steps} or -1")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.index < len(self.points) and self.index in {p.index for p in self.completed}:
            self.index += 1  # resumed from a point's own checkpoint: that point is done
        if self.index >= len(self.points):
            trainer.should_stop = True
            return
        self._set(pl_module)
        rank_zero_info(f"RDSweep: point {self.index + 1}/{len(self.points)} ({self._label()}) "
                       f"from step {trainer.global_step} to {self._end()}")

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if self.index >= len(self.points) or trainer.global_step < self._end():
            return
        point = self.points[self.index]
        name = checkpoint_name(self.index, point.lmbda, point.tau)
        self.completed.append(SweepPoint(self.index, point.lmbda, point.tau, trainer.global_step, name))
        trainer.save_checkpoint(checkpoint_dir(trainer) / name)  # every rank calls; rank 0 writes
        if trainer.is_global_zero:
            write_manifest(checkpoint_dir(trainer) / MANIFEST_NAME, self.completed)
        rank_zero_info(f"RDSweep: point {self.index + 1}/{len(self.points)} ({self._label()}) done: {name}")
        self.index += 1
        if self.index == len(self.points):
            trainer.should_stop = True
        else:
            self._set(pl_module)
            rank_zero_info(f"RDSweep: point {self.index + 1}/{len(self.points)} ({self._label()}) until step {self._end()}")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.index < len(self.points):
            rank_zero_warn(f"RDSweep: training stopped in point {self.index + 1}/{len(self.points)} at step "
                           f"{trainer.global_step}; resume with --ckpt_path last (and a trainer limit that lets "
                           f"the sweep reach step {self.total_steps})")

    # ------------------------------------------------------------------ helpers
    def _end(self) -> int:
        return (self.index + 1) * self.steps_per_point

    def _label(self) -> str:
        point = self.points[self.index]
        return point_label(point.lmbda, point.tau)

    def _set(self, pl_module: pl.LightningModule) -> None:
        point = self.points[self.index]
        pl_module.rd_point.set_rd_point(point.lmbda, point.tau)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "points": [asdict(p) for p in self.points],
            "steps_per_point": self.steps_per_point,
            "index": self.index,
            "completed": [asdict(p) for p in self.completed],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        points = [SweepTarget(**p) for p in state_dict["points"]]
        if points != self.points or state_dict["steps_per_point"] != self.steps_per_point:
            raise ConfigError(
                f"this run was a sweep over {[point_label(p.lmbda, p.tau) for p in points]} with "
                f"{state_dict['steps_per_point']} steps per point; the config now says "
                f"{[point_label(p.lmbda, p.tau) for p in self.points]} with {self.steps_per_point}: "
                "resume with the run's own sweep, or start a new run"
            )
        self.index = int(state_dict["index"])
        self.completed = [SweepPoint(**p) for p in state_dict["completed"]]
