"""CompressAI's ``GaussianConditional`` as the model of the latents, and the coding tables behind it.

Training uses the real module (its noisy likelihood, its scale and likelihood bounds, and its
``update()``, which builds one 16-bit CDF per scale of its table). Rounding (USQ) is coded under
exactly those tables. TCQ codes each latent under the quantizer its trellis state selects, whose
cells are twice as wide, so :class:`TrellisTables` holds one more CDF per (scale, quantizer), built
from the Gaussian masses of the decision cells and quantized by CompressAI's own
``pmf_to_quantized_cdf``, as ``update()`` does for rounding. Both kinds of tables live in the
checkpoint, and every file is coded with constriction (:mod:`rdvq.coding.cdf_tables`), never with
CompressAI's C++ coder.

A codec loaded for coding holds a :class:`GaussianSnapshot` (the module's tensors under the same
names, so loads are strict and fingerprints identical) and does not import CompressAI; scales map
to table indexes with :func:`build_indexes`, which computes what ``GaussianConditional.build_indexes``
computes (tested against it).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rdvq.errors import CheckpointError
from rdvq.hyper.snapshot import TABLE_BUFFERS, TensorSnapshot, resize_tables
from rdvq.sq.cells import cell_bits

SCALE_BOUND = 0.11  # CompressAI's default lower bound of the scales, also the first table scale


def gaussian_conditional() -> nn.Module:
    """A CompressAI ``GaussianConditional`` over its default 64-scale table, tables built."""
    from compressai.entropy_models import GaussianConditional
    from compressai.models.base import get_scale_table

    module = GaussianConditional(None, scale_bound=SCALE_BOUND)
    module.update_scale_table(get_scale_table())
    module.register_load_state_dict_pre_hook(resize_tables)
    return module


class GaussianSnapshot(TensorSnapshot):
    """A ``GaussianConditional``'s tensors without CompressAI (:mod:`rdvq.hyper.snapshot`): the
    tables, the scale table and the two bounds, which is everything coding and rate estimates read."""


def bounded_scales(module: nn.Module, scales: torch.Tensor) -> torch.Tensor:
    """Scales bounded below as the module bounds them (with CompressAI's gradient, when training)."""
    if isinstance(module, GaussianSnapshot):
        return torch.maximum(scales, module.scale_bound.to(scales))
    return module.lower_bound_scale(scales)


def bounded_bits(module: nn.Module, bits: torch.Tensor) -> torch.Tensor:
    """Bits of likelihoods bounded below as the module bounds them (1e-9 by default)."""
    if isinstance(module, GaussianSnapshot):
        return bits.clamp(max=-float(torch.log2(module.likelihood_lower_bound.bound)))
    return -torch.log2(module.likelihood_lower_bound(torch.exp2(-bits)))


def build_indexes(scales: torch.Tensor, scale_table: torch.Tensor, scale_bound: torch.Tensor) -> torch.Tensor:
    """Table index of each scale, as ``GaussianConditional.build_indexes``: the scale is bounded
    below, then counted against every table scale but the last (index = how many it exceeds)."""
    bounded = torch.maximum(scales, scale_bound.to(scales))
    return torch.searchsorted(scale_table[:-1].to(scales).contiguous(), bounded.contiguous(), side="left")


def check_tables(module: nn.Module) -> None:
    if any(getattr(module, name, torch.empty(0)).numel() == 0 for name in (*TABLE_BUFFERS, "scale_table")):
        raise CheckpointError("the checkpoint holds no coding tables for the latents")


class TrellisTables(nn.Module):
    """One 16-bit CDF per (scale, quantizer): row ``2 * scale_index + quantizer`` covers the indices
    ``-K .. K`` of that quantizer (offset ``-K``), each under the Gaussian mass of its decision cell,
    and CompressAI's escape slot for the mass beyond. ``K`` reaches the same tail mass as the
    rounding table of that scale. Buffers carry CompressAI's names, so
    :meth:`rdvq.coding.QuantizedCdfs.from_entropy_model` reads them."""

    def __init__(self) -> None:
        super().__init__()
        for name in TABLE_BUFFERS:
            self.register_buffer(name, torch.zeros(0, dtype=torch.int32))
        self.register_load_state_dict_pre_hook(resize_tables)

    @torch.no_grad()
    def build(self, gaussian: nn.Module) -> None:
        """Build from a real ``GaussianConditional`` (its scale table, tail mass and CDF quantizer)."""
        from compressai.entropy_models.entropy_models import pmf_to_quantized_cdf

        from rdvq.sq.trellis import cell_bounds, reconstruction_levels

        multiplier = -float(gaussian._standardized_quantile(gaussian.tail_mass / 2))
        rows, offsets = [], []
        for scale in gaussian.scale_table.tolist():
            limit = math.ceil((math.ceil(scale * multiplier) + 1) / 2)
            indices = torch.arange(-limit, limit + 1)
            for quantizer in (0, 1):
                q = torch.full_like(indices, quantizer)
                low, high = cell_bounds(reconstruction_levels(indices, q), q)
                pmf = torch.exp2(-cell_bits(low, high, torch.tensor(scale, dtype=torch.float64)))
                tail = (1.0 - pmf.sum()).clamp_min(0.0)
                rows.append(pmf_to_quantized_cdf(torch.cat([pmf, tail.reshape(1)]).float(), 16))
                offsets.append(-limit)
        width = max(row.numel() for row in rows)
        cdf = torch.zeros(len(rows), width, dtype=torch.int32)
        for i, row in enumerate(rows):
            cdf[i, : row.numel()] = row
        self._quantized_cdf = cdf
        self._cdf_length = torch.tensor([row.numel() for row in rows], dtype=torch.int32)
        self._offset = torch.tensor(offsets, dtype=torch.int32)

    def max_index(self, table: torch.Tensor) -> torch.Tensor:
        """``K`` of each (scale, quantizer) row: the largest ``|index|`` it codes."""
        return -self._offset.to(torch.int64)[table]
