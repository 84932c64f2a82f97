"""Tokenizer configuration: one dataclass, validated once, stored in every checkpoint as a plain dict."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from rdvq.config_dict import DictConfig
from rdvq.errors import ConfigError


@dataclass
class TokenizerConfig(DictConfig):
    """Architecture of the VQ tokenizer.

    ``scales`` lists the downsampling factor of every tap (``[16]`` single-scale, ``[16, 32, 64]``
    RDVQ-style multi-scale with one shared codebook). ``residual_stages > 1`` quantizes each tap
    with a residual VQ of that many stages (one codebook per stage, shared across taps).
    ``stem`` folds ``stem x stem`` pixel blocks into channels before the first convolution (pixel
    unshuffle) and unfolds them after the last (pixel shuffle), so no layer runs at full
    resolution: the CPU-efficient choice, since full-resolution layers cost most of the time.
    ``channel_mult`` has one entry per resolution level, level ``l`` at stride ``stem * 2**l``, so
    its length must be ``log2(max(scales) / stem) + 1``.
    """

    section: ClassVar[str] = "tokenizer"

    base_channels: int = 64
    stem: int = 1
    channel_mult: list[int] = field(default_factory=lambda: [1, 1, 2, 2, 4])
    num_res_blocks: int = 1
    attention_scales: list[int] = field(default_factory=list)
    scales: list[int] = field(default_factory=lambda: [16])
    embed_dim: int = 32
    codebook_size: int = 1024
    l2_normalize: bool = True
    residual_stages: int = 1
    beta: float = 0.25
    dead_code_threshold: float = 1.0
    dead_code_interval: int = 100
    max_distance_elements: int = 1 << 22

    def __post_init__(self) -> None:
        self.channel_mult = list(self.channel_mult)
        self.scales = sorted(set(int(s) for s in self.scales))
        self.attention_scales = sorted(set(int(s) for s in self.attention_scales))
        self.validate()

    @property
    def num_levels(self) -> int:
        return len(self.channel_mult)

    def level_stride(self, level: int) -> int:
        return self.stem << level

    @property
    def stride(self) -> int:
        """Input sides must be a multiple of this (the coarsest tap)."""
        return max(self.scales)

    def validate(self) -> None:
        def fail(msg: str) -> None:
            raise ConfigError(f"tokenizer: {msg}")

        if self.base_channels < 8 or self.base_channels % 8:
            fail(f"base_channels must be a positive multiple of 8 (GroupNorm groups), got {self.base_channels}")
        if not self.channel_mult or any(m < 1 for m in self.channel_mult):
            fail(f"channel_mult must be a non-empty list of positive ints, got {self.channel_mult}")
        if self.num_res_blocks < 1:
            fail(f"num_res_blocks must be >= 1, got {self.num_res_blocks}")
        if not self.scales:
            fail("scales must list at least one downsampling factor")
        for s in self.scales + self.attention_scales + [self.stem]:
            if s < 1 or s & (s - 1):
                fail(f"scales, attention_scales and stem must be powers of two, got {s}")
        if any(s < self.stem for s in self.scales + self.attention_scales):
            fail(f"scales and attention_scales must be at least the stem ({self.stem})")
        expected_levels = int(math.log2(self.stride // self.stem)) + 1
        if self.num_levels != expected_levels:
            fail(
                f"channel_mult needs {expected_levels} entries (levels at strides {self.stem}..{self.stride}) "
                f"for scales {self.scales}, got {len(self.channel_mult)}"
            )
        if any(s > self.stride for s in self.attention_scales):
            fail(f"attention_scales {self.attention_scales} exceed the coarsest scale {self.stride}")
        if self.embed_dim < 1:
            fail(f"embed_dim must be >= 1, got {self.embed_dim}")
        if not 1 <= self.codebook_size <= (1 << 24) - 2:
            fail(f"codebook_size must be in [1, 2^24-2], got {self.codebook_size}")
        if self.residual_stages < 1:
            fail(f"residual_stages must be >= 1, got {self.residual_stages}")
        if self.residual_stages > 1 and self.l2_normalize:
            fail("residual VQ quantizes residuals, which are not unit vectors: set l2_normalize: false")
        if self.beta < 0:
            fail(f"beta must be >= 0, got {self.beta}")
        if self.dead_code_interval < 0 or self.dead_code_threshold < 0:
            fail("dead_code_interval and dead_code_threshold must be >= 0")
        if self.max_distance_elements < 1:
            fail(f"max_distance_elements must be >= 1, got {self.max_distance_elements}")

