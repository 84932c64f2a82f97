"""Stage A: tokenizer pretraining (distortion + VQ losses, optional PatchGAN after a stage-relative start)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable

from rdvq.errors import ConfigError
from rdvq.losses import LPIPS, PatchDiscriminator, hinge_d_loss, hinge_g_loss
from rdvq.metrics import psnr
from rdvq.stages.base import RDVQStage
from rdvq.tokenizer import TokenizerConfig


@dataclass
class DistortionConfig:
    """Weights of the reconstruction terms. LPIPS-VGG needs torchvision's VGG16 weights on disk;
    CPU configs set ``perceptual_weight: 0`` because those weights cannot be downloaded here."""

    mse_weight: float = 1.0
    perceptual_weight: float = 1.0
    perceptual_backbone: str | None = None  # path to vgg16 weights; default: torch hub cache

    def __post_init__(self) -> None:
        if self.mse_weight < 0 or self.perceptual_weight < 0:
            raise ConfigError("distortion weights must be >= 0")


@dataclass
class AdversarialConfig:
    """PatchGAN with hinge loss. ``weight: 0`` builds no discriminator at all.
    ``start_step`` counts batches from the start of the current stage, not of the whole history."""

    weight: float = 0.1
    start_step: int = 25_000
    base_channels: int = 64
    num_layers: int = 3

    def __post_init__(self) -> None:
        if self.weight < 0 or self.start_step < 0 or self.num_layers < 1 or self.base_channels < 1:
            raise ConfigError("adversarial: weight and start_step must be >= 0, num_layers and base_channels >= 1")


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
        super().__init__(tokenizer, init_from)
        self.distortion = distortion or DistortionConfig()
        self.adversarial = adversarial or AdversarialConfig()
        self.optimizer_factory = optimizer
        self.disc_optimizer_factory = disc_optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.disc_lr_scheduler_factory = disc_lr_scheduler
        self.gradient_clip = gradient_clip
        # Kept out of the module tree: its frozen VGG weights (~58 MB) do not belong in checkpoints.
        self._perceptual = (
            [LPIPS(net="vgg", backbone_weights=self.distortion.perceptual_backbone)]
            if self.distortion.perceptual_weight > 0
            else []
        )
        self.discriminator = (
            PatchDiscriminator(base_channels=self.adversarial.base_channels, n_layers=self.adversarial.num_layers)
            if self.adversarial.weight > 0
            else None
        )
        self.save_hyperparameters(
            {
                "tokenizer": self.tokenizer.config.to_dict(),
                "distortion": asdict(self.distortion),
                "adversarial": asdict(self.adversarial),
                "gradient_clip": gradient_clip,
                "init_from": init_from,
            }
        )
        self.load_init_weights()

    def configure_optimizers(self):  # noqa: D102 - Lightning hook
        configs = [self._optimizer_config(self.optimizer_factory, self.lr_scheduler_factory, self.tokenizer)]
        if self.discriminator is not None:
            configs.append(
                self._optimizer_config(self.disc_optimizer_factory, self.disc_lr_scheduler_factory, self.discriminator)
            )
        return configs

    def _optimizer_config(self, make_optimizer, make_scheduler, module) -> dict:
        optimizer = make_optimizer(self.trainable(module))
        config = {"optimizer": optimizer}
        if make_scheduler is not None:
            config["lr_scheduler"] = {"scheduler": make_scheduler(optimizer), "interval": "step"}
        return config

    def gan_active(self) -> bool:
        return self.discriminator is not None and self.global_step >= self.adversarial.start_step

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        optimizers = self.optimizers()
        opt_g = optimizers[0] if isinstance(optimizers, list) else optimizers
        x = batch
        x_hat, quantization = self.tokenizer(x)
        mse = F.mse_loss(x_hat, x)
        loss = self.distortion.mse_weight * mse + quantization.loss
        logs = {"train/mse": mse, "train/vq_loss": quantization.loss}
        if self._perceptual:
            perceptual = self._perceptual[0].to(x.device)(x_hat.clamp(0, 1), x).mean()
            loss = loss + self.distortion.perceptual_weight * perceptual
            logs["train/lpips_vgg"] = perceptual
        gan = self.gan_active()
        if gan:
            g_adv = hinge_g_loss(self.discriminator(x_hat))
            loss = loss + self.adversarial.weight * g_adv
            logs["train/g_adv"] = g_adv
        self.optimizer_step_counted(opt_g, loss, self.gradient_clip)
        if gan:
            d_loss = hinge_d_loss(self.discriminator(x), self.discriminator(x_hat.detach()))
            self.optimizer_step_uncounted(optimizers[1], d_loss, self.gradient_clip)
            logs["train/d_loss"] = d_loss
        self.step_schedulers()
        logs["train/psnr"] = psnr(x_hat.detach(), x).mean()
        self.log_dict(logs, prog_bar=False)
        self.log("train/loss", loss, prog_bar=True)
        self.log_quantizer_statistics()
