"""Stage B: rate adaptation. The tokenizer and codebook are frozen (and stay bit-identical); only the
entropy model learns, on rate alone. Validation codes real files (estimated and real bpp)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rdvq.entropy import EntropyModelConfig, HyperVQConfig
from rdvq.errors import ConfigError
from rdvq.padding import pad_to_multiple
from rdvq.stages.base import CodecStage
from rdvq.stages.file_validation import FileValidation
from rdvq.stages.vq_parts import RateTargets, check_rate_targets, index_counts, log_codebook_usage, log_rate, rate, vq_codec
from rdvq.tokenizer import TokenizerConfig


class RateAdaptation(CodecStage):
    family = "vq"

    def __init__(
        self,
        entropy_model: EntropyModelConfig | None = None,
        tokenizer: TokenizerConfig | None = None,
        rate_targets: RateTargets = "soft",
        tau: float = 0.01,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_rate_targets(rate_targets)
        if not tau > 0:
            raise ConfigError(f"tau must be > 0, got {tau}")
        self.tau = tau if rate_targets == "soft" else None
        self.codec = vq_codec(self, tokenizer, entropy_model, HyperVQConfig())
        self.codec.tokenizer.requires_grad_(False)
        if not any(p.requires_grad for p in self.codec.entropy_model.parameters()):
            # DDP refuses to wrap a module with nothing to train; counting models (static, uniform)
            # have nothing, and this empty tensor changes nothing else (no optimizer, no gradient).
            self.ddp_placeholder = nn.Parameter(torch.zeros(0))
        self.validation = FileValidation()
        self.load_init_weights()

    def train(self, mode: bool = True) -> "RateAdaptation":
        """The frozen tokenizer stays in eval mode: no usage statistics, no dead-code restarts.
        (Lightning restores per-module modes after validation, so eval set once stays set.)"""
        super().train(mode)
        self.codec.tokenizer.eval()
        return self

    def trained_parameters(self) -> list[torch.nn.Parameter]:
        return self.trainable(self.codec.entropy_model)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        tokenizer = self.codec.tokenizer
        with torch.no_grad():
            quantization = tokenizer.quantize(tokenizer.encode(pad_to_multiple(batch, tokenizer.stride)))
        pixels = batch.shape[-2] * batch.shape[-1]
        bpp, estimate = rate(self.codec, quantization, pixels, self.tau, observe=True)
        log_rate(self, "train", bpp, estimate, pixels)
        self.main_step(bpp)
        self.aux_step()
        self.step_schedulers()

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        log_codebook_usage(self, "val", index_counts(self.codec, self.validation.symbols))
