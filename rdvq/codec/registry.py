"""Every codec family, keyed by the name checkpoints use and the id files record.

Registering a family is one entry in :data:`FAMILY_CLASSES`; checkpoints, stages (stage D
included) and the codec find it from here.
"""

from __future__ import annotations

from typing import Any

import torch

from rdvq.checkpointing import read_codec_description
from rdvq.codec.latent import LatentCodec
from rdvq.codec.sq import SQCodec
from rdvq.codec.vq import VQCodec
from rdvq.coding.engine import EngineName
from rdvq.errors import CheckpointError

FAMILY_CLASSES: tuple[type[LatentCodec], ...] = (VQCodec, SQCodec)

FAMILIES: dict[str, type[LatentCodec]] = {family.family: family for family in FAMILY_CLASSES}


def family_class(name: str, source: str) -> type[LatentCodec]:
    if name not in FAMILIES:
        raise CheckpointError(f"{source} holds a codec of unknown family {name!r} (known: {', '.join(FAMILIES)})")
    return FAMILIES[name]


def codec_from_checkpoint(checkpoint: dict[str, Any], source: str, engine: EngineName = "auto") -> LatentCodec:
    """The codec a checkpoint in memory holds, every ``codec.`` weight loaded strictly."""
    description = read_codec_description(checkpoint, source)
    family = family_class(description["family"], source)
    state: dict[str, torch.Tensor] = checkpoint["state_dict"]
    return family.from_checkpoint(description, state, source, engine)
