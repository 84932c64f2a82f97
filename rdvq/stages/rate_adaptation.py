"""Stage B: rate adaptation. The tokenizer and codebook are frozen (and stay bit-identical); only the
entropy model learns, on rate alone. Validation reports estimated and real (file-size) bpp."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal

import torch
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torchmetrics import MeanMetric

from rdvq.codec import ImageCodec
from rdvq.entropy import BranchBatch, EntropyModelConfig, HyperVQModel, RateEstimate, build_entropy_model
from rdvq.errors import ConfigError
from rdvq.stages.base import RDVQStage
from rdvq.tokenizer import Quantization, TokenizerConfig, pad_to_multiple


class RateAdaptation(RDVQStage):
    def __init__(
        self,
        entropy_model: EntropyModelConfig | None = None,
        tokenizer: TokenizerConfig | None = None,
        rate_targets: Literal["soft", "hard"] = "soft",
        tau: float = 0.01,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        aux_lr: float = 1e-3,
        gradient_clip: float | None = 1.0,
        real_bpp_images: int = 4,
        init_from: str | None = None,
    ) -> None:
        super().__init__(tokenizer, init_from)
        if tau <= 0:
            raise ConfigError(f"tau must be > 0, got {tau}")
        self.entropy_config = entropy_model or EntropyModelConfig()
        self.entropy_model = build_entropy_model(self.entropy_config, self.tokenizer)
        self.rate_targets = rate_targets
        self.tau = tau
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.aux_lr = aux_lr
        self.gradient_clip = gradient_clip
        self.real_bpp_images = real_bpp_images
        self.tokenizer.requires_grad_(False)
        self.tokenizer.eval()
        if not any(p.requires_grad for p in self.entropy_model.parameters()):
            # DDP refuses to wrap a module with nothing to train; counting models (static, uniform)
            # have nothing, and this empty tensor changes nothing else (no optimizer, no gradient).
            self.ddp_placeholder = nn.Parameter(torch.zeros(0))
        self.val_bpp_estimated = MeanMetric()
        self.val_bpp_real = MeanMetric()
        self.val_bpp_gap = MeanMetric()
        self.save_hyperparameters(
            {
                "tokenizer": self.tokenizer.config.to_dict(),
                "entropy_model": self.entropy_config.to_dict(),
                "rate_targets": rate_targets,
                "tau": tau,
                "aux_lr": aux_lr,
                "gradient_clip": gradient_clip,
                "init_from": init_from,
            }
        )
        self.load_init_weights()

    def train(self, mode: bool = True) -> "RateAdaptation":
        """The frozen tokenizer stays in eval mode: no usage statistics, no dead-code restarts.
        (Lightning restores per-module modes after validation, so eval set once stays set.)"""
        super().train(mode)
        self.tokenizer.eval()
        return self

    def configure_optimizers(self) -> Any:
        aux = [p for n, p in self.entropy_model.named_parameters() if n.endswith("quantiles")]
        main = [p for n, p in self.entropy_model.named_parameters() if not n.endswith("quantiles")]
        if not main:  # counting models (static, uniform) have nothing to optimize
            return None
        groups = [{"params": main}] + ([{"params": aux, "lr": self.aux_lr}] if aux else [])
        optimizer = self.optimizer_factory(groups)
        if self.lr_scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.lr_scheduler_factory(optimizer), "interval": "step"}}

    def branch_batches(self, quantization: Quantization, soft: bool) -> list[BranchBatch]:
        codewords = [self.tokenizer.quantizer(b).codewords().detach() for b in self.tokenizer.branches]
        targets = (
            [t.detach() for t in self.tokenizer.soft_posteriors(quantization, self.tau)]
            if soft
            else [None] * len(codewords)
        )
        return [
            BranchBatch(indices=i, latents=v.detach(), codewords=c, targets=t)
            for i, v, c, t in zip(quantization.indices, quantization.inputs, codewords, targets)
        ]

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        x = pad_to_multiple(batch, self.tokenizer.stride)
        with torch.no_grad():
            quantization = self.tokenizer.quantize(self.tokenizer.encode(x))
        branches = self.branch_batches(quantization, soft=self.rate_targets == "soft")
        self.entropy_model.observe(branches)
        rate = self.entropy_model(branches)
        pixels = batch.shape[-2] * batch.shape[-1]
        bpp = rate.total().mean() / pixels
        self.log("train/bpp", bpp, prog_bar=True)
        self.log_branch_bpp("train", rate, pixels)
        loss = bpp
        if isinstance(self.entropy_model, HyperVQModel):
            aux = self.entropy_model.aux_loss()
            self.log("train/aux_loss", aux)
            loss = loss + aux
        optimizer = self.optimizers()
        if loss.requires_grad:
            self.optimizer_step_counted(optimizer, loss, self.gradient_clip)
            self.step_schedulers()
        else:  # counting models: an empty step still advances global_step, so max_steps bounds the pass
            optimizer.step()

    def log_branch_bpp(self, split: str, rate: RateEstimate, pixels: int) -> None:
        for branch, index_bits, side_bits in zip(self.tokenizer.branches, rate.index_bits, rate.side_bits):
            self.log(f"{split}/bpp_{branch.name}", index_bits.mean() / pixels)
            if side_bits.abs().sum() > 0:
                self.log(f"{split}/bpp_side_{branch.name}", side_bits.mean() / pixels)

    # ------------------------------------------------------------------ validation
    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        self.entropy_model.update_tables()  # parameters changed since the last coding tables
        self._codec = ImageCodec(self.tokenizer, self.entropy_model, self.entropy_config)

    def validation_extra(self, x: torch.Tensor, padded: torch.Tensor, quantization: Quantization) -> None:
        pixels = x.shape[-2] * x.shape[-1]
        rate = self.entropy_model(self.branch_batches(quantization, soft=False))
        estimated = rate.total() / pixels
        self.val_bpp_estimated.update(estimated)
        if self.val_bpp_real.update_count < self.real_bpp_images:
            for image, est in zip(x, estimated):
                real = len(self._codec.compress(image)) * 8 / pixels
                self.val_bpp_real.update(torch.tensor(real))
                self.val_bpp_gap.update(torch.tensor(100.0 * (real / float(est) - 1.0)))

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self.log("val/bpp_estimated", self.val_bpp_estimated.compute(), prog_bar=True)
        self.val_bpp_estimated.reset()
        if self.val_bpp_real.update_count:
            self.log("val/bpp_real", self.val_bpp_real.compute(), prog_bar=True)
            self.log("val/bpp_gap_percent", self.val_bpp_gap.compute())
        self.val_bpp_real.reset()
        self.val_bpp_gap.reset()
        self._codec = None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store coding tables that match the saved weights, so every decoder uses the same ones."""
        self.entropy_model.update_tables()
        state = checkpoint["state_dict"]
        for name, tensor in self.entropy_model.state_dict().items():
            state[f"entropy_model.{name}"] = tensor
