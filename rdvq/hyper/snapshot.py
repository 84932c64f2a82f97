"""A CompressAI entropy model's tensors, held without importing CompressAI.

Importing CompressAI costs seconds (it imports its datasets, zoo and dependencies), yet a codec
loaded for coding needs only the tensors a trained module left behind: its coding tables and a few
constants. A :class:`TensorSnapshot` adopts every tensor of the state it is loaded from as a buffer
of the same name, so loads stay strict and model fingerprints are the same as the real module's.
"""

from __future__ import annotations

import torch
from torch import nn

# The buffers CompressAI's ``update()`` fills: one integer CDF per table, its offset and length.
TABLE_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length")


def resize_tables(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """A load-state pre-hook: coding tables have data-dependent sizes, so adopt the incoming ones."""
    for name in TABLE_BUFFERS:
        if prefix + name in state_dict:
            getattr(module, name).resize_(state_dict[prefix + name].shape)


def has_tables(module: nn.Module) -> bool:
    return all(getattr(module, name, torch.empty(0)).numel() > 0 for name in TABLE_BUFFERS)


class TensorSnapshot(nn.Module):
    """Adopts every tensor of a loaded state as a buffer of the same name (nested names included)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_load_state_dict_pre_hook(self._adopt)

    def _adopt(self, module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
        for key, tensor in state_dict.items():
            if key.startswith(prefix):
                owner: nn.Module = self
                *path, leaf = key[len(prefix) :].split(".")
                for part in path:
                    if part not in owner._modules:
                        owner.add_module(part, nn.Module())
                    owner = owner._modules[part]
                owner.register_buffer(leaf, torch.empty_like(tensor, device="cpu"))
        self.forget()

    def forget(self) -> None:
        """Drop whatever a subclass derived from the previous tensors."""
