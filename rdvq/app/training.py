"""``rdvq fit | validate | test``: the Lightning CLI over rdvq's stages and data modules.

YAML configs live in ``experiments/``; the parser runs in omegaconf+ mode: configs can use
``${...}`` interpolation, resolved after command-line overrides. ``--model.init_from PATH`` loads
weights only, for moving between stages.

Run paths (see :mod:`rdvq.run_paths`): ``trainer.default_root_dir`` is the run directory and
the only path a config sets; loggers' ``save_dir`` and checkpoint callbacks' ``dirpath`` are linked
to it at parse time, so a printed config reruns wherever ``--trainer.default_root_dir`` points. A
run's checkpoint folder belongs to that run alone: ``rdvq fit`` without ``--ckpt_path`` refuses a
folder that holds checkpoints (``--overwrite true`` deletes them first), and ``--ckpt_path last``
resumes from ``last.ckpt`` of this run's folder.
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from jsonargparse import Namespace, set_parsing_settings
from lightning_fabric.plugins.io.checkpoint_io import CheckpointIO
from lightning_fabric.utilities.rank_zero import rank_zero_info, rank_zero_only
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from rdvq.run_paths import checkpoint_dir, checkpoint_dir_for, run_dir_for
from rdvq.atomic_checkpoint_io import AtomicCheckpointIO
from rdvq.app.commands import TRAINING_COMMANDS
from rdvq.errors import CheckpointError, ConfigError, RdvqError
from rdvq.stages import CodecStage


class RdvqLightningCLI(LightningCLI):
    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {name: spec for name, spec in LightningCLI.subcommands().items() if name in TRAINING_COMMANDS}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Run paths follow ``trainer.default_root_dir``: jsonargparse links fill every logger's
        ``save_dir`` and every callback's ``dirpath`` from it (a value in the config is replaced,
        and ``--print_config`` shows these keys as null, so a printed config holds no stale path)."""
        root = "trainer.default_root_dir"
        parser.link_arguments(root, "trainer.logger.init_args.save_dir", compute_fn=run_dir_for)
        parser.link_arguments(root, "trainer.callbacks.init_args.dirpath", compute_fn=checkpoint_dir_for)
        # A one-off action, not configuration: help=SUPPRESS keeps it out of printed and saved configs,
        # so rerunning a run's config.yaml never deletes anything. Documented in the README.
        parser.add_argument("--overwrite", type=bool, default=False, help=argparse.SUPPRESS)

    def _parse_ckpt_path(self) -> None:
        """Lightning's CLI re-parses a checkpoint's saved init-arg hyperparameters into the config when
        ``--ckpt_path`` names a file. rdvq checkpoints carry none (their codec description is read by
        rdvq itself): the config describes the model and the checkpoint restores its state, so there
        is nothing to re-parse, and skipping it saves loading the whole checkpoint an extra time.
        (Overrides a private Lightning hook; tests/test_run_paths.py resumes from an explicit path.)"""

    def before_instantiate_classes(self) -> None:
        """A run's checkpoint folder holds that run only, so a file name there always means this
        run's file: Lightning's version counter (``last-v1.ckpt`` beside ``last.ckpt``, e.g. after the
        run folder was moved and resumed) is turned off for every checkpoint callback."""
        callbacks = self._get(self.config, "trainer", default=Namespace()).get("callbacks")
        for spec in callbacks if isinstance(callbacks, list) else [callbacks]:
            init_args = spec.get("init_args") if isinstance(spec, Namespace) else None
            if isinstance(init_args, Namespace) and "enable_version_counter" in init_args:
                init_args.enable_version_counter = False

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

    def before_fit(self) -> None:
        config = self.config_init[self.subcommand]
        overwrite = bool(config.get("overwrite"))
        config["ckpt_path"] = _start_or_resume(self.trainer, config.get("ckpt_path"), overwrite=overwrite)

    def before_validate(self) -> None:
        self._resolve_last_for_evaluation()

    def before_test(self) -> None:
        self._resolve_last_for_evaluation()

    def _resolve_last_for_evaluation(self) -> None:
        config = self.config_init[self.subcommand]
        if config.get("overwrite"):
            raise ConfigError(f"--overwrite applies to rdvq fit only, not to rdvq {self.subcommand}")
        if config.get("ckpt_path") == "last":
            last = _last_checkpoint(self.trainer)
            if last is None:
                folders = ", ".join(map(str, _checkpoint_folders(self.trainer)))
                raise ConfigError(f"--ckpt_path last: there is no last.ckpt in {folders}")
            rank_zero_info(f"--ckpt_path last: loading {last}")
            config["ckpt_path"] = str(last)


