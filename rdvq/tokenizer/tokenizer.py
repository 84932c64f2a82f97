"""The VQ tokenizer: encoder taps -> (residual) vector quantization -> coarse-to-fine decoder.

A *branch* is one index map: one tap scale and one residual stage. Branches are ordered by scale
(finest first) and then by stage, and every entropy model and the codec use this order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rdvq.tokenizer.config import TokenizerConfig
from rdvq.tokenizer.decoder import Decoder
from rdvq.tokenizer.encoder import Encoder
from rdvq.tokenizer.quantizer import VectorQuantizer


@dataclass(frozen=True)
class Branch:
    scale: int
    stage: int

    @property
    def name(self) -> str:
        return f"s{self.scale}" + (f"r{self.stage}" if self.stage else "")


@dataclass
class Quantization:
    quantized: list[torch.Tensor]  # per scale (B,D,h,w): straight-through sum over residual stages
    indices: list[torch.Tensor]  # per branch (B,h,w) int64
    inputs: list[torch.Tensor]  # per branch (B,D,h,w): the vectors each branch matched
    loss: torch.Tensor  # codebook + commitment, summed over residual stages


def _flatten(maps: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([m.permute(0, 2, 3, 1).reshape(-1, m.shape[1]) for m in maps])


def _unflatten(flat: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
    out, start = [], 0
    for m in like:
        b, _, h, w = m.shape
        n = b * h * w
        out.append(flat[start : start + n].reshape(b, h, w, -1).permute(0, 3, 1, 2))
        start += n
    return out


class Tokenizer(nn.Module):
    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        # One codebook per residual stage, shared by every scale.
        self.quantizers = nn.ModuleList(
            VectorQuantizer(
                config.codebook_size,
                config.embed_dim,
                l2_normalize=config.l2_normalize,
                beta=config.beta,
                dead_code_threshold=config.dead_code_threshold,
                dead_code_interval=config.dead_code_interval,
                max_distance_elements=config.max_distance_elements,
            )
            for _ in range(config.residual_stages)
        )
        self.branches = [Branch(s, r) for s in config.scales for r in range(config.residual_stages)]

    @property
    def stride(self) -> int:
        return self.config.stride

    def quantizer(self, branch: Branch) -> VectorQuantizer:
        return self.quantizers[branch.stage]

    def latent_shapes(self, height: int, width: int) -> list[tuple[int, int]]:
        """Index-map size of every branch for a padded input of ``height`` x ``width``."""
        return [(height // b.scale, width // b.scale) for b in self.branches]

    # ------------------------------------------------------------------ analysis
    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Continuous latents per scale, finest first; ``x`` in [0,1] with sides divisible by the stride."""
        return self.encoder(x * 2.0 - 1.0)

    def quantize(self, latents: list[torch.Tensor]) -> Quantization:
        stages = len(self.quantizers)
        residual = _flatten(latents)
        hard_sum: torch.Tensor | None = None
        matched: torch.Tensor | None = None
        per_stage: list[tuple[torch.Tensor, torch.Tensor]] = []
        loss = residual.new_zeros(())
        for quantizer in self.quantizers:
            result = quantizer(residual)
            matched = result.inputs if matched is None else matched
            per_stage.append((result.indices, result.inputs))
            loss = loss + result.loss
            hard_sum = result.hard if hard_sum is None else hard_sum + result.hard
            residual = residual - result.hard.detach()
        assert hard_sum is not None and matched is not None
        # Straight-through: the decoder sees the hard codewords, gradients reach the encoder.
        quantized = _unflatten(matched + (hard_sum - matched).detach(), latents)
        indices: list[torch.Tensor] = []
        inputs: list[torch.Tensor] = []
        stage_indices = [_unflatten(i.unsqueeze(-1), latents) for i, _ in per_stage]
        stage_inputs = [_unflatten(v, latents) for _, v in per_stage]
        for scale_pos in range(len(latents)):
            for stage in range(stages):
                indices.append(stage_indices[stage][scale_pos].squeeze(1))
                inputs.append(stage_inputs[stage][scale_pos])
        return Quantization(quantized=quantized, indices=indices, inputs=inputs, loss=loss)

    # ------------------------------------------------------------------ synthesis
    def decode(self, quantized: list[torch.Tensor]) -> torch.Tensor:
        """Image in [0,1] (unclamped) from quantized latents per scale."""
        return (self.decoder(quantized) + 1.0) / 2.0

    def embed_indices(self, indices: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per-scale latents (B,D,h,w) from per-branch index maps (sum over residual stages)."""
        stages = len(self.quantizers)
        out = []
        for pos in range(len(self.config.scales)):
            total = None
            for stage in range(stages):
                vec = self.quantizers[stage].lookup(indices[pos * stages + stage]).permute(0, 3, 1, 2)
                total = vec if total is None else total + vec
            out.append(total)
        return out

    def decode_indices(self, indices: list[torch.Tensor]) -> torch.Tensor:
        return self.decode(self.embed_indices(indices))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Quantization]:
        quantization = self.quantize(self.encode(x))
        return self.decode(quantization.quantized), quantization

    # ------------------------------------------------------------------ rate relaxation
    def soft_posteriors(self, quantization: Quantization, tau: float) -> list[torch.Tensor]:
        """softmax(-d/tau) over each branch's codebook: (B,h,w,K) per branch, differentiable."""
        out = []
        for branch, inputs in zip(self.branches, quantization.inputs):
            b, d, h, w = inputs.shape
            flat = inputs.permute(0, 2, 3, 1).reshape(-1, d)
            out.append(self.quantizer(branch).soft_posterior(flat, tau).reshape(b, h, w, -1))
        return out
