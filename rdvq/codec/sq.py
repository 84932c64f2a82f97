"""The scalar-quantization codec family: a mean-scale hyperprior whose latents are rounded around
their predicted means (USQ) or trellis-coded (TCQ), in the shared container.

One module for every SQ stage: the network under ``model.`` (``codec.model.*`` in checkpoints); the
codec description holds ``{"model": ScalarCodecConfig}``. A file holds one stream and no
parameters; its model id is the quantizer (0 USQ, 1 TCQ with 4 states, 2 TCQ with 8). The stream:
the hyper-latent (as HyperVQ codes it, under the ``EntropyBottleneck``'s tables), then the latents
tile by tile (:mod:`rdvq.hyper.tiles`; the means and scales of a tile come from the
hyper-synthesis of the tile and its halo). USQ codes a tile's levels under the ``GaussianConditional`` table
of each latent's scale; TCQ codes a tile column by column (each row of each channel is a trellis
that starts in state 0), every index under the table of its scale and of the quantizer its state
selects, so the decoder follows the states as it decodes. Symbols: the hyper-latent's integers and
the latents' reconstruction levels (union-grid levels for TCQ), which the synthesis adds to the means.

Everything is decoded by constriction (:mod:`rdvq.coding.cdf_tables`); a codec loaded from a
checkpoint does not import CompressAI (its rate estimate does, for the bottleneck's density).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from torch import nn

from rdvq.codec.latent import CodedSymbols, LatentCodec
from rdvq.coding import IndexDecoder, IndexEncoder, QuantizedCdfs, decode_indexed, encode_indexed
from rdvq.coding.engine import EngineName
from rdvq.coding.format import SQ_STRIDE as STRIDE
from rdvq.coding.header import HeaderSchema
from rdvq.encode_options import EncodeOptions
from rdvq.errors import CheckpointError, ConfigError, InvalidHeaderError, ModelMismatchError
from rdvq.hyper import bottleneck as side
from rdvq.hyper.tiles import join_tiles
from rdvq.sq import gaussian
from rdvq.sq.config import ScalarCodecConfig
from rdvq.sq.cells import rounding_minima
from rdvq.sq.model import ScalarHyperprior
from rdvq.sq.trellis import reconstruction_levels, viterbi


def _used_tables(tables: torch.Tensor, cdfs: QuantizedCdfs) -> tuple[torch.Tensor, QuantizedCdfs]:
    """``tables`` renumbered into the tables it names (ascending), and those tables.

    Coding goes table by table in ascending order either way, so the stream is the same as with all
    tables; leaving out the unused ones saves the coder a pass over each of them."""
    used = torch.unique(tables)
    subset = QuantizedCdfs(rows=tuple(cdfs.rows[i] for i in used.tolist()), offsets=cdfs.offsets[used])
    return torch.searchsorted(used, tables.contiguous()), subset


@dataclass
class SQAnalysis:
    y: torch.Tensor  # (1, M, H/16, W/16) latents
    z: torch.Tensor  # (1, N, H/64, W/64) hyper-latent before quantization


class SQCodec(LatentCodec):
    family = "sq"
    family_id = 1
    header = HeaderSchema("the scalar codec")  # no parameters; the model id names the quantizer

    def __init__(self, model: ScalarHyperprior, engine: EngineName = "auto") -> None:
        super().__init__()
        if engine == "triton":
            raise ConfigError("the scalar codec has no probability engine to run on Triton (its tables are CompressAI's)")
        self.model = model
        self._gaussian_cdfs: QuantizedCdfs | None = None  # derived by refresh_tables
        self._trellis_cdfs: QuantizedCdfs | None = None

    @classmethod
    def from_description(
        cls, description: dict[str, Any], source: str, *, coding_only: bool, engine: EngineName = "auto"
    ) -> "SQCodec":
        if not isinstance(description.get("model"), dict):
            raise CheckpointError(f"{source} has no scalar codec configuration")
        return cls(ScalarHyperprior(ScalarCodecConfig.from_dict(description["model"]), coding_only=coding_only), engine)

    @property
    def config(self) -> ScalarCodecConfig:
        return self.model.config

    @property
    def stride(self) -> int:
        return STRIDE

    @property
    def options(self) -> frozenset[str]:
        """Encoder options: ``rdo_lambda`` is TCQ's trellis Lagrangian (default: the configuration's
        ``trellis_lambda``); with USQ it turns rounding into exact entropy-constrained rounding."""
        return frozenset({"rdo_lambda"})

    def description(self) -> dict[str, Any]:
        return {"model": self.config.to_dict()}

    # ------------------------------------------------------------------ training
    def trainable_parts(self) -> dict[str, nn.Module]:
        return {"decoder": self.model.g_s, "hyper_decoder": self.model.h_s}

    def aux_parameters(self) -> list[nn.Parameter]:
        return [self.model.entropy_bottleneck.quantiles]

    def aux_loss(self) -> torch.Tensor:
        return self.model.aux_loss()

    def refresh_tables(self) -> None:
        """The hyper-latent's tables from the bottleneck's density (the latents' tables depend on
        the fixed scale table only)."""
        self.model.update_tables()
        self._gaussian_cdfs = QuantizedCdfs.from_entropy_model(self.model.gaussian_conditional)
        if self.model.trellis is not None:
            self._trellis_cdfs = QuantizedCdfs.from_entropy_model(self.model.trellis_tables)

    def _ensure_tables(self) -> None:
        if self._gaussian_cdfs is None:
            self.refresh_tables()

    # ------------------------------------------------------------------ shared geometry
    def _medians(self) -> torch.Tensor:
        return side.medians(self.model.entropy_bottleneck)

    def hyper_latent(self, z_symbols: torch.Tensor) -> torch.Tensor:
        """The decoded hyper-latent from its integers (the same float operations as the coding path)."""
        medians = self._medians()
        return z_symbols.to(medians.device, medians.dtype) + medians

    def _table_indexes(self, scales: torch.Tensor) -> torch.Tensor:
        module = self.model.gaussian_conditional
        return gaussian.build_indexes(scales, module.scale_table, module.scale_bound)

    # ------------------------------------------------------------------ encoder
    def analyze(self, padded: torch.Tensor) -> SQAnalysis:
        y = self.model.g_a(padded)
        return SQAnalysis(y=y, z=self.model.h_a(y))

    def encode(self, analysis: SQAnalysis, options: EncodeOptions) -> CodedSymbols:
        options.check_supported(self.options, f"the scalar codec ({self.config.quantizer})")
        self._ensure_tables()
        trellis_lambda = self.config.trellis_lambda if options.rdo_lambda is None else options.rdo_lambda
        encoder = IndexEncoder()
        z_hat = side.encode_hyper(self.model.entropy_bottleneck, analysis.z, encoder)
        tiles = []
        for rows, cols, means, scales in self.model.gaussian_tiles(z_hat):
            residual = (analysis.y[..., rows, cols] - means)[0]
            tables = self._table_indexes(scales)[0].cpu()
            if self.model.trellis is None:
                levels = self._round(residual, tables, options.rdo_lambda)
                encode_indexed(encoder, levels, *_used_tables(tables, self._gaussian_cdfs))
            else:
                levels = self._encode_trellis_tile(encoder, residual, tables, trellis_lambda)
            tiles.append(levels.unsqueeze(0))
        levels = join_tiles(tiles, z_hat.shape[-1])
        z_symbols = torch.round(z_hat - self._medians()).to(torch.int64).cpu()
        return CodedSymbols(self.config.model_id, self.header.pack(), [encoder.finish()], [z_symbols, levels.cpu()])

    def _round(self, residual: torch.Tensor, tables: torch.Tensor, lmbda: float | None) -> torch.Tensor:
        """USQ levels: rounding, or with ``lmbda`` the exact entropy-constrained choice per latent;
        either within the range of each latent's table."""
        if lmbda is None:
            return self._gaussian_cdfs.clamp(torch.round(residual), tables)
        scale_table = self.model.gaussian_conditional.scale_table.to(torch.float64).cpu()
        max_index = -self._gaussian_cdfs.offsets[tables]
        return rounding_minima(residual.cpu(), scale_table[tables], max_index, lmbda)

    def _encode_trellis_tile(
        self, encoder: IndexEncoder, residual: torch.Tensor, tables: torch.Tensor, lmbda: float
    ) -> torch.Tensor:
        """Viterbi over the tile's rows (one trellis per channel and row), then its indices column by
        column; returns the tile's reconstruction levels (M, h, w)."""
        channels, height, width = residual.shape
        scale_table = self.model.gaussian_conditional.scale_table.to(torch.float64).cpu()
        max_index = self.model.trellis_tables.max_index(2 * tables).cpu()
        path = viterbi(
            residual.cpu().reshape(-1, width), scale_table[tables].reshape(-1, width), max_index.reshape(-1, width), lmbda,
            self.model.trellis,
        )
        indices = path.indices.reshape(channels, height, width)
        quantizers = path.quantizers.reshape(channels, height, width)
        rows = 2 * tables + quantizers
        for column in range(width):
            encode_indexed(encoder, indices[..., column], *_used_tables(rows[..., column], self._trellis_cdfs))
        return reconstruction_levels(indices, quantizers)

    def symbol_bits(self, analysis: SQAnalysis | None, symbols: list[torch.Tensor]) -> torch.Tensor:
        """Bits per image of (a batch of) symbol sets under the model, differentiable in the
        hyper-synthesis: the hyper-latent under the bottleneck, the latents under their Gaussians.
        The symbols alone determine them, so ``analysis`` may be None."""
        z_hat = self.hyper_latent(symbols[0])
        _, scales = self.model.tiled_gaussians(z_hat)
        return self.model.hyper_bits(z_hat) + self.model.level_bits(symbols[1].to(scales.device), scales)

    # ------------------------------------------------------------------ decoder
    def decode(
        self, model_id: int, parameters: tuple[int, ...], streams: list[bytes], padded: tuple[int, int]
    ) -> list[torch.Tensor]:
        if model_id != self.config.model_id:
            raise ModelMismatchError(f"file uses scalar quantizer {model_id}, this checkpoint has {self.config.model_id}")
        if len(streams) != 1:
            raise InvalidHeaderError(f"file has {len(streams)} streams; the scalar codec writes 1")
        self.header.unpack(parameters)
        self._ensure_tables()
        decoder = IndexDecoder(streams[0])
        device = self._medians().device
        hyper_size = (padded[0] // STRIDE, padded[1] // STRIDE)
        z_hat = side.decode_hyper(self.model.entropy_bottleneck, decoder, hyper_size, device)
        tiles = []
        for _, _, _, scales in self.model.gaussian_tiles(z_hat):
            tables = self._table_indexes(scales)[0].cpu()
            if self.model.trellis is None:
                levels = decode_indexed(decoder, *_used_tables(tables, self._gaussian_cdfs))
            else:
                levels = self._decode_trellis_tile(decoder, tables)
            tiles.append(levels.unsqueeze(0))
        levels = join_tiles(tiles, hyper_size[1])
        z_symbols = torch.round(z_hat - self._medians()).to(torch.int64).cpu()
        return [z_symbols, levels]

    def _decode_trellis_tile(self, decoder: IndexDecoder, tables: torch.Tensor) -> torch.Tensor:
        """A tile's levels, column by column, each index under the table its trellis state selects."""
        trellis = self.model.trellis
        state = torch.zeros(tables.shape[:-1], dtype=torch.int64)
        columns = []
        for column in range(tables.shape[-1]):
            quantizer = trellis.quantizer(state)
            indices = decode_indexed(decoder, *_used_tables(2 * tables[..., column] + quantizer, self._trellis_cdfs))
            columns.append(reconstruction_levels(indices, quantizer))
            state = trellis.next(state, indices)
        return torch.stack(columns, -1)

    def synthesize(self, symbols: list[torch.Tensor], padded: tuple[int, int]) -> torch.Tensor:
        """The image from the symbols; a batch of symbol sets (leading dimension) gives a batch."""
        z_hat = self.hyper_latent(symbols[0])
        means, _ = self.model.tiled_gaussians(z_hat)
        return self.model.g_s(means + symbols[1].to(means))
