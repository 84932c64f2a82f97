"""Stage A: tokenizer pretraining (distortion + VQ losses, optional PatchGAN after a stage-relative start).

The codec has no entropy model yet, so validation runs the tokenizer itself: PSNR and MS-SSIM of
its reconstructions (aggregated as every report aggregates them) and the codebook usage.
"""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import MeanMetric

from rdvq.metrics import ms_ssim, ms_ssim_db, psnr
from rdvq.padding import pad_to_multiple
from rdvq.stages.base import DecoderStage
from rdvq.stages.vq_parts import index_counts, log_codebook_usage, log_quantizer_statistics, vq_codec
from rdvq.tokenizer import TokenizerConfig


class VQPretrain(DecoderStage):
    family = "vq"

    def __init__(self, tokenizer: TokenizerConfig | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if tokenizer is None and self.init_description is None:
            tokenizer = TokenizerConfig()
        self.codec = vq_codec(self, tokenizer, None, None, with_entropy_model=False)
        self.val_psnr = MeanMetric(nan_strategy="ignore")
        self.val_ms_ssim = MeanMetric(nan_strategy="ignore")
        self._val_indices: list[list[torch.Tensor]] = []
        self.load_init_weights()

    def trained_parameters(self) -> list[torch.nn.Parameter]:
        return self.trainable(self.codec.tokenizer)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        x_hat, quantization = self.codec.tokenizer(batch)
        self.distortion_step(batch, x_hat, quantization.loss, {"train/vq_loss": quantization.loss})
        log_quantizer_statistics(self)

    # ------------------------------------------------------------------ validation: the tokenizer itself
    def on_validation_epoch_start(self) -> None:
        self._val_indices = []

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> dict[str, torch.Tensor]:
        height, width = batch.shape[-2:]
        x_hat, quantization = self.codec.tokenizer(pad_to_multiple(batch, self.codec.stride))
        x_hat = x_hat[..., :height, :width].clamp(0.0, 1.0)
        self.val_psnr.update(psnr(x_hat, batch))
        self.val_ms_ssim.update(ms_ssim(x_hat, batch))
        self._val_indices += [[i[n : n + 1] for i in quantization.indices] for n in range(batch.shape[0])]
        return {"x": batch, "x_hat": x_hat}

    def on_validation_epoch_end(self) -> None:
        quality = self.val_ms_ssim.compute()  # in dB of the mean, as rdvq.evaluation.summarize
        self.log("val/psnr", self.val_psnr.compute(), prog_bar=True)
        self.log("val/ms_ssim_db", ms_ssim_db(quality))
        self.val_psnr.reset()
        self.val_ms_ssim.reset()
        counts = index_counts(self.codec, self._val_indices)
        counts = [self.trainer.strategy.reduce(c.to(self.device), reduce_op="sum") for c in counts]
        log_codebook_usage(self, "val", counts)
