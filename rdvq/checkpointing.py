"""Checkpoint files: typed-error reads, the codec description, and weights-only loading between stages.

Every rdvq checkpoint carries a *codec description*: a versioned plain dict (loadable with
``torch.load(weights_only=True)``) saying which codec family the weights belong to and with which
configuration. :func:`write_codec_description` is the only writer (every stage calls it when it
saves) and :func:`read_codec_description` the only reader (``init_from``, ``ImageCodec``).

Layout (description version 2): the codec's weights under ``codec.`` whatever the stage (the
stage's other parts, e.g. a discriminator, beside it), the rate-distortion point under
:data:`RD_POINT_KEY`. Version 1 checkpoints (rdvq before the codec became one module: stage
attribute paths ``tokenizer.``, ``rate.entropy_model.``, ``model.`` and the key ``rdvq_joint_rd``)
are migrated when read (:func:`migrate_checkpoint`).

Kept free of Lightning imports so the codec starts quickly; atomic writes live in
:mod:`rdvq.atomic`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rdvq.errors import CheckpointError

DESCRIPTION_KEY = "rdvq_codec"
DESCRIPTION_VERSION = 2
CODEC_PREFIX = "codec."
RD_POINT_KEY = "rdvq_rd_point"  # {"lmbda": float, "tau": float | None}

# Version 1 layouts: where each family's weights lived, per stage attribute path.
_V1_PREFIXES = {
    "vq": (("tokenizer.", "codec.tokenizer."), ("rate.entropy_model.", "codec.entropy_model.")),
    "sq": (("model.", "codec.model."),),
}
_V1_RD_POINT_KEY = "rdvq_joint_rd"


def migrate_checkpoint(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Bring a version 1 checkpoint to the current layout, in place (a current one is unchanged)."""
    description = checkpoint.get(DESCRIPTION_KEY)
    if not isinstance(description, dict) or description.get("version") != 1:
        return checkpoint
    renames = _V1_PREFIXES.get(description.get("family"), ())
    state = {}
    for key, tensor in checkpoint.get("state_dict", {}).items():
        for old, new in renames:
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        state[key] = tensor
    checkpoint["state_dict"] = state
    if _V1_RD_POINT_KEY in checkpoint:
        checkpoint[RD_POINT_KEY] = checkpoint.pop(_V1_RD_POINT_KEY)
    checkpoint[DESCRIPTION_KEY] = {**description, "version": DESCRIPTION_VERSION}
    return checkpoint


def write_codec_description(checkpoint: dict[str, Any], family: str, **parts: Any) -> None:
    """Store ``{"version", "family", **parts}``; ``parts`` are plain dicts (configurations) or None."""
    checkpoint[DESCRIPTION_KEY] = {"version": DESCRIPTION_VERSION, "family": family, **parts}


def read_codec_description(checkpoint: dict[str, Any], source: str) -> dict[str, Any]:
    """The description of a checkpoint read by :func:`read_checkpoint`, checked for its version."""
    description = checkpoint.get(DESCRIPTION_KEY)
    if not isinstance(description, dict) or "family" not in description:
        raise CheckpointError(f"{source} is not an rdvq checkpoint (no codec description)")
    if description.get("version") != DESCRIPTION_VERSION:
        raise CheckpointError(
            f"{source} has codec description version {description.get('version')}, "
            f"this build reads version {DESCRIPTION_VERSION}"
        )
    return description


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
    migrate_checkpoint(checkpoint)
    read_codec_description(checkpoint, str(path))
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


def load_strict(module: nn.Module, state_dict: dict[str, torch.Tensor], prefix: str, source: str) -> None:
    """Load ``module`` from the ``prefix``-ed entries of a checkpoint's state dict, all of them."""
    part = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    try:
        module.load_state_dict(part, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{source}: weights do not match the stored configuration ({str(exc).splitlines()[0]})") from None


def _preview(keys: list[str], limit: int = 4) -> str:
    if not keys:
        return ""
    shown = ", ".join(keys[:limit])
    return f"[{shown}{', ...' if len(keys) > limit else ''}]"