def _checkpoint_folders(trainer: pl.Trainer) -> list[Path]:
    """The folders this run writes checkpoints to: the run's checkpoint folder, plus any other
    ``dirpath`` a checkpoint callback was given outside the CLI (normally none)."""
    folders = [checkpoint_dir(trainer)]
    folders += [Path(cb.dirpath) for cb in trainer.checkpoint_callbacks if getattr(cb, "dirpath", None)]
    return list(dict.fromkeys(Path(os.path.realpath(folder)) for folder in folders))


def _checkpoints_in(folders: list[Path]) -> list[Path]:
    return [path for folder in folders if folder.is_dir() for path in sorted(folder.glob("*.ckpt"))]


def _last_checkpoint(trainer: pl.Trainer) -> Path | None:
    """``last.ckpt`` of this run's checkpoint folder (never a ``last-vN.ckpt``), or None."""
    callbacks = [cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint)] or [ModelCheckpoint]
    names = sorted({f"{cb.CHECKPOINT_NAME_LAST}{cb.FILE_EXTENSION}" for cb in callbacks})
    found = [folder / name for folder in _checkpoint_folders(trainer) for name in names if (folder / name).is_file()]
    if len(found) > 1:
        listed = ", ".join(map(str, found))
        raise ConfigError(f"--ckpt_path last is ambiguous, this run keeps several: {listed}; pass --ckpt_path PATH")
    return found[0] if found else None


def _start_or_resume(trainer: pl.Trainer, ckpt_path: Any, *, overwrite: bool) -> Any:
    """Decides, before ``fit``, between a new run and a resumed one; returns the ``ckpt_path`` to fit with.

    A new run needs an empty checkpoint folder (``--overwrite true`` deletes what is there); a
    resumed run continues from a checkpoint in its own folder, or from one elsewhere into an empty
    folder. ``last`` means this folder's ``last.ckpt``; with no checkpoint there yet it starts a new
    run (so ``--ckpt_path last`` can be given from the first attempt of a job that is requeued).
    """
    folders = _checkpoint_folders(trainer)
    folder_text = ", ".join(map(str, folders))
    earlier = _checkpoints_in(folders)
    if overwrite and ckpt_path is not None:
        raise ConfigError(
            "--overwrite true starts a new run in place of the earlier one; it cannot be combined with --ckpt_path"
        )
    if ckpt_path is None:
        if earlier and not overwrite:
            raise ConfigError(
                f"{folder_text} already holds checkpoints of an earlier run ({_names(earlier)}): resume that run with "
                "--ckpt_path last, or start a new one elsewhere with --trainer.default_root_dir DIR "
                "(--overwrite true deletes them and starts over here)"
            )
        if earlier:
            _delete(earlier)
            rank_zero_info(f"--overwrite: deleted {len(earlier)} checkpoints of an earlier run from {folder_text}")
        return None
    if ckpt_path == "last":
        last = _last_checkpoint(trainer)
        if last is None:
            if earlier:
                raise ConfigError(
                    f"--ckpt_path last: {folder_text} holds checkpoints ({_names(earlier)}) but no last.ckpt; "
                    "resume from one of them with --ckpt_path PATH"
                )
            rank_zero_info(f"--ckpt_path last: no checkpoint in {folder_text} yet, starting a new run")
            return None
        rank_zero_info(f"--ckpt_path last: resuming from {last}")
        return str(last)
    if ckpt_path in ("best", "hpc"):  # Lightning's other special values, resolved by Lightning
        return ckpt_path
    path = Path(ckpt_path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if earlier and Path(os.path.realpath(path)).parent not in folders:
        raise ConfigError(
            f"{folder_text} already holds checkpoints of another run ({_names(earlier)}); continuing from {path} would "
            "write beside them: pick another --trainer.default_root_dir, or resume the run there with --ckpt_path last"
        )
    rank_zero_info(f"resuming from {path}")
    return ckpt_path


def _names(paths: list[Path], limit: int = 3) -> str:
    shown = ", ".join(p.name for p in paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


@rank_zero_only
def _delete(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


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
    # A config that interpolates `${trainer.default_root_dir}` means the key under the subcommand.
    set_parsing_settings(omegaconf_absolute_to_relative_paths=True)
    return RdvqLightningCLI(
        model_class=CodecStage,
        datamodule_class=pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"parser_mode": "omegaconf+"},
        auto_configure_optimizers=False,
        args=args,
    )
