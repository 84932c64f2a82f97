"""``rdvq fit | validate | test``: the Lightning CLI over rdvq's stages and data modules.

YAML configs live in ``experiments/``; the parser runs in omegaconf+ mode: configs can use
``${...}`` interpolation, resolved after command-line overrides. ``--ckpt_path last|PATH``
resumes a run; ``--model.init_from PATH`` loads weights only, for moving between stages.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytorch_lightning as pl
from jsonargparse import set_parsing_settings
from lightning_fabric.plugins.io.checkpoint_io import CheckpointIO
from pytorch_lightning.cli import LightningCLI

from rdvq.atomic_checkpoint_io import AtomicCheckpointIO
from rdvq.app.main import TRAINING_COMMANDS
from rdvq.errors import RdvqError
from rdvq.stages import RDVQStage


class RdvqLightningCLI(LightningCLI):
    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {name: spec for name, spec in LightningCLI.subcommands().items() if name in TRAINING_COMMANDS}

    def instantiate_classes(self) -> None:
        """jsonargparse reports errors from ``__init__`` inside a long union-type message; surface
        the rdvq error (bad config value, wrong checkpoint) that caused it as itself instead."""
        try:
            super().instantiate_classes()
        except Exception as exc:
            cause = _rdvq_cause(exc)
            if cause is None:
                raise
            raise cause from None

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        """Every run writes checkpoints atomically unless the config brings its own CheckpointIO."""
        plugins = self._get(self.config_init, "trainer", default={}).get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())
        return super().instantiate_trainer(plugins=plugins, **kwargs)


def _rdvq_cause(exc: BaseException) -> RdvqError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, RdvqError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def run_training_cli(args: list[str] | None) -> RdvqLightningCLI:
    """``args`` None parses ``sys.argv`` (the console script); a list runs in-process (quickstart, tests)."""
    # Lightning warns that manual-optimization checkpoints hold the state *after* the step; with
    # global_step advanced by that same step this is exactly the state a resume needs.
    warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")
    # Stage B freezes the tokenizer in eval mode on purpose; in-process runs pass args beside sys.argv.
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    if args is not None:
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    # Configs write `${trainer.default_root_dir}`; under a subcommand that path is relative to it.
    set_parsing_settings(omegaconf_absolute_to_relative_paths=True)
    return RdvqLightningCLI(
        model_class=RDVQStage,
        datamodule_class=pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"parser_mode": "omegaconf+"},
        auto_configure_optimizers=False,
        args=args,
    )
