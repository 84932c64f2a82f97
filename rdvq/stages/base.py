"""Lightning plumbing shared by every stage; the stages themselves are short compositions of parts.

Every stage holds its codec family's module as ``self.codec`` (:class:`~rdvq.codec.LatentCodec`), so
its checkpoints keep the codec under ``codec.`` and ``ImageCodec.from_checkpoint`` reads any of
them. :class:`CodecStage` owns, family-blind: ``init_from`` (weights only, non-strict, reporting
missing and unexpected keys; version 1 checkpoints migrated), the optimizers and their steps,
the codec as deployed right now (:meth:`CodecStage.deployed_codec`), validation on real files, and
what every checkpoint carries: the codec description, coding tables matching the weights, and the
rate-distortion point (:class:`~rdvq.stages.rd_point.RDPoint`) where the stage has one.

One policy for auxiliary parameters (CompressAI's bottleneck quantiles, :meth:`LatentCodec.aux_parameters`):
they are trained by their own loss on their own Adam optimizer after each step, as CompressAI trains
them, and never share the model's gradients or its clipping norm. They are kept out of the model's
autograd graph (and so out of DDP's gradient buckets, where a parameter the main loss does not
reach is an error): only :meth:`CodecStage.aux_step` differentiates them. Their loss depends on the
bottleneck's parameters alone, which every rank holds identically, so every rank takes the same step.

:class:`DecoderStage` adds the distortion part (MSE, LPIPS, PatchGAN and its discriminator) for the
stages that train a synthesis.
"""

from __future__ import annotations

import copy
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable

from rdvq.checkpointing import (
    CODEC_PREFIX,
    RD_POINT_KEY,
    load_weights,
    migrate_checkpoint,
    read_checkpoint,
    read_codec_description,
    write_codec_description,
)
from rdvq.codec import ImageCodec, LatentCodec
from rdvq.encode_options import EncodeOptions
from rdvq.errors import ConfigError
from rdvq.metrics import psnr
from rdvq.stages.distortion import AdversarialConfig, DistortionConfig, DistortionLoss
from rdvq.stages.file_validation import FileValidation
from rdvq.stages.rd_point import RDPoint


