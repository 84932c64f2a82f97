"""Stage C: joint rate-distortion fine-tuning (RDVQ's stage 3).

loss = distortion (MSE, LPIPS, GAN) + lambda * bpp + commitment. The rate is the cross-entropy
between the soft posterior softmax(-d / tau) and the entropy model's prediction (any registered
model), so its gradient reaches the encoder through the relaxation; ``rate_targets: hard`` is the
ablation without it (then only gradients through the model's own inputs reach the encoder). The
decoder always gets the hard codeword (straight-through). The codebook stays frozen unless
``freeze_codebook: false``; lambda ramps up linearly from 0 over ``lambda_warmup_steps`` steps of
this stage.

A lambda/tau sweep moves the rate-distortion point with :meth:`JointRD.set_rd_point`; both values
travel in the checkpoint, so a resumed run continues where the sweep left it.
"""

from __future__ import annotations

from typing import Any

import torch
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable

from rdvq.entropy import EntropyModelConfig, HyperVQConfig
from rdvq.errors import ConfigError
from rdvq.padding import pad_to_multiple
from rdvq.stages.base import RDVQStage
from rdvq.stages.distortion import AdversarialConfig, DistortionConfig, DistortionLoss
from rdvq.stages.rate import RateTargets, RateTerm
from rdvq.tokenizer import TokenizerConfig

STATE_KEY = "rdvq_joint_rd"


def _check_rd_point(lmbda: float, tau: float) -> None:
    if not lmbda >= 0:
        raise ConfigError(f"lmbda must be >= 0, got {lmbda}")
    if not tau > 0:
        raise ConfigError(f"tau must be > 0, got {tau}")


class JointRD(RDVQStage):
    def __init__(
        self,
        entropy_model: EntropyModelConfig | None = None,
        tokenizer: TokenizerConfig | None = None,
        distortion: DistortionConfig | None = None,
        adversarial: AdversarialConfig | None = None,
        lmbda: float = 0.05,
        tau: float = 0.01,
        rate_targets: RateTargets = "soft",
        lambda_warmup_steps: int = 0,
        freeze_codebook: bool = True,
        optimizer: OptimizerCallable = torch.optim.Adam,
        disc_optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        disc_lr_scheduler: LRSchedulerCallable | None = None,
        aux_lr: float = 1e-3,
        gradient_clip: float | None = 1.0,
        real_bpp_images: int = 4,
        init_from: str | None = None,
    ) -> None:
        _check_rd_point(lmbda, tau)
        if lambda_warmup_steps < 0:
            raise ConfigError(f"lambda_warmup_steps must be >= 0, got {lambda_warmup_steps}")
        super().__init__(tokenizer, init_from, optimizer, lr_scheduler, gradient_clip, disc_optimizer, disc_lr_scheduler)
        self.distortion = DistortionLoss(distortion, adversarial)
        self.rate = RateTerm(self.inherited_entropy_config(entropy_model, HyperVQConfig()), self.tokenizer, rate_targets, tau)
        self._lmbda = lmbda
        self.lambda_warmup_steps = lambda_warmup_steps
        self.freeze_codebook = freeze_codebook
        self.aux_lr = aux_lr
        self.real_bpp_images = real_bpp_images
        if freeze_codebook:
            for quantizer in self.tokenizer.quantizers:
                quantizer.codebook.requires_grad_(False)
        self.load_init_weights()

    # ------------------------------------------------------------------ the rate-distortion point
    @property
    def lmbda(self) -> float:
        """Weight of the rate (bits per pixel) once the warm-up is over."""
        return self._lmbda

    @property
    def tau(self) -> float:
        """Temperature of the soft posterior softmax(-d / tau)."""
        return self.rate.tau

    def set_rd_point(self, lmbda: float, tau: float | None) -> None:
        """Move to another rate-distortion point (``tau`` None keeps the current temperature)."""
        tau = self.tau if tau is None else tau
        _check_rd_point(lmbda, tau)
        self._lmbda = float(lmbda)
        self.rate.tau = float(tau)

    def rate_weight(self) -> float:
        """lambda at this step: a linear ramp from 0 over the first ``lambda_warmup_steps`` steps."""
        if self.lambda_warmup_steps == 0:
            return self._lmbda
        return self._lmbda * min(1.0, self.global_step / self.lambda_warmup_steps)

    # ------------------------------------------------------------------ training
    def train(self, mode: bool = True) -> "JointRD":
        """A frozen codebook also stays in eval mode: no dead-code restarts rewrite it."""
        super().train(mode)
        if self.freeze_codebook:
            self.tokenizer.quantizers.eval()
        return self

    def parameter_groups(self) -> list[dict[str, Any]]:
        return [{"params": self.trainable(self.tokenizer)}] + self.rate.parameter_groups(self.aux_lr)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        height, width = batch.shape[-2:]
        x_hat, quantization = self.tokenizer(pad_to_multiple(batch, self.tokenizer.stride))
        x_hat = x_hat[..., :height, :width]
        pixels = height * width
        bpp, rate = self.rate(self.tokenizer, quantization, pixels)
        weight = self.rate_weight()
        aux = self.rate.aux_loss()
        logs = {
            "train/lambda": torch.tensor(self._lmbda),
            "train/lambda_effective": torch.tensor(weight),
            "train/tau": torch.tensor(self.tau),
            "train/vq_loss": quantization.loss,
            "train/aux_loss": aux,
        }
        self.generator_and_discriminator_step(batch, x_hat, weight * bpp + quantization.loss + aux, logs)
        self.log_rate("train", bpp, rate, pixels)
        if not self.freeze_codebook:
            self.log_quantizer_statistics()

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[STATE_KEY] = {"lmbda": self._lmbda, "tau": self.tau}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A resumed run continues at the checkpoint's rate-distortion point, not the config's."""
        state = checkpoint.get(STATE_KEY)
        if state is not None:
            self.set_rd_point(state["lmbda"], state["tau"])
