"""CompressAI's ``EntropyBottleneck`` as rdvq uses it: the model of a hyper-latent.

Training needs the real module (its density model, quantile loss and ``update()``). Coding needs
only its medians and the tables ``update()`` built, which checkpoints store, so a codec loaded for
coding holds a :class:`BottleneckSnapshot` (:mod:`rdvq.hyper.snapshot`) and turns it into the real
module only when a rate estimate needs the density model.

The hyper-latent is coded with constriction under the bottleneck's own tables
(:mod:`rdvq.coding.cdf_tables`), never by CompressAI's C++ coder.
"""

from __future__ import annotations

import torch
from torch import nn

from rdvq.coding import IndexDecoder, IndexEncoder, QuantizedCdfs, decode_indexed, encode_indexed
from rdvq.errors import CheckpointError
from rdvq.hyper.snapshot import TensorSnapshot, has_tables, resize_tables


def entropy_bottleneck(channels: int) -> nn.Module:
    """A new CompressAI ``EntropyBottleneck`` whose table buffers adopt the sizes of a loaded state."""
    from compressai.entropy_models import EntropyBottleneck

    module = EntropyBottleneck(channels)
    module.register_load_state_dict_pre_hook(resize_tables)
    return module


class BottleneckSnapshot(TensorSnapshot):
    """An ``EntropyBottleneck``'s tensors without CompressAI; :meth:`materialized` builds the real
    module from them when a rate estimate needs its density."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self._model: list[nn.Module] = []  # the real module, once built (kept out of the state dict)
        self._tables: list[QuantizedCdfs] = []  # its coding tables, once read

    def forget(self) -> None:
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


def bottleneck(channels: int, coding_only: bool) -> nn.Module:
    """The training module, or (``coding_only``) a snapshot for a codec that loads trained tables."""
    return BottleneckSnapshot(channels) if coding_only else entropy_bottleneck(channels)


def coding_tables(module: nn.Module) -> QuantizedCdfs:
    """The hyper-latent's coding tables (a training module's are read afresh: ``update()`` rebuilds them)."""
    if isinstance(module, BottleneckSnapshot):
        return module.coding_tables()
    return QuantizedCdfs.from_entropy_model(module)


def update_tables(module: nn.Module) -> None:
    """Rebuild a training module's tables from its density; a snapshot's must already be there."""
    if isinstance(module, BottleneckSnapshot):
        if not has_tables(module):
            raise CheckpointError("the checkpoint holds no coding tables for the hyper-latent")
        return
    module.update(force=True)


def hyper_bits(module: nn.Module, z_hat: torch.Tensor) -> torch.Tensor:
    """Bits per image of a decoded hyper-latent (B, C, h, w) under the bottleneck's density."""
    if isinstance(module, BottleneckSnapshot):
        module = module.materialized()
    _, likelihoods = module(z_hat, training=False)
    return -torch.log2(likelihoods).flatten(1).sum(-1)


def medians(module: nn.Module) -> torch.Tensor:
    """(1, C, 1, 1): the centre each channel of the hyper-latent is rounded around."""
    return module.quantiles[:, 0, 1].detach().reshape(1, -1, 1, 1)


def _table_indexes(channels: int, height: int, width: int) -> torch.Tensor:
    return torch.arange(channels).reshape(1, channels, 1, 1).expand(1, channels, height, width)


def encode_hyper(module: nn.Module, z: torch.Tensor, encoder: IndexEncoder) -> torch.Tensor:
    """Code the hyper-latent (1, C, h, w) and return it as the decoder will decode it: rounded around
    the bottleneck's medians and clamped into its tables' range."""
    centre, indexes = medians(module).to(z), _table_indexes(*z.shape[1:])
    cdfs = coding_tables(module)
    values = cdfs.clamp(torch.round(z - centre), indexes)
    encode_indexed(encoder, values, indexes, cdfs)
    return values.to(z) + centre


def decode_hyper(module: nn.Module, decoder: IndexDecoder, size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """The hyper-latent coded by :func:`encode_hyper`, (1, C, h, w)."""
    centre = medians(module)
    values = decode_indexed(decoder, _table_indexes(centre.shape[1], *size), coding_tables(module))
    return values.to(device, centre.dtype) + centre.to(device)