class CodecStage(pl.LightningModule):
    """Base LightningModule of every stage. A subclass sets ``self.codec`` (and ``self.rd_point``,
    ``self.validation`` where it has them), says what its main optimizer trains
    (:meth:`trained_parameters`), then calls :meth:`load_init_weights`."""

    family: str | None = None  # the codec family a stage trains; None: any (stage D)

    def __init__(
        self,
        init_from: str | None = None,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        gradient_clip: float | None = 1.0,
        aux_lr: float = 1e-3,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.init_from = init_from
        self._init_checkpoint = read_checkpoint(init_from) if init_from else None
        self.init_description = (
            read_codec_description(self._init_checkpoint, init_from) if self._init_checkpoint is not None else None
        )
        if self.family is not None and self.init_description is not None and self.init_description["family"] != self.family:
            raise ConfigError(f"{init_from} holds a {self.init_description['family']!r} codec; "
                              f"{type(self).__name__} trains a {self.family!r} codec")
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.gradient_clip = gradient_clip
        self.aux_lr = aux_lr
        self.codec: LatentCodec
        self.distortion: DistortionLoss | None = None
        self.rd_point: RDPoint | None = None
        self.validation: FileValidation | None = None
        self.options = EncodeOptions()  # what the deployed codec is validated (and stage D trained) with
        self._roles: list[str] = []  # the role of each configured optimizer, in order
        self._aux: list[torch.nn.Parameter] | None = None  # the auxiliary parameters this stage trains

    def on_fit_start(self) -> None:
        """Lightning (>= 2.2) keeps the modes modules were built in, so a stage's :meth:`train`,
        which keeps its frozen parts in eval mode (no quantizer statistics, no dead-code restarts),
        is applied here, before the first step."""
        self.train()

    def inherited(self, part: str, given: Any) -> Any:
        """``given``, else the ``part`` of the ``init_from`` checkpoint's codec description (None)."""
        if given is not None or self.init_description is None:
            return given
        return self.init_description.get(part)

    def load_init_weights(self) -> None:
        """Apply ``init_from`` once every submodule exists."""
        if self._init_checkpoint is not None:
            load_weights(self, self._init_checkpoint["state_dict"], source=str(self.init_from))
            self._init_checkpoint = None  # free the memory

    # ------------------------------------------------------------------ optimizers
    def trained_parameters(self) -> list[torch.nn.Parameter]:
        """What the main optimizer trains (auxiliary parameters are left out wherever they are)."""
        raise NotImplementedError

    def setup(self, stage: str) -> None:
        """Before DDP wraps the module: the trainable auxiliary parameters leave the autograd graph."""
        if self._aux is None:
            self._aux = [p for p in self.codec.aux_parameters() if p.requires_grad]
            for parameter in self._aux:
                parameter.requires_grad_(False)

    def configure_optimizers(self) -> Any:
        aux = {id(p) for p in self.codec.aux_parameters()}
        main = [p for p in self.trained_parameters() if p.requires_grad and id(p) not in aux]
        configs, self._roles = [], []
        if main:
            configs.append(self._optimizer_config(self.optimizer_factory, self.lr_scheduler_factory, main))
            self._roles.append("main")
        if self.distortion is not None and self.distortion.discriminator is not None:
            disc = list(self.distortion.discriminator.parameters())
            configs.append(self._optimizer_config(self.disc_optimizer_factory, self.disc_lr_scheduler_factory, disc))
            self._roles.append("discriminator")
        if self._aux:
            configs.append({"optimizer": torch.optim.Adam(self._aux, lr=self.aux_lr)})
            self._roles.append("aux")
        return configs or None  # counting models (static, uniform) in stage B have nothing to optimize

    @staticmethod
    def _optimizer_config(make_optimizer: OptimizerCallable, make_scheduler: LRSchedulerCallable | None, params: list) -> dict:
        optimizer = make_optimizer(params)
        config: dict[str, Any] = {"optimizer": optimizer}
        if make_scheduler is not None:
            config["lr_scheduler"] = {"scheduler": make_scheduler(optimizer), "interval": "step"}
        return config

    def optimizer(self, role: str) -> Any:
        """The configured optimizer of ``role`` (main, discriminator, aux), or None."""
        if role not in self._roles:
            return None
        optimizers = self.optimizers()
        return optimizers[self._roles.index(role)] if isinstance(optimizers, list) else optimizers

    def trainable(self, *modules: torch.nn.Module) -> list[torch.nn.Parameter]:
        return [p for m in modules for p in m.parameters() if p.requires_grad]

    def _backward_and_clip(self, optimizer: Any, loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if self.gradient_clip:
            self.clip_gradients(optimizer, gradient_clip_val=self.gradient_clip, gradient_clip_algorithm="norm")

    def main_step(self, loss: torch.Tensor) -> None:
        """Backward, clip and step the main optimizer; this step advances ``global_step`` (one per
        batch). Without one (counting models) an empty step still advances it, so ``max_steps``
        bounds the pass."""
        optimizer = self.optimizer("main")
        if optimizer is None:
            self.optimizers().step()
            return
        self._backward_and_clip(optimizer, loss)
        optimizer.step()

    def discriminator_step(self, loss: torch.Tensor) -> None:
        """Backward, clip and step the discriminator's optimizer without advancing ``global_step``:
        stepping through the strategy but not through the LightningOptimizer wrapper keeps it equal to
        the number of batches, so ``max_steps``, resumption and stage-relative schedules mean the same
        thing with and without a GAN."""
        optimizer = self.optimizer("discriminator")
        self._backward_and_clip(optimizer, loss)
        self.trainer.strategy.optimizer_step(optimizer.optimizer, closure=lambda: None, model=self)

    def aux_step(self) -> None:
        """The auxiliary loss on its own optimizer, after the batch's main step, never clipped with it
        (an uncounted step, as the discriminator's)."""
        optimizer = self.optimizer("aux")
        if optimizer is None:
            return
        with torch.enable_grad():
            for parameter in self._aux:
                parameter.requires_grad_(True)
            aux = self.codec.aux_loss()
            gradients = torch.autograd.grad(aux, self._aux)
            for parameter, gradient in zip(self._aux, gradients):
                parameter.requires_grad_(False)
                parameter.grad = gradient
        optimizer.optimizer.step()
        self.log("train/aux_loss", aux.detach())

    def step_schedulers(self) -> None:
        schedulers = self.lr_schedulers()
        if schedulers is None:
            return
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
            scheduler.step()

    # ------------------------------------------------------------------ the codec as deployed
    def deployed_codec(self) -> ImageCodec:
        """The codec ``rdvq compress`` would use with a checkpoint written now: a copy of the live
        codec (so the training module keeps its modes), its tables refreshed by ``ImageCodec`` as a
        checkpoint's are when it is saved. Nothing here draws random numbers."""
        return ImageCodec(copy.deepcopy(self.codec))

    # ------------------------------------------------------------------ validation
    def on_validation_epoch_start(self) -> None:
        if self.validation is not None:
            self.validation.begin(self.deployed_codec(), self.options)

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> dict[str, torch.Tensor]:
        return {"x": batch, "x_hat": self.validation.update(batch)}

    def on_validation_epoch_end(self) -> None:
        for name, value in self.validation.end().items():
            self.log(name, value, prog_bar=name in ("val/psnr", "val/bpp_real"))

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The codec description, coding tables that match the weights (so every decoder of the
        checkpoint uses them) and the rate-distortion point."""
        self.codec.refresh_tables()
        for name, tensor in self.codec.state_dict().items():
            checkpoint["state_dict"][CODEC_PREFIX + name] = tensor
        write_codec_description(checkpoint, self.codec.family, **self.codec.description())
        if self.rd_point is not None:
            checkpoint[RD_POINT_KEY] = self.rd_point.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Resuming: a version 1 checkpoint's layout first; then the saved rate-distortion point,
        not the configured one."""
        migrate_checkpoint(checkpoint)
        if self.rd_point is not None and checkpoint.get(RD_POINT_KEY) is not None:
            self.rd_point.load_state_dict(checkpoint[RD_POINT_KEY])


class DecoderStage(CodecStage):
    """A stage that trains a synthesis: the distortion part and, with an adversarial weight, the
    discriminator and its optimizer."""

    def __init__(
        self,
        distortion: DistortionConfig | None = None,
        adversarial: AdversarialConfig | None = None,
        disc_optimizer: OptimizerCallable = torch.optim.Adam,
        disc_lr_scheduler: LRSchedulerCallable | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.distortion = DistortionLoss(distortion, adversarial)
        self.disc_optimizer_factory = disc_optimizer
        self.disc_lr_scheduler_factory = disc_lr_scheduler

    def distortion_step(self, x: torch.Tensor, x_hat: torch.Tensor, loss: torch.Tensor, logs: dict) -> torch.Tensor:
        """One batch: distortion + ``loss`` for the main optimizer, then (once the GAN is active) a
        discriminator update, then the auxiliary step. Returns the main loss."""
        distortion, distortion_logs = self.distortion(x, x_hat, self.global_step)
        total = distortion + loss
        gan = self.distortion.gan_active(self.global_step)
        self.main_step(total)
        if gan:
            d_loss = self.distortion.discriminator_loss(x, x_hat)
            self.discriminator_step(d_loss)
            logs["train/d_loss"] = d_loss
        self.aux_step()
        self.step_schedulers()
        logs["train/psnr"] = psnr(x_hat.detach(), x).mean()
        self.log_dict({**distortion_logs, **logs})
        self.log("train/loss", total, prog_bar=True)
        return total
