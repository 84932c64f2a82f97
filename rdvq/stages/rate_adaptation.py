"""Stage B: rate adaptation. The tokenizer and codebook are frozen (and stay bit-identical); only the
entropy model learns, on rate alone. Validation reports estimated and real (file-size) bpp."""

from __future__ import annotations

from typing import Any

import torch
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from rdvq.entropy import EntropyModelConfig, HyperVQConfig
from rdvq.padding import pad_to_multiple
from rdvq.stages.base import RDVQStage
from rdvq.stages.rate import RateTargets, RateTerm
from rdvq.tokenizer import TokenizerConfig


class RateAdaptation(RDVQStage):
    def __init__(
        self,
        entropy_model: EntropyModelConfig | None = None,
        tokenizer: TokenizerConfig | None = None,
        rate_targets: RateTargets = "soft",
        tau: float = 0.01,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        aux_lr: float = 1e-3,
        gradient_clip: float | None = 1.0,
        real_bpp_images: int = 4,
        init_from: str | None = None,
    ) -> None:
        super().__init__(tokenizer, init_from, optimizer, lr_scheduler, gradient_clip)
        self.rate = RateTerm(self.inherited_entropy_config(entropy_model, HyperVQConfig()), self.tokenizer, rate_targets, tau)
        self.aux_lr = aux_lr
        self.real_bpp_images = real_bpp_images
        self.tokenizer.requires_grad_(False)
        self.tokenizer.eval()
        if not any(p.requires_grad for p in self.rate.parameters()):
            # DDP refuses to wrap a module with nothing to train; counting models (static, uniform)
            # have nothing, and this empty tensor changes nothing else (no optimizer, no gradient).
            self.ddp_placeholder = nn.Parameter(torch.zeros(0))
        self.load_init_weights()

    def train(self, mode: bool = True) -> "RateAdaptation":
        """The frozen tokenizer stays in eval mode: no usage statistics, no dead-code restarts.
        (Lightning restores per-module modes after validation, so eval set once stays set.)"""
        super().train(mode)
        self.tokenizer.eval()
        return self

    def parameter_groups(self) -> list[dict[str, Any]]:
        return self.rate.parameter_groups(self.aux_lr)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        with torch.no_grad():
            quantization = self.tokenizer.quantize(self.tokenizer.encode(pad_to_multiple(batch, self.tokenizer.stride)))
        pixels = batch.shape[-2] * batch.shape[-1]
        bpp, rate = self.rate(self.tokenizer, quantization, pixels)
        self.log_rate("train", bpp, rate, pixels)
        aux = self.rate.aux_loss()
        self.log("train/aux_loss", aux)
        loss = bpp + aux
        optimizer = self.optimizers()
        if loss.requires_grad:
            self.optimizer_step_counted(optimizer, loss)
            self.step_schedulers()
        else:  # counting models: an empty step still advances global_step, so max_steps bounds the pass
            optimizer.step()
