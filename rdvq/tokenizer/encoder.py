"""Conv ResNet encoder with one projection head per tap (one tap per configured scale)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rdvq.tokenizer.blocks import Downsample, ResBlock, group_norm, res_stack
from rdvq.tokenizer.config import TokenizerConfig


class TapHead(nn.Module):
    """Projects trunk features at one stride to the embedding dimension of the codebook."""

    def __init__(self, channels: int, embed_dim: int) -> None:
        super().__init__()
        self.block = ResBlock(channels, channels)
        self.norm = group_norm(channels)
        self.out = nn.Conv2d(channels, embed_dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.silu(self.norm(self.block(x))))


class Encoder(nn.Module):
    """Maps an image (B,3,H,W) to one latent (B,D,H/s,W/s) per tap scale s, finest first."""

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        widths = [config.base_channels * m for m in config.channel_mult]
        self.scales = config.scales
        self.stem = config.stem
        self.conv_in = nn.Conv2d(3 * config.stem**2, widths[0], 3, padding=1)
        self.levels = nn.ModuleList()
        self.downs = nn.ModuleList()
        self.heads = nn.ModuleDict()
        for level, width in enumerate(widths):
            stride = config.level_stride(level)
            in_width = widths[level - 1] if level else widths[0]
            self.levels.append(res_stack(in_width, width, config.num_res_blocks, stride in config.attention_scales))
            if stride in config.scales:
                self.heads[str(stride)] = TapHead(width, config.embed_dim)
            if level < len(widths) - 1:
                self.downs.append(Downsample(width, width))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = self.conv_in(F.pixel_unshuffle(x, self.stem) if self.stem > 1 else x)
        taps: list[torch.Tensor] = []
        for level, stack in enumerate(self.levels):
            h = stack(h)
            key = str(self.stem << level)
            if key in self.heads:
                taps.append(self.heads[key](h))
            if level < len(self.downs):
                h = self.downs[level](h)
        return taps
