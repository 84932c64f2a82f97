"""Conv ResNet decoder that fuses the quantized taps coarse to fine."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rdvq.tokenizer.blocks import Upsample, group_norm, res_stack
from rdvq.tokenizer.config import TokenizerConfig


class Decoder(nn.Module):
    """Starts from the coarsest tap and adds each finer tap, projected, at its own resolution.

    Level ``l`` (stride ``stem * 2**l``) runs ``num_res_blocks + 1`` ResBlocks; between levels a
    nearest upsampling conv halves the stride; a pixel shuffle undoes the stem. A single-scale
    tokenizer is the special case of one tap.
    """

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        widths = [config.base_channels * m for m in config.channel_mult]
        top = len(widths) - 1
        self.scales = config.scales
        self.stem = config.stem
        self.project = nn.ModuleDict(
            {str(s): nn.Conv2d(config.embed_dim, widths[(s // config.stem).bit_length() - 1], 3, padding=1) for s in config.scales}
        )
        self.mid = res_stack(widths[top], widths[top], 2, config.stride in config.attention_scales)
        self.levels = nn.ModuleList()
        self.ups = nn.ModuleList()
        for level in range(top, -1, -1):
            stride = config.level_stride(level)
            self.levels.append(
                res_stack(widths[level], widths[level], config.num_res_blocks + 1, stride in config.attention_scales)
            )
            if level > 0:
                self.ups.append(Upsample(widths[level], widths[level - 1]))
        self.norm_out = group_norm(widths[0])
        self.conv_out = nn.Conv2d(widths[0], 3 * config.stem**2, 3, padding=1)

    def forward(self, taps: list[torch.Tensor]) -> torch.Tensor:
        """``taps`` are the quantized latents, finest first, as produced by the encoder."""
        by_stride = dict(zip(self.scales, taps))
        top = len(self.levels) - 1
        coarsest = self.stem << top
        h = self.mid(self.project[str(coarsest)](by_stride[coarsest]))
        for i, stack in enumerate(self.levels):
            stride = self.stem << (top - i)
            if i > 0 and stride in by_stride:
                h = h + self.project[str(stride)](by_stride[stride])
            h = stack(h)
            if i < len(self.ups):
                h = self.ups[i](h)
        out = self.conv_out(F.silu(self.norm_out(h)))
        return F.pixel_shuffle(out, self.stem) if self.stem > 1 else out
