"""Lightning plumbing shared by every stage; the stages themselves are short compositions of parts.

:class:`CodecStage` is family-neutral: ``init_from`` (weights only, non-strict, reporting missing
and unexpected keys), manual optimization steps that count once per batch, the
generator/discriminator update of a batch, schedulers, and the codec description every checkpoint
carries (:mod:`rdvq.checkpointing`). :class:`RDVQStage` adds what the VQ stages share: the
tokenizer (a stage given no tokenizer or entropy-model configuration inherits the one in the
``init_from`` checkpoint's codec description), whole-image validation (PSNR, MS-SSIM, codebook
usage, and the rate term's estimated and real bpp) and the VQ codec description.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from torchmetrics import MeanMetric

from rdvq.checkpointing import load_weights, read_checkpoint, read_codec_description, write_codec_description
from rdvq.codec.vq import vq_description
from rdvq.entropy import entropy_config_from_dict
from rdvq.errors import ConfigError
from rdvq.metrics import ms_ssim, ms_ssim_db, psnr
from rdvq.padding import pad_to_multiple
from rdvq.stages.distortion import DistortionLoss
from rdvq.stages.rate import RateTerm
from rdvq.tokenizer import Quantization, Tokenizer, TokenizerConfig
from rdvq.tokenizer.quantizer import perplexity


class CodecStage(pl.LightningModule):
    """Base LightningModule of every stage, whatever the codec family. A subclass builds its parts,
    says what its generator optimizer trains (:meth:`parameter_groups`) and which codec its
    checkpoints hold (:meth:`codec_description`), then calls :meth:`load_init_weights`.
    """

    def __init__(
        self,
        init_from: str | None,
        optimizer: OptimizerCallable,
        lr_scheduler: LRSchedulerCallable | None,
        gradient_clip: float | None,
        disc_optimizer: OptimizerCallable | None = None,
        disc_lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.init_from = init_from
        self._init_checkpoint = read_checkpoint(init_from) if init_from else None
        self._init_description = (
            read_codec_description(self._init_checkpoint, init_from) if self._init_checkpoint is not None else None
        )
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.disc_optimizer_factory = disc_optimizer
        self.disc_lr_scheduler_factory = disc_lr_scheduler
        self.gradient_clip = gradient_clip
        self.distortion: DistortionLoss | None = None

    def on_fit_start(self) -> None:
        """Lightning (>= 2.2) keeps the modes modules were built in, so a stage's :meth:`train`,
        which keeps its frozen parts in eval mode (no quantizer statistics, no dead-code restarts),
        is applied here, before the first step."""
        self.train()

    def load_init_weights(self) -> None:
        """Apply ``init_from`` once every submodule exists."""
        if self._init_checkpoint is not None:
            load_weights(self, self._init_checkpoint["state_dict"], source=str(self.init_from))
            self._init_checkpoint = None  # free the memory

    # ------------------------------------------------------------------ optimizers
    def parameter_groups(self) -> list[dict[str, Any]]:
        """Parameter groups of the generator optimizer (empty: nothing to optimize)."""
        raise NotImplementedError

    def configure_optimizers(self) -> Any:
        groups = [g for g in self.parameter_groups() if g["params"]]
        if not groups:  # counting models (static, uniform) in stage B have nothing to optimize
            return None
        configs = [self._optimizer_config(self.optimizer_factory, self.lr_scheduler_factory, groups)]
        if self.distortion is not None and self.distortion.discriminator is not None:
            if self.disc_optimizer_factory is None:
                raise ConfigError("an adversarial weight > 0 needs model.disc_optimizer")
            disc = [{"params": list(self.distortion.discriminator.parameters())}]
            configs.append(self._optimizer_config(self.disc_optimizer_factory, self.disc_lr_scheduler_factory, disc))
        return configs

    @staticmethod
    def _optimizer_config(make_optimizer: OptimizerCallable, make_scheduler: LRSchedulerCallable | None, groups: list) -> dict:
        optimizer = make_optimizer(groups)
        config: dict[str, Any] = {"optimizer": optimizer}
        if make_scheduler is not None:
            config["lr_scheduler"] = {"scheduler": make_scheduler(optimizer), "interval": "step"}
        return config

    def trainable(self, *modules: torch.nn.Module) -> list[torch.nn.Parameter]:
        return [p for m in modules for p in m.parameters() if p.requires_grad]

    def _backward_and_clip(self, optimizer: Any, loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if self.gradient_clip:
            self.clip_gradients(optimizer, gradient_clip_val=self.gradient_clip, gradient_clip_algorithm="norm")

    def optimizer_step_counted(self, optimizer: Any, loss: torch.Tensor) -> None:
        """Backward, clip and step; this step advances ``global_step`` (one per batch)."""
        self._backward_and_clip(optimizer, loss)
        optimizer.step()

    def optimizer_step_uncounted(self, optimizer: Any, loss: torch.Tensor) -> None:
        """Same as :meth:`optimizer_step_counted` for a secondary optimizer (the discriminator).

        Stepping through the strategy but not through the LightningOptimizer wrapper keeps
        ``global_step`` equal to the number of batches, so ``max_steps``, resumption and
        stage-relative schedules mean the same thing with and without a GAN.
        """
        self._backward_and_clip(optimizer, loss)
        self.trainer.strategy.optimizer_step(optimizer.optimizer, closure=lambda: None, model=self)

    def step_schedulers(self) -> None:
        schedulers = self.lr_schedulers()
        if schedulers is None:
            return
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
            scheduler.step()

    def generator_and_discriminator_step(self, x: torch.Tensor, x_hat: torch.Tensor, loss: torch.Tensor, logs: dict) -> torch.Tensor:
        """One batch for a stage with a decoder to train: distortion + ``loss`` for the generator
        optimizer, then (once the GAN is active) a discriminator update. Returns the generator loss."""
        optimizers = self.optimizers()
        opt_g = optimizers[0] if isinstance(optimizers, list) else optimizers
        distortion, distortion_logs = self.distortion(x, x_hat, self.global_step)
        total = distortion + loss
        gan = self.distortion.gan_active(self.global_step)
        self.optimizer_step_counted(opt_g, total)
        if gan:
            d_loss = self.distortion.discriminator_loss(x, x_hat)
            self.optimizer_step_uncounted(optimizers[1], d_loss)
            logs["train/d_loss"] = d_loss
        self.step_schedulers()
        logs["train/psnr"] = psnr(x_hat.detach(), x).mean()
        self.log_dict({**distortion_logs, **logs})
        self.log("train/loss", total, prog_bar=True)
        return total

    # ------------------------------------------------------------------ checkpoints
    def codec_description(self) -> tuple[str, dict[str, Any]]:
        """(family, configuration parts) of the codec this stage's checkpoints hold."""
        raise NotImplementedError

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Every checkpoint describes its codec, so ``init_from`` and ``ImageCodec`` can read it."""
        family, parts = self.codec_description()
        write_codec_description(checkpoint, family, **parts)


class RDVQStage(CodecStage):
    """Base of the VQ stages. A subclass builds its parts (``self.distortion``, ``self.rate``), says
    what its generator optimizer trains (:meth:`parameter_groups`), then calls :meth:`load_init_weights`.
    """

    def __init__(
        self,
        tokenizer: TokenizerConfig | None,
        init_from: str | None,
        optimizer: OptimizerCallable,
        lr_scheduler: LRSchedulerCallable | None,
        gradient_clip: float | None,
        disc_optimizer: OptimizerCallable | None = None,
        disc_lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__(init_from, optimizer, lr_scheduler, gradient_clip, disc_optimizer, disc_lr_scheduler)
        if self._init_description is not None and self._init_description["family"] != "vq":
            raise ConfigError(f"{init_from} holds a {self._init_description['family']!r} codec, not a VQ tokenizer")
        if tokenizer is None:
            if self._init_description is None:
                raise ConfigError("model.tokenizer is required unless model.init_from names a checkpoint to inherit it from")
            tokenizer = TokenizerConfig.from_dict(self._init_description["tokenizer"])
        self.tokenizer = Tokenizer(tokenizer)
        self.rate: RateTerm | None = None
        self.real_bpp_images = 0
        self.val_psnr = MeanMetric(nan_strategy="ignore")
        self.val_ms_ssim_db = MeanMetric(nan_strategy="ignore")
        self._val_code_counts: list[torch.Tensor] = []

    def inherited_entropy_config(self, config: Any | None, default: Any | None) -> Any | None:
        """``config`` if given, else the entropy model of the ``init_from`` checkpoint, else ``default``."""
        if config is not None:
            return config
        stored = self._init_description.get("entropy_model") if self._init_description else None
        return default if stored is None else entropy_config_from_dict(stored)

    # ------------------------------------------------------------------ validation
    def reconstruct(self, x: torch.Tensor) -> tuple[torch.Tensor, Quantization]:
        """Pad to the tokenizer stride, run the tokenizer, crop back; returns (x_hat, quantization)."""
        h, w = x.shape[-2:]
        x_hat, quantization = self.tokenizer(pad_to_multiple(x, self.tokenizer.stride))
        return x_hat[..., :h, :w].clamp(0.0, 1.0), quantization

    def on_validation_epoch_start(self) -> None:
        self._val_code_counts = [
            torch.zeros(q.codebook_size, dtype=torch.float64, device=self.device) for q in self.tokenizer.quantizers
        ]
        if self.rate is not None:
            self.rate.begin_validation(self.tokenizer)

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> dict[str, torch.Tensor]:
        x_hat, quantization = self.reconstruct(batch)
        self.val_psnr.update(psnr(x_hat, batch))
        self.val_ms_ssim_db.update(ms_ssim_db(ms_ssim(x_hat, batch)))
        for branch, indices in zip(self.tokenizer.branches, quantization.indices):
            counts = self._val_code_counts[branch.stage]
            counts += torch.bincount(indices.flatten(), minlength=counts.numel()).to(counts)
        if self.rate is not None:
            self.rate.validate(self.tokenizer, batch, quantization, self.real_bpp_images)
        return {"x": batch, "x_hat": x_hat}

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
        if self.rate is not None:
            for name, value in self.rate.end_validation().items():
                self.log(name, value, prog_bar=name in ("val/bpp_estimated", "val/bpp_real"))

    def log_rate(self, split: str, bpp: torch.Tensor, rate: Any, pixels: int) -> None:
        """Total and per-branch bpp (and side information per branch, where a model has any)."""
        self.log(f"{split}/bpp", bpp, prog_bar=True)
        for branch, index_bits, side_bits in zip(self.tokenizer.branches, rate.index_bits, rate.side_bits):
            self.log(f"{split}/bpp_{branch.name}", index_bits.mean() / pixels)
            if side_bits.abs().sum() > 0:
                self.log(f"{split}/bpp_side_{branch.name}", side_bits.mean() / pixels)

    def log_quantizer_statistics(self) -> None:
        quantizers = self.tokenizer.quantizers
        self.log("train/usage", sum(q.usage() for q in quantizers) / len(quantizers))
        self.log("train/perplexity", sum(float(perplexity(q.ema_counts)) for q in quantizers) / len(quantizers))
        self.log("train/restarted_codes", float(sum(int(q.restarted_codes) for q in quantizers)))

    # ------------------------------------------------------------------ checkpoints
    def codec_description(self) -> tuple[str, dict[str, Any]]:
        entropy_config = None if self.rate is None else self.rate.config
        return "vq", vq_description(self.tokenizer.config, entropy_config)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Every checkpoint describes its codec, with coding tables that match its weights."""
        super().on_save_checkpoint(checkpoint)
        if self.rate is not None:
            self.rate.store_tables(checkpoint["state_dict"], prefix="rate.")
