"""Where a run writes its files: everything goes under ``trainer.default_root_dir``, the run directory.

The run directory is the only path a training config sets. ``rdvq fit | validate | test`` derives
the others from it when the config is parsed, so a config printed with ``--print_config`` (or the
``config.yaml`` a run saves) holds no stale paths and reruns wherever ``--trainer.default_root_dir``
points:

- every logger that takes a ``save_dir`` writes to the run directory;
- every callback that takes a ``dirpath`` (Lightning's ``ModelCheckpoint`` and its subclasses)
  writes to :func:`checkpoint_dir`, ``<run directory>/checkpoints``, the run's checkpoint folder;
- rdvq callbacks that write files take no path arguments: they ask :func:`run_dir` or
  :func:`checkpoint_dir` for their folder at run time (a callback that writes checkpoints puts them
  in the checkpoint folder, where a new run's check for an earlier run's checkpoints sees them).

``dirpath`` and ``save_dir`` values in a config are replaced (``--print_config`` shows them as null).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytorch_lightning as pl

CHECKPOINT_FOLDER = "checkpoints"


def run_dir(trainer: pl.Trainer) -> Path:
    """The run directory of ``trainer``: its ``default_root_dir`` (the working directory when unset)."""
    return Path(trainer.default_root_dir)


def checkpoint_dir(trainer: pl.Trainer) -> Path:
    """The run's checkpoint folder, ``<run directory>/checkpoints``."""
    return run_dir(trainer) / CHECKPOINT_FOLDER


def run_dir_for(default_root_dir: str | os.PathLike | None) -> str:
    """The run directory for a ``trainer.default_root_dir`` config value (None means the working
    directory, as for Lightning's Trainer)."""
    return os.fspath(default_root_dir) if default_root_dir is not None else os.getcwd()


def checkpoint_dir_for(default_root_dir: str | os.PathLike | None) -> str:
    """The checkpoint folder for a ``trainer.default_root_dir`` config value."""
    return os.path.join(run_dir_for(default_root_dir), CHECKPOINT_FOLDER)
