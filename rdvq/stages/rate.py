"""The rate part of every stage that has an entropy model.

:class:`RateTerm` owns the entropy model and computes the rate of a quantization in bits per pixel,
against hard indices or against the soft posterior ``softmax(-d / tau)`` (RDVQ's relaxation).
It does not detach anything: when the tokenizer ran with gradients (joint training), the rate's
gradient reaches the encoder through the soft posterior; when it ran without (rate adaptation),
only the entropy model learns. It also keeps the coding tables in step with the weights (before
validation and in every checkpoint) and measures real file sizes on validation images through
:mod:`rdvq.evaluation`.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn
from torchmetrics import MeanMetric

from rdvq.codec import ImageCodec, VQCodec
from rdvq.entropy import BranchBatch, RateEstimate, build_entropy_model
from rdvq.errors import ConfigError
from rdvq.evaluation import evaluate
from rdvq.tokenizer import Quantization, Tokenizer

RateTargets = Literal["soft", "hard"]


class RateTerm(nn.Module):
    def __init__(self, config: Any, tokenizer: Tokenizer, targets: RateTargets = "soft", tau: float = 0.01) -> None:
        super().__init__()
        if targets not in ("soft", "hard"):
            raise ConfigError(f"rate_targets must be soft or hard, got {targets!r}")
        if tau <= 0:
            raise ConfigError(f"tau must be > 0, got {tau}")
        self.config = config
        self.targets = targets
        self.tau = tau
        self.entropy_model = build_entropy_model(config, tokenizer)
        self.val_bpp_estimated = MeanMetric()
        self.val_bpp_real = MeanMetric()
        self.val_bpp_gap = MeanMetric()
        self._codec: ImageCodec | None = None

    # ------------------------------------------------------------------ training
    def branches(self, tokenizer: Tokenizer, quantization: Quantization, soft: bool) -> list[BranchBatch]:
        codewords = [tokenizer.quantizer(b).codewords().detach() for b in tokenizer.branches]
        targets = tokenizer.soft_posteriors(quantization, self.tau) if soft else [None] * len(codewords)
        return [
            BranchBatch(indices=i, latents=v, codewords=c, targets=t)
            for i, v, c, t in zip(quantization.indices, quantization.inputs, codewords, targets)
        ]

    def forward(self, tokenizer: Tokenizer, quantization: Quantization, pixels: int) -> tuple[torch.Tensor, RateEstimate]:
        """(mean bits per pixel of the batch, per-branch bits) under this term's targets."""
        branches = self.branches(tokenizer, quantization, soft=self.targets == "soft")
        if self.training:
            self.entropy_model.observe(branches)
        rate = self.entropy_model(branches)
        return rate.total().mean() / pixels, rate

    def aux_loss(self) -> torch.Tensor:
        return self.entropy_model.aux_loss()

    def parameter_groups(self, aux_lr: float) -> list[dict[str, Any]]:
        return self.entropy_model.parameter_groups(aux_lr)

    # ------------------------------------------------------------------ tables and checkpoints
    def store_tables(self, state_dict: dict[str, torch.Tensor], prefix: str) -> None:
        """Refresh the coding tables and put them into a checkpoint's state dict (``prefix`` = this
        module's key prefix), so every decoder of that checkpoint uses tables matching its weights."""
        self.entropy_model.update_tables()
        for name, tensor in self.entropy_model.state_dict().items():
            state_dict[f"{prefix}entropy_model.{name}"] = tensor

    # ------------------------------------------------------------------ validation
    def begin_validation(self, tokenizer: Tokenizer) -> None:
        self.entropy_model.update_tables()  # parameters changed since the last coding tables
        self._codec = ImageCodec(VQCodec(tokenizer, self.entropy_model, self.config))

    def validate(self, tokenizer: Tokenizer, x: torch.Tensor, quantization: Quantization, real_images: int) -> None:
        """Estimated bpp of a validation batch (hard indices); real file sizes for the first
        ``real_images`` images of the epoch."""
        pixels = x.shape[-2] * x.shape[-1]
        estimated = self.entropy_model(self.branches(tokenizer, quantization, soft=False)).total() / pixels
        self.val_bpp_estimated.update(estimated)
        for image, est in zip(x, estimated):
            if self.val_bpp_real.update_count >= real_images:
                break
            real = evaluate(self._codec, [("val", image)]).images[0].bpp
            self.val_bpp_real.update(torch.tensor(real))
            self.val_bpp_gap.update(torch.tensor(100.0 * (real / float(est) - 1.0)))

    def end_validation(self) -> dict[str, torch.Tensor]:
        """The epoch's rate metrics (the real ones only if any image was coded), then reset."""
        metrics = {"val/bpp_estimated": self.val_bpp_estimated.compute()}
        if self.val_bpp_real.update_count:
            metrics["val/bpp_real"] = self.val_bpp_real.compute()
            metrics["val/bpp_gap_percent"] = self.val_bpp_gap.compute()
        for metric in (self.val_bpp_estimated, self.val_bpp_real, self.val_bpp_gap):
            metric.reset()
        self._codec = None
        return metrics
