"""Stage C: joint rate-distortion fine-tuning (RDVQ's stage 3).

loss = distortion (MSE, LPIPS, GAN) + lambda * bpp + commitment. The rate is the cross-entropy
between the soft posterior softmax(-d / tau) and the entropy model's prediction (any registered
model), so its gradient reaches the encoder through the relaxation; ``rate_targets: hard`` is the
ablation without it. The decoder always gets the hard codeword (straight-through). The codebook
stays frozen unless ``freeze_codebook: false``; lambda ramps up from 0 over
``lambda_warmup_steps`` steps. The point (:class:`~rdvq.stages.rd_point.RDPoint`) is what a
lambda/tau sweep moves, and it travels in every checkpoint.
"""

from __future__ import annotations

from typing import Any

import torch

from rdvq.entropy import EntropyModelConfig, HyperVQConfig
from rdvq.padding import pad_to_multiple
from rdvq.stages.base import DecoderStage
from rdvq.stages.file_validation import FileValidation
from rdvq.stages.rd_point import RDPoint
from rdvq.stages.vq_parts import (
    RateTargets, check_rate_targets, index_counts, log_codebook_usage, log_quantizer_statistics, log_rate, rate, vq_codec,
)
from rdvq.tokenizer import TokenizerConfig


class JointRD(DecoderStage):
    family = "vq"

    def __init__(
        self,
        entropy_model: EntropyModelConfig | None = None,
        tokenizer: TokenizerConfig | None = None,
        lmbda: float = 0.05,
        tau: float = 0.01,
        rate_targets: RateTargets = "soft",
        lambda_warmup_steps: int = 0,
        freeze_codebook: bool = True,
        **kwargs: Any,
    ) -> None:
        check_rate_targets(rate_targets)
        point = RDPoint(lmbda, tau, lambda_warmup_steps)  # checked before any checkpoint is read
        super().__init__(**kwargs)
        self.rd_point = point
        self.rate_targets = rate_targets
        self.freeze_codebook = freeze_codebook
        self.codec = vq_codec(self, tokenizer, entropy_model, HyperVQConfig())
        if freeze_codebook:
            for quantizer in self.codec.tokenizer.quantizers:
                quantizer.codebook.requires_grad_(False)
        self.validation = FileValidation()
        self.load_init_weights()

    def train(self, mode: bool = True) -> "JointRD":
        """A frozen codebook also stays in eval mode: no dead-code restarts rewrite it."""
        super().train(mode)
        if self.freeze_codebook:
            self.codec.tokenizer.quantizers.eval()
        return self

    def trained_parameters(self) -> list[torch.nn.Parameter]:
        return self.trainable(self.codec)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        height, width = batch.shape[-2:]
        x_hat, quantization = self.codec.tokenizer(pad_to_multiple(batch, self.codec.stride))
        tau = self.rd_point.tau if self.rate_targets == "soft" else None
        bpp, estimate = rate(self.codec, quantization, height * width, tau, observe=True)
        weight = self.rd_point.weight(self.global_step)
        logs = {**self.rd_point.logs(self.global_step), "train/vq_loss": quantization.loss}
        self.distortion_step(batch, x_hat[..., :height, :width], weight * bpp + quantization.loss, logs)
        log_rate(self, "train", bpp, estimate, height * width)
        if not self.freeze_codebook:
            log_quantizer_statistics(self)

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        log_codebook_usage(self, "val", index_counts(self.codec, self.validation.symbols))
