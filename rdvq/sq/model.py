"""The mean-scale hyperprior network of the scalar codec (Minnen et al. 2018, without context model).

Transforms: an analysis ``g_a`` and synthesis ``g_s`` of four stride-2 convolutions each (stride
16), a hyper-analysis ``h_a`` and hyper-synthesis ``h_s`` as in CompressAI's
``MeanScaleHyperprior`` (stride 4 more, so padded images are multiples of 64). The transforms are
plain torch layers (GELU where CompressAI's model has GDN), so a codec loaded for coding needs no
CompressAI import; the entropy models are CompressAI's: an ``EntropyBottleneck`` for the
hyper-latent and a ``GaussianConditional`` for the latents, whose means and scales ``h_s``
predicts.

Training surrogates (:meth:`ScalarHyperprior.forward`):

* USQ, ``noise``: additive uniform noise of one quantization step, CompressAI's own path.
* USQ, ``ste``: rounding around the mean in the forward pass, identity gradient (straight-through);
  the rate is the Gaussian mass of the rounding cell around the rounded value.
* TCQ: additive uniform noise of one TCQ quantizer's step (2, i.e. in [-1, 1]) and the Gaussian
  mass of a cell of that width. Every TCQ latent is coded by one quantizer of step 2, so the rate
  model fits; the distortion is pessimistic (the trellis reconstructs on the union grid of step 1,
  with an error variance near 0.27 rather than 1/3). Decoder retraining on the true trellis output
  (stage D) removes that mismatch.

Coding predicts means and scales tile by tile (:meth:`ScalarHyperprior.gaussian_tiles`, the tiles of
:mod:`rdvq.hyper.tiles`), the same tiles on the encoder and decoder.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from rdvq.hyper import bottleneck as side
from rdvq.hyper.tiles import UPSCALE, hyper_tiles, join_tiles, tile_spans
from rdvq.sq import gaussian
from rdvq.sq.config import ScalarCodecConfig
from rdvq.sq.cells import cell_bits
from rdvq.sq.trellis import TRELLISES, Trellis, cell_bounds, quantizers_of_levels

Surrogate = Literal["noise", "ste"]


def _conv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)


def _deconv(cin: int, cout: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, 5, stride=2, padding=2, output_padding=1)


@dataclass
class Forward:
    """A training pass: the reconstruction and the bits of each image under the surrogate."""

    x_hat: torch.Tensor  # (B, 3, H, W), unclamped
    y_bits: torch.Tensor  # (B,)
    z_bits: torch.Tensor  # (B,)


class ScalarHyperprior(nn.Module):
    def __init__(self, config: ScalarCodecConfig, coding_only: bool = False) -> None:
        super().__init__()
        self.config = config
        n, m = config.channels, config.latent_channels
        self.g_a = nn.Sequential(_conv(3, n), nn.GELU(), _conv(n, n), nn.GELU(), _conv(n, n), nn.GELU(), _conv(n, m))
        self.g_s = nn.Sequential(
            _deconv(m, n), nn.GELU(), _deconv(n, n), nn.GELU(), _deconv(n, n), nn.GELU(), _deconv(n, 3)
        )
        self.h_a = nn.Sequential(_conv(m, n, 3, 1), nn.LeakyReLU(), _conv(n, n), nn.LeakyReLU(), _conv(n, n))
        self.h_s = nn.Sequential(
            _deconv(n, m), nn.LeakyReLU(), _deconv(m, m * 3 // 2), nn.LeakyReLU(), _conv(m * 3 // 2, 2 * m, 3, 1)
        )
        self.entropy_bottleneck = side.bottleneck(n, coding_only)
        self.gaussian_conditional = gaussian.GaussianSnapshot() if coding_only else gaussian.gaussian_conditional()
        self.trellis: Trellis | None = None
        if config.trellis_states is not None:
            self.trellis = TRELLISES[config.trellis_states]
            self.trellis_tables = gaussian.TrellisTables()
            if not coding_only:
                self.trellis_tables.build(self.gaussian_conditional)

    # ------------------------------------------------------------------ networks
    def gaussian_parameters(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(means, scales) of the latents from a hyper-latent.

        The input is made contiguous because convolutions pick their kernels by memory layout and
        different kernels round differently: encoder and decoder must feed identical layouts."""
        scales, means = self.h_s(z_hat.contiguous()).chunk(2, 1)
        return means, scales

    def gaussian_tiles(self, z_hat: torch.Tensor) -> Iterator[tuple[slice, slice, torch.Tensor, torch.Tensor]]:
        """(latent rows, latent columns, means, scales) of each coding tile, in raster order."""
        hyper_size = tuple(z_hat.shape[-2:])
        for tile in hyper_tiles(hyper_size, (UPSCALE * hyper_size[0], UPSCALE * hyper_size[1])):
            means, scales = self.gaussian_parameters(z_hat[(..., *tile.context)])
            yield *tile.latents, means[(..., *tile.crop)], scales[(..., *tile.crop)]

    def tiled_gaussians(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(means, scales) of every latent, computed tile by tile as the codec computes them."""
        tiles = [(means, scales) for _, _, means, scales in self.gaussian_tiles(z_hat)]
        columns = z_hat.shape[-1]
        return join_tiles([m for m, _ in tiles], columns), join_tiles([s for _, s in tiles], columns)

    # ------------------------------------------------------------------ rates
    def _bits(self, low: torch.Tensor, high: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        """Bits per image of latents with decision cells [low, high] around the mean, under the
        ``GaussianConditional``'s bounds (on the scales, and on the likelihoods)."""
        module = self.gaussian_conditional
        bits = cell_bits(low, high, gaussian.bounded_scales(module, scales))
        return gaussian.bounded_bits(module, bits).flatten(1).sum(-1)

    def quantizers(self, levels: torch.Tensor) -> torch.Tensor:
        """The quantizer of every latent of TCQ levels (B, M, h, w): each row of each tile is a trellis."""
        out = torch.empty_like(levels)
        for c0, c1 in tile_spans(levels.shape[-1] // UPSCALE):
            out[..., UPSCALE * c0 : UPSCALE * c1] = quantizers_of_levels(levels[..., UPSCALE * c0 : UPSCALE * c1], self.trellis)
        return out

    def level_bits(self, levels: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        """Bits per image of the coded latent levels (B, M, h, w) under ``scales`` (differentiable)."""
        if self.trellis is None:
            return self._bits(levels - 0.5, levels + 0.5, scales)
        low, high = cell_bounds(levels.to(scales.dtype), self.quantizers(levels))
        return self._bits(low, high, scales)

    def hyper_bits(self, z_hat: torch.Tensor) -> torch.Tensor:
        """Bits per image of a coded hyper-latent under the bottleneck's density."""
        return side.hyper_bits(self.entropy_bottleneck, z_hat)

    # ------------------------------------------------------------------ training
    def forward(self, x: torch.Tensor, surrogate: Surrogate = "noise") -> Forward:
        """A training pass: reconstruction and bits under the surrogate (module docstring). The
        deployed quantization (rounding, or the trellis search) is :class:`~rdvq.codec.sq.SQCodec`'s."""
        y = self.g_a(x)
        z_hat, z_likelihoods = self.entropy_bottleneck(self.h_a(y))
        means, scales = self.gaussian_parameters(z_hat)
        if self.trellis is not None:
            y_hat = y + torch.empty_like(y).uniform_(-1.0, 1.0)
            residual = y_hat - means
            y_bits = self._bits(residual - 1.0, residual + 1.0, scales)
        elif surrogate == "ste":
            residual = y - means
            rounded = residual + (torch.round(residual) - residual).detach()
            y_hat = means + rounded
            y_bits = self._bits(rounded - 0.5, rounded + 0.5, scales)
        else:
            y_hat, y_likelihoods = self.gaussian_conditional(y, scales, means)
            y_bits = -torch.log2(y_likelihoods).flatten(1).sum(-1)
        z_bits = -torch.log2(z_likelihoods).flatten(1).sum(-1)
        return Forward(x_hat=self.g_s(y_hat), y_bits=y_bits, z_bits=z_bits)

    def aux_loss(self) -> torch.Tensor:
        """The bottleneck's quantile loss (fits only its ``quantiles``)."""
        return self.entropy_bottleneck.loss()

    def update_tables(self) -> None:
        """Refresh the hyper-latent's tables after training changed the bottleneck (the latents'
        tables depend on the fixed scale table only)."""
        side.update_tables(self.entropy_bottleneck)
        gaussian.check_tables(self.gaussian_conditional)
