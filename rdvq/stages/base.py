"""Shared machinery of all training stages: tokenizer construction, ``init_from``, manual
optimization steps that count once per batch, and whole-image validation."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MeanMetric

from rdvq.checkpointing import load_weights, read_checkpoint
from rdvq.errors import ConfigError
from rdvq.metrics import ms_ssim, ms_ssim_db, psnr
from rdvq.tokenizer import Quantization, Tokenizer, TokenizerConfig, pad_to_multiple
from rdvq.tokenizer.quantizer import perplexity


class RDVQStage(pl.LightningModule):
    """Base LightningModule. Subclasses build their extra modules, then call :meth:`load_init_weights`.

    ``init_from`` loads weights only (non-strict, reporting missing and unexpected keys); the
    training state of a run is restored by Lightning's ``--ckpt_path`` instead. When a stage is
    given no tokenizer configuration it inherits the one stored in the ``init_from`` checkpoint.
    """

    def __init__(self, tokenizer: TokenizerConfig | None, init_from: str | None) -> None:
        super().__init__()
        self.automatic_optimization = False
        self._init_checkpoint = read_checkpoint(init_from) if init_from else None
        self.init_from = init_from
        if tokenizer is None:
            if self._init_checkpoint is None:
                raise ConfigError("model.tokenizer is required unless model.init_from names a checkpoint to inherit it from")
            tokenizer = TokenizerConfig.from_dict(self._init_checkpoint["hyper_parameters"]["tokenizer"])
        self.tokenizer = Tokenizer(tokenizer)
        self.val_psnr = MeanMetric(nan_strategy="ignore")
        self.val_ms_ssim_db = MeanMetric(nan_strategy="ignore")
        self._val_code_counts: list[torch.Tensor] = []

    def load_init_weights(self) -> None:
        """Apply ``init_from`` once every submodule exists."""
        if self._init_checkpoint is not None:
            load_weights(self, self._init_checkpoint["state_dict"], source=str(self.init_from))
            self._init_checkpoint = None  # free the memory

    # ------------------------------------------------------------------ optimization helpers
    def _backward_and_clip(self, optimizer: Any, loss: torch.Tensor, clip: float | None) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if clip:
            self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm")

    def optimizer_step_counted(self, optimizer: Any, loss: torch.Tensor, clip: float | None) -> None:
        """Backward, clip and step; this step advances ``global_step`` (one per batch)."""
        self._backward_and_clip(optimizer, loss, clip)
        optimizer.step()

    def optimizer_step_uncounted(self, optimizer: Any, loss: torch.Tensor, clip: float | None) -> None:
        """Same as :meth:`optimizer_step_counted` for a secondary optimizer (the discriminator).

        Stepping through the strategy but not through the LightningOptimizer wrapper keeps
        ``global_step`` equal to the number of batches, so ``max_steps``, resumption and
        stage-relative schedules mean the same thing with and without a GAN.
        """
        self._backward_and_clip(optimizer, loss, clip)
        self.trainer.strategy.optimizer_step(optimizer.optimizer, closure=lambda: None, model=self)

    def step_schedulers(self) -> None:
        schedulers = self.lr_schedulers()
        if schedulers is None:
            return
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
            scheduler.step()

    # ------------------------------------------------------------------ validation
    def reconstruct(self, x: torch.Tensor) -> tuple[torch.Tensor, Quantization, torch.Tensor]:
        """Pad to the tokenizer stride, run the tokenizer, crop back; returns (x_hat, quantization, padded x)."""
        h, w = x.shape[-2:]
        padded = pad_to_multiple(x, self.tokenizer.stride)
        x_hat, quantization = self.tokenizer(padded)
        return x_hat[..., :h, :w].clamp(0.0, 1.0), quantization, padded

    def on_validation_epoch_start(self) -> None:
        self._val_code_counts = [
            torch.zeros(q.codebook_size, dtype=torch.float64, device=self.device) for q in self.tokenizer.quantizers
        ]

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> dict[str, torch.Tensor]:
        x_hat, quantization, padded = self.reconstruct(batch)
        self.val_psnr.update(psnr(x_hat, batch))
        self.val_ms_ssim_db.update(ms_ssim_db(ms_ssim(x_hat, batch)))
        for branch, indices in zip(self.tokenizer.branches, quantization.indices):
            counts = self._val_code_counts[branch.stage]
            counts += torch.bincount(indices.flatten(), minlength=counts.numel()).to(counts)
        self.validation_extra(batch, padded, quantization)
        return {"x": batch, "x_hat": x_hat}

    def validation_extra(self, x: torch.Tensor, padded: torch.Tensor, quantization: Quantization) -> None:
        """Hook for stage-specific validation metrics (rates)."""

    def on_validation_epoch_end(self) -> None:
        self.log("val/psnr", self.val_psnr.compute(), prog_bar=True)
        self.log("val/ms_ssim_db", self.val_ms_ssim_db.compute())
        self.val_psnr.reset()
        self.val_ms_ssim_db.reset()
        usages, perplexities = [], []
        for stage, counts in enumerate(self._val_code_counts):
            counts = self.trainer.strategy.reduce(counts, reduce_op="sum")
            usages.append((counts > 0).double().mean())
            perplexities.append(perplexity(counts))
            if len(self._val_code_counts) > 1:
                self.log(f"val/usage_r{stage}", usages[-1].float())
        self.log("val/usage", torch.stack(usages).mean().float(), prog_bar=True)
        self.log("val/perplexity", torch.stack(perplexities).mean().float())

    def log_quantizer_statistics(self) -> None:
        quantizers = self.tokenizer.quantizers
        self.log("train/usage", sum(q.usage() for q in quantizers) / len(quantizers))
        self.log("train/perplexity", sum(float(perplexity(q.ema_counts)) for q in quantizers) / len(quantizers))
        self.log("train/restarted_codes", float(sum(int(q.restarted_codes) for q in quantizers)))

    def trainable(self, *modules: nn.Module) -> list[nn.Parameter]:
        return [p for m in modules for p in m.parameters() if p.requires_grad]
