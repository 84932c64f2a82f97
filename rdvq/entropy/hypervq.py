"""HyperVQ: a hyperprior that predicts a Gaussian in the codebook's embedding space.

Per branch, a hyper-analysis turns the branch latents into a hyper-latent coded with CompressAI's
``EntropyBottleneck``; a hyper-synthesis predicts a mean ``mu`` (D channels) and a scale
``sigma`` (one per position, or one per dimension for the diagonal variant). Index probabilities
are ``softmax_k(-||e_k - mu||^2 / (2 sigma^2))`` over the codewords ``e_k``. The rate includes the
hyper-latent bits.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck
from compressai.models.utils import update_registered_buffers
from torch import nn

from rdvq.coding import GaussianParameters, IndexDecoder, IndexEncoder
from rdvq.entropy.base import BranchBatch, CodingContext, IndexEntropyModel, RateEstimate, cross_entropy_bits

_TABLE_BUFFERS = ["_quantized_cdf", "_offset", "_cdf_length"]
_LOG_SIGMA_RANGE = (math.log(1e-3), math.log(1e2))
_INITIAL_SIGMA = 0.5


def hyper_size(height: int, width: int) -> tuple[int, int]:
    """Spatial size of the hyper-latent for a branch of ``height`` x ``width`` (two stride-2 convs)."""
    return (height + 3) // 4, (width + 3) // 4


class HyperPrior(nn.Module):
    """The hyperprior of one branch."""

    def __init__(self, dim: int, channels: int, hidden: int, diagonal: bool) -> None:
        super().__init__()
        self.dim = dim
        self.analysis = nn.Sequential(
            nn.Conv2d(dim, hidden, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(hidden, hidden, 5, stride=2, padding=2),
            nn.GELU(),
            nn.Conv2d(hidden, channels, 5, stride=2, padding=2),
        )
        self.bottleneck = EntropyBottleneck(channels)
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
        self.register_load_state_dict_pre_hook(self._resize_tables)

    def _resize_tables(self, module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
        """The bottleneck's CDF tables have data-dependent sizes; adopt the incoming ones."""
        if all(f"{prefix}bottleneck.{name}" in state_dict for name in _TABLE_BUFFERS):
            update_registered_buffers(self.bottleneck, f"{prefix}bottleneck", _TABLE_BUFFERS, state_dict, policy="resize")

    def gaussian(self, z_hat: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu (B,D,h,w), sigma (B,1 or D,h,w)) at the branch resolution."""
        out = self.synthesis(z_hat)[..., :height, :width]
        mu, raw = out[:, : self.dim], out[:, self.dim :]
        sigma = torch.exp((raw + math.log(_INITIAL_SIGMA)).clamp(*_LOG_SIGMA_RANGE))
        return mu, sigma


def gaussian_log_probs(mu: torch.Tensor, sigma: torch.Tensor, codewords: torch.Tensor) -> torch.Tensor:
    """log softmax_k(-sum_d (e_kd - mu_d)^2 / (2 sigma_d^2)) as (B, h, w, K)."""
    mu = mu.permute(0, 2, 3, 1).float()
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
    model_id = 2
    kind = "hypervq"

    def __init__(self, num_branches: int, dim: int, channels: int = 32, hidden: int = 96, diagonal: bool = False) -> None:
        super().__init__()
        self.priors = nn.ModuleList(HyperPrior(dim, channels, hidden, diagonal) for _ in range(num_branches))

    def forward(self, branches: list[BranchBatch]) -> RateEstimate:
        index_bits, side_bits = [], []
        for prior, branch in zip(self.priors, branches):
            z_hat, z_likelihoods = prior.bottleneck(prior.analysis(branch.latents))
            mu, sigma = prior.gaussian(z_hat, *branch.indices.shape[-2:])
            index_bits.append(cross_entropy_bits(gaussian_log_probs(mu, sigma, branch.codewords), branch))
            side_bits.append(-torch.log2(z_likelihoods).flatten(1).sum(-1))
        return RateEstimate(index_bits=index_bits, side_bits=side_bits)

    def aux_loss(self) -> torch.Tensor:
        """Quantile loss of the bottlenecks (trains only their ``quantiles``)."""
        return sum(prior.bottleneck.loss() for prior in self.priors)

    def update_tables(self) -> None:
        for prior in self.priors:
            prior.bottleneck.update(force=True)

    def has_coding_tables(self) -> bool:
        return all(prior.bottleneck._quantized_cdf.numel() > 0 for prior in self.priors)

    def num_side_streams(self) -> int:
        return len(self.priors)

    def compress(self, branches: list[BranchBatch], encoder: IndexEncoder, context: CodingContext) -> list[bytes]:
        side = []
        for i, (prior, branch) in enumerate(zip(self.priors, branches)):
            z = prior.analysis(branch.latents)
            (stream,) = prior.bottleneck.compress(z)
            # Continue from the *decoded* hyper-latent so both sides compute the same Gaussian.
            z_hat = prior.bottleneck.decompress([stream], z.shape[-2:])
            params = self._gaussian_parameters(prior, z_hat, branch.indices.shape[-2:], context, i)
            encoder.encode_tables(branch.indices, context.engine.gaussian_tables(params, context.codebooks[i]))
            side.append(stream)
        return side

    def decompress(
        self, side_streams: list[bytes], shapes: list[tuple[int, int]], decoder: IndexDecoder, context: CodingContext
    ) -> list[torch.Tensor]:
        out = []
        for i, (prior, stream, (h, w)) in enumerate(zip(self.priors, side_streams, shapes)):
            z_hat = prior.bottleneck.decompress([stream], hyper_size(h, w))
            params = self._gaussian_parameters(prior, z_hat, (h, w), context, i)
            indices = decoder.decode_tables(context.engine.gaussian_tables(params, context.codebooks[i]))
            out.append(indices.reshape(1, h, w))
        return out

    @staticmethod
    def _gaussian_parameters(prior: HyperPrior, z_hat: torch.Tensor, shape, context: CodingContext, i: int) -> GaussianParameters:
        mu, sigma = prior.gaussian(z_hat, *shape)
        return GaussianParameters.from_float(_flatten_positions(mu), _flatten_positions(sigma), context.codebooks[i])
