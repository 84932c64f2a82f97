"""Atomic checkpoint writes for Lightning runs."""

from __future__ import annotations

from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from rdvq.atomic import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves through :func:`rdvq.atomic.atomic_write`, so a run killed mid-save leaves the previous
    checkpoint intact (Lightning's own save goes through a temporary file in /tmp, whose final move
    is a copy when /tmp is another filesystem)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options")
        atomic_write(path, lambda handle: torch.save(checkpoint, handle))
