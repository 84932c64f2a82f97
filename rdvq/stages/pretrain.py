"""Stage A: tokenizer pretraining (distortion + VQ losses, optional PatchGAN after a stage-relative start)."""

from __future__ import annotations

from typing import Any

import torch
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable

from rdvq.stages.base import RDVQStage
from rdvq.stages.distortion import AdversarialConfig, DistortionConfig, DistortionLoss
from rdvq.tokenizer import TokenizerConfig


class VQPretrain(RDVQStage):
    def __init__(
        self,
        tokenizer: TokenizerConfig | None = None,
        distortion: DistortionConfig | None = None,
        adversarial: AdversarialConfig | None = None,
        optimizer: OptimizerCallable = torch.optim.Adam,
        disc_optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        disc_lr_scheduler: LRSchedulerCallable | None = None,
        gradient_clip: float | None = 1.0,
        init_from: str | None = None,
    ) -> None:
        if tokenizer is None and init_from is None:
            tokenizer = TokenizerConfig()
        super().__init__(tokenizer, init_from, optimizer, lr_scheduler, gradient_clip, disc_optimizer, disc_lr_scheduler)
        self.distortion = DistortionLoss(distortion, adversarial)
        self.load_init_weights()

    def parameter_groups(self) -> list[dict[str, Any]]:
        return [{"params": self.trainable(self.tokenizer)}]

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        x_hat, quantization = self.tokenizer(batch)
        self.generator_and_discriminator_step(batch, x_hat, quantization.loss, {"train/vq_loss": quantization.loss})
        self.log_quantizer_statistics()
