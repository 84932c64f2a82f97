"""HyperVQ: a hyperprior that predicts a Gaussian in the codebook's embedding space.

Per branch, a hyper-analysis turns the branch latents into a hyper-latent whose model is
CompressAI's ``EntropyBottleneck``; a hyper-synthesis predicts a mean ``mu`` (D channels) and a
scale ``sigma`` (one per position, or one per dimension for the diagonal variant). Index
probabilities are ``softmax_k(-||e_k - mu||^2 / (2 sigma^2))`` over the codewords ``e_k``. The
rate includes the hyper-latent bits.

Coding: one range-coded stream, branch after branch, each its hyper-latent (under the
bottleneck's own 16-bit tables, see :mod:`rdvq.hyper.bottleneck`) followed by its indices under
the Gaussians predicted from the *decoded* hyper-latent. The header parameters are the bounded
tail floor ``top_k`` (0: off) and, only when the candidates were searched
(:mod:`rdvq.coding.candidate_search`), the search width. A model built with ``coding_only``
(what ``ImageCodec`` loads) holds the bottleneck's tensors without importing CompressAI.

Indices are predicted and coded tile by tile (:mod:`rdvq.hyper.tiles`, tiles in raster order,
indices in raster order inside a tile), the same tiles on both sides.

Entropy-constrained index selection (``--rdo-lambda``) is exact per position here: given the
hyper-latent the indices are independent, so each position takes the index minimizing its
distortion plus lambda times its bits under the tile's coded table.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from rdvq.coding import GaussianParameters, IndexDecoder, IndexEncoder
from rdvq.coding.engine import check_tail_floor, tail_floor
from rdvq.coding.header import HeaderField, HeaderSchema
from rdvq.coding.index_selection import encode_selected
from rdvq.coding.probability import MAX_CODEBOOK_SIZE
from rdvq.coding.probability import mean_limit
from rdvq.config_dict import DictConfig
from rdvq.encode_options import EncodeOptions
from rdvq.entropy.base import (
    BranchBatch,
    CodingContext,
    CompressedIndices,
    IndexEntropyModel,
    RateEstimate,
    cross_entropy_bits,
)
from rdvq.errors import ConfigError, InvalidHeaderError
from rdvq.hyper import bottleneck as side
from rdvq.hyper.tiles import hyper_tiles
_LOG_SIGMA_RANGE = (math.log(1e-3), math.log(1e2))
_INITIAL_SIGMA = 0.5


@dataclass
class HyperVQConfig(DictConfig):
    """``hyper_channels`` of the hyper-latent, ``hyper_hidden`` width of the hyper networks,
    ``sigma`` one scale per position (``scalar``) or per embedding dimension (``diagonal``)."""

    section: ClassVar[str] = "entropy_model (hypervq)"

    kind: Literal["hypervq"] = "hypervq"
    hyper_channels: int = 32
    hyper_hidden: int = 96
    sigma: Literal["scalar", "diagonal"] = "scalar"

    def __post_init__(self) -> None:
        if self.sigma not in ("scalar", "diagonal"):
            raise ConfigError(f"entropy_model.sigma must be scalar or diagonal, got {self.sigma!r}")
        if self.hyper_channels < 1 or self.hyper_hidden < 1:
            raise ConfigError("entropy_model.hyper_channels and hyper_hidden must be >= 1")


def hyper_size(height: int, width: int) -> tuple[int, int]:
    """Spatial size of the hyper-latent for a branch of ``height`` x ``width`` (two stride-2 convs)."""
    return (height + 3) // 4, (width + 3) // 4


class HyperPrior(nn.Module):
    """The hyperprior of one branch."""

    def __init__(self, dim: int, channels: int, hidden: int, diagonal: bool, coding_only: bool = False) -> None:
        super().__init__()
        self.dim = dim
        self.analysis = nn.Sequential(
            nn.Conv2d(dim, hidden, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(hidden, hidden, 5, stride=2, padding=2),
            nn.GELU(),
            nn.Conv2d(hidden, channels, 5, stride=2, padding=2),
        )
        self.bottleneck = side.bottleneck(channels, coding_only)
        self.synthesis = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, padding=1),
            nn.GELU(),
            nn.Upsample(scale_factor=2.0, mode="nearest"),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.GELU(),
            nn.Upsample(scale_factor=2.0, mode="nearest"),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(hidden, dim + (dim if diagonal else 1), 3, padding=1),
        )

    def gaussian(self, z_hat: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu (B,D,h,w), sigma (B,1 or D,h,w)) at the branch resolution.

        The input is made contiguous because convolutions pick their kernels by memory layout and
        different kernels round differently: encoder and decoder must feed identical layouts."""
        out = self.synthesis(z_hat.contiguous())[..., :height, :width]
        mu, raw = out[:, : self.dim], out[:, self.dim :]
        sigma = torch.exp(clamp_passing_gradient(raw + math.log(_INITIAL_SIGMA), *_LOG_SIGMA_RANGE))
        return mu, sigma


