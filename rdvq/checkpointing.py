"""Checkpoint files: typed-error reads and weights-only loading between stages.

Kept free of Lightning imports so the codec starts quickly; atomic writes live in
:mod:`rdvq.atomic_checkpoint_io`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rdvq.errors import CheckpointError


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a Lightning checkpoint written by rdvq, raising :class:`CheckpointError` on any problem."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:  # memory-mapped: validating a large checkpoint costs almost nothing
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # torch raises many types for foreign or damaged files
        raise CheckpointError(f"cannot read checkpoint {path}: not a readable PyTorch checkpoint ({type(exc).__name__})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not a Lightning checkpoint (no state_dict)")
    hparams = checkpoint.get("hyper_parameters") or {}
    if "tokenizer" not in hparams:
        raise CheckpointError(f"{path} is not an rdvq checkpoint (no tokenizer configuration)")
    return checkpoint


def load_weights(module: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> tuple[list[str], list[str]]:
    """Non-strict weight loading that reports what was missing and unexpected.

    Tensors whose shapes disagree are a configuration error, never silently skipped; empty
    buffers (coding tables not built yet) adopt the stored shape through their load hooks.
    """
    own = module.state_dict()
    mismatched = [
        f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in state_dict.items()
        if k in own and own[k].shape != v.shape and own[k].numel() > 0
    ]
    if mismatched:
        raise CheckpointError(
            f"{source}: {len(mismatched)} tensors have other shapes than this model "
            f"(architecture differs), first: {mismatched[0]}"
        )
    from lightning_fabric.utilities.rank_zero import rank_zero_info  # training-only path

    result = module.load_state_dict(state_dict, strict=False)
    rank_zero_info(
        f"init_from {source}: loaded {len(state_dict) - len(result.unexpected_keys)} tensors; "
        f"missing {len(result.missing_keys)} {_preview(result.missing_keys)}; "
        f"unexpected {len(result.unexpected_keys)} {_preview(result.unexpected_keys)}"
    )
    return list(result.missing_keys), list(result.unexpected_keys)


def _preview(keys: list[str], limit: int = 4) -> str:
    if not keys:
        return ""
    shown = ", ".join(keys[:limit])
    return f"[{shown}{', ...' if len(keys) > limit else ''}]"
