"""CompressAI's ``EntropyBottleneck`` as HyperVQ uses it: the model of the hyper-latent.

Training needs the real module (its density model and ``update()``). Coding needs only its
medians and the tables ``update()`` built, which checkpoints store. Importing CompressAI costs
seconds (it imports all of its datasets, zoo and dependencies), so a codec loaded for coding holds
a :class:`BottleneckSnapshot` instead: the same tensors under the same names (checkpoints load
strictly, fingerprints are identical), enough to code, and turned into the real module on demand
when a rate estimate needs the density model.

The hyper-latent is coded with constriction under the bottleneck's own tables
(:mod:`rdvq.coding.cdf_tables`), never by CompressAI's C++ coder.
"""

from __future__ import annotations

import torch
from torch import nn

from rdvq.coding import IndexDecoder, IndexEncoder, QuantizedCdfs, decode_indexed, encode_indexed
from rdvq.errors import CheckpointError

TABLE_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length")


def entropy_bottleneck(channels: int) -> nn.Module:
    """A new CompressAI ``EntropyBottleneck`` whose table buffers adopt the sizes of a loaded state."""
    from compressai.entropy_models import EntropyBottleneck

    module = EntropyBottleneck(channels)
    module.register_load_state_dict_pre_hook(_resize_tables)
    return module


def _resize_tables(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """The tables have data-dependent sizes; adopt the incoming ones."""
    for name in TABLE_BUFFERS:
        if prefix + name in state_dict:
            getattr(module, name).resize_(state_dict[prefix + name].shape)


class BottleneckSnapshot(nn.Module):
    """An ``EntropyBottleneck``'s tensors, loaded from a state dict, without CompressAI.

    It adopts every tensor of the state it is loaded from as a buffer of the same name, so nothing
    is missing or unexpected. :meth:`materialized` builds the real module from them when needed.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self._model: list[nn.Module] = []  # the real module, once built (kept out of the state dict)
        self._tables: list[QuantizedCdfs] = []  # its coding tables, once read
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
        self._model.clear()
        self._tables.clear()

    def materialized(self) -> nn.Module:
        """The real ``EntropyBottleneck`` with these tensors (built once)."""
        if not self._model:
            model = entropy_bottleneck(self.channels)
            model.load_state_dict(self.state_dict())
            self._model.append(model.to(next(iter(self.buffers())).device).eval())
        return self._model[0]

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.materialized()(z)

    def coding_tables(self) -> QuantizedCdfs:
        """The tables as :meth:`QuantizedCdfs.from_entropy_model` reads them, read once: a snapshot's
        tensors change only when a state is loaded."""
        if not self._tables:
            self._tables.append(QuantizedCdfs.from_entropy_model(self))
        return self._tables[0]


def coding_tables(bottleneck: nn.Module) -> QuantizedCdfs:
    """The hyper-latent's coding tables (a training module's are read afresh: ``update()`` rebuilds them)."""
    if isinstance(bottleneck, BottleneckSnapshot):
        return bottleneck.coding_tables()
    return QuantizedCdfs.from_entropy_model(bottleneck)


def has_tables(bottleneck: nn.Module) -> bool:
    return all(getattr(bottleneck, name, torch.empty(0)).numel() > 0 for name in TABLE_BUFFERS)


def update_tables(bottleneck: nn.Module) -> None:
    if isinstance(bottleneck, BottleneckSnapshot):
        if not has_tables(bottleneck):
            raise CheckpointError("the checkpoint holds no coding tables for the hyper-latent")
        return
    bottleneck.update(force=True)


def _medians_and_indexes(bottleneck: nn.Module, channels: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    medians = bottleneck.quantiles[:, 0, 1].detach().reshape(1, channels, 1, 1)
    indexes = torch.arange(channels).reshape(1, channels, 1, 1).expand(1, channels, height, width)
    return medians, indexes


def encode_hyper(bottleneck: nn.Module, z: torch.Tensor, encoder: IndexEncoder) -> torch.Tensor:
    """Code the hyper-latent (1, C, h, w) and return it as the decoder will decode it: rounded around
    the bottleneck's medians and clamped into its tables' range."""
    medians, indexes = _medians_and_indexes(bottleneck, *z.shape[1:])
    cdfs = coding_tables(bottleneck)
    values = cdfs.clamp(torch.round(z - medians.to(z)), indexes)
    encode_indexed(encoder, values, indexes, cdfs)
    return values.to(z) + medians.to(z)


def decode_hyper(bottleneck: nn.Module, decoder: IndexDecoder, size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """The hyper-latent coded by :func:`encode_hyper`, (1, C, h, w)."""
    channels = bottleneck.quantiles.shape[0]
    medians, indexes = _medians_and_indexes(bottleneck, channels, *size)
    values = decode_indexed(decoder, indexes, coding_tables(bottleneck))
    return values.to(device, medians.dtype) + medians.to(device)