def clamp_passing_gradient(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``x.clamp(low, high)`` whose gradient is the identity (straight-through).

    A plain clamp has zero gradient outside its range, so a value that crosses it cannot come
    back. That is how HyperVQ training collapsed: early on, while the means say little, broader
    Gaussians cost fewer bits, every sigma ran into the upper bound and stayed there, and the
    means (whose gradient scales as 1/sigma^2) were pushed into their own clamp by Adam. The
    model then coded no better than uniform (reproduced with ``bench_rate_hypervq.yaml`` at
    ``hyper_hidden`` 96; BENCHMARKS.md, "Speed goals"). For finite ``x`` the forward value is the
    plain clamp bit for bit (``c + (x - x) == c``), and without autograd it is the plain clamp, so
    coding is unchanged."""
    clamped = x.clamp(low, high)
    if not (torch.is_grad_enabled() and x.requires_grad):
        return clamped
    return clamped.detach() + (x - x.detach())


def gaussian_log_probs(mu: torch.Tensor, sigma: torch.Tensor, codewords: torch.Tensor) -> torch.Tensor:
    """log softmax_k(-sum_d (e_kd - mu_d)^2 / (2 sigma_d^2)) as (B, h, w, K).

    Means are clamped where the coder clamps them (:func:`~rdvq.coding.probability.mean_limit`).
    Without it a model can train into means the files cannot carry: with l2-normalized codewords
    only mu / sigma^2 matters, and one run pushed sigma to its upper bound and the means to 30x the
    limit; its files were 11 % larger than its estimate."""
    limit = mean_limit(codewords, diagonal=sigma.shape[1] != 1)
    mu = clamp_passing_gradient(mu.permute(0, 2, 3, 1).float(), -limit, limit)
    inv = 0.5 / sigma.permute(0, 2, 3, 1).float().square()  # (B,h,w,1) or (B,h,w,D)
    e = codewords.float()
    if inv.shape[-1] == 1:
        d = (mu.square().sum(-1, keepdim=True) + e.square().sum(-1) - 2.0 * mu @ e.t()).clamp_min(0.0)
        logits = -d * inv
    else:
        logits = -((mu.square() * inv).sum(-1, keepdim=True) + inv @ e.square().t() - 2.0 * (mu * inv) @ e.t())
    return F.log_softmax(logits, dim=-1)


def _flatten_positions(t: torch.Tensor) -> torch.Tensor:
    """(1, C, h, w) -> (h*w, C), or (h*w,) when C == 1."""
    flat = t[0].flatten(1).t()
    return flat[:, 0] if flat.shape[1] == 1 else flat


class HyperVQModel(IndexEntropyModel):
    kind = "hypervq"
    model_id = 2
    config_class = HyperVQConfig
    header = HeaderSchema("entropy model hypervq", (
        HeaderField("top_k", MAX_CODEBOOK_SIZE),  # bounded tail floor, 0: off
        HeaderField("search_width", MAX_CODEBOOK_SIZE, optional=True),  # only when the candidates were searched
    ))
    options = frozenset({"top_k", "search_width", "rdo_lambda"})

    def __init__(
        self, num_branches: int, dim: int, channels: int = 32, hidden: int = 96, diagonal: bool = False,
        coding_only: bool = False,
    ) -> None:
        super().__init__()
        self.priors = nn.ModuleList(
            HyperPrior(dim, channels, hidden, diagonal, coding_only) for _ in range(num_branches)
        )

    @classmethod
    def build(cls, config: HyperVQConfig, codebook_sizes: list[int], dim: int, coding_only: bool = False) -> "HyperVQModel":
        return cls(
            len(codebook_sizes), dim, config.hyper_channels, config.hyper_hidden, config.sigma == "diagonal", coding_only
        )

    def forward(self, branches: list[BranchBatch]) -> RateEstimate:
        index_bits, side_bits = [], []
        for prior, branch in zip(self.priors, branches):
            z_hat, z_likelihoods = prior.bottleneck(prior.analysis(branch.latents))
            mu, sigma = prior.gaussian(z_hat, *branch.indices.shape[-2:])
            index_bits.append(cross_entropy_bits(gaussian_log_probs(mu, sigma, branch.codewords), branch))
            side_bits.append(-torch.log2(z_likelihoods).flatten(1).sum(-1))
        return RateEstimate(index_bits=index_bits, side_bits=side_bits)

    def aux_parameters(self) -> list[nn.Parameter]:
        return [prior.bottleneck.quantiles for prior in self.priors]

    def aux_loss(self) -> torch.Tensor:
        """Quantile loss of the bottlenecks (fits only their ``quantiles``)."""
        return sum(prior.bottleneck.loss() for prior in self.priors)

    def update_tables(self) -> None:
        for prior in self.priors:
            side.update_tables(prior.bottleneck)

    def compress(self, branches: list[BranchBatch], context: CodingContext, options: EncodeOptions) -> CompressedIndices:
        largest = max(c.size for c in context.codebooks)
        top_k = tail_floor(options.top_k, largest)
        searched = top_k is not None and options.search_width is not None and options.search_width < largest
        width = options.search_width if searched else None
        engine = context.engine(top_k, width)
        encoder = IndexEncoder()
        sent = [b.indices.clone() if options.rdo_lambda is not None else b.indices for b in branches]
        for i, (prior, branch) in enumerate(zip(self.priors, branches)):
            z_hat = side.encode_hyper(prior.bottleneck, prior.analysis(branch.latents), encoder)
            for window, params in self._tiled_parameters(prior, z_hat, branch.indices.shape[-2:], context, i):
                if options.rdo_lambda is None:
                    engine.encode_gaussian(encoder, branch.indices[(0, *window)].reshape(-1), params, context.codebooks[i])
                    continue
                # Entropy-constrained selection, exact per position: given the hyper-latent the
                # indices are independent, so each one trades its own distortion and bits.
                latents = branch.latents[(0, slice(None), *window)].flatten(1).t()
                tables = engine.gaussian_tables(params, context.codebooks[i])
                chosen = encode_selected(encoder, tables, latents, context.codewords[i], options.rdo_lambda)
                sent[i][(0, *window)] = chosen.view(sent[i][(0, *window)].shape).to(sent[i].device)
        parameters = self.header.pack(top_k=top_k or 0, search_width=width)
        return CompressedIndices(streams=[encoder.finish()], parameters=parameters, indices=sent)

    def decompress(
        self, streams: list[bytes], parameters: tuple[int, ...], shapes: list[tuple[int, int]], context: CodingContext
    ) -> list[torch.Tensor]:
        header = self.read_header(streams, parameters)
        largest = max(c.size for c in context.codebooks)
        top_k, width = header["top_k"], header["search_width"]
        check_tail_floor(top_k, largest)
        if width is not None and not 1 <= top_k <= width < largest:
            raise InvalidHeaderError(
                f"search width {width} with tail floor top_k={top_k}: needs 1 <= top_k <= width < {largest}"
            )
        engine = context.engine(top_k or None, width)
        decoder = IndexDecoder(streams[0])
        device = context.codewords[0].device
        out = []
        for i, (prior, (h, w)) in enumerate(zip(self.priors, shapes)):
            z_hat = side.decode_hyper(prior.bottleneck, decoder, hyper_size(h, w), device)
            indices = torch.empty(1, h, w, dtype=torch.int64)
            for window, params in self._tiled_parameters(prior, z_hat, (h, w), context, i):
                tile = engine.decode_gaussian(decoder, params, context.codebooks[i])
                indices[(0, *window)] = tile.reshape(indices[(0, *window)].shape)
            out.append(indices)
        return out

    @staticmethod
    def _tiled_parameters(
        prior: HyperPrior, z_hat: torch.Tensor, shape: tuple[int, int], context: CodingContext, i: int
    ) -> Iterator[tuple[tuple[slice, slice], GaussianParameters]]:
        """(the tile's index rows and columns, the Gaussians of its positions in raster order) per tile."""
        for tile in hyper_tiles(tuple(z_hat.shape[-2:]), tuple(shape)):
            mu, sigma = prior.gaussian(z_hat[(..., *tile.context)], *tile.synthesis_size)
            params = GaussianParameters.from_float(
                _flatten_positions(mu[(..., *tile.crop)]), _flatten_positions(sigma[(..., *tile.crop)]),
                context.codebooks[i],
            )
            yield tile.latents, params
