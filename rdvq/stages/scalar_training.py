"""End-to-end training of the scalar codec (the scalar family's stage A): ``distortion + lambda * bpp``
under a quantization surrogate (:mod:`rdvq.sq.model`), plus the bottleneck's quantile loss.

The rate is the codec's own: the likelihoods of the latents and of the hyper-latent, in bits over
the crop's pixels. Validation compresses real files with the deployed quantizer (rounding or the
trellis search). ``lmbda`` can be moved during a run (:meth:`ScalarCodecTraining.set_rd_point`, the
sweep callback's contract) and is kept in every checkpoint, so a resumed run continues with it.
"""

from __future__ import annotations

from typing import Any

import torch
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable

from rdvq.codec.sq import MODEL_PREFIX, SQCodec, sq_description
from rdvq.encode_options import EncodeOptions
from rdvq.errors import ConfigError
from rdvq.padding import pad_to_multiple
from rdvq.sq import ScalarCodecConfig, ScalarHyperprior
from rdvq.sq.model import STRIDE, Surrogate
from rdvq.stages.base import CodecStage
from rdvq.stages.distortion import AdversarialConfig, DistortionConfig, DistortionLoss
from rdvq.stages.file_validation import FileValidation

RD_POINT_KEY = "rdvq_rd_point"  # checkpoint entry: {"lmbda": float, "tau": None}


class ScalarCodecTraining(CodecStage):
    def __init__(
        self,
        codec: ScalarCodecConfig | None = None,
        lmbda: float = 0.01,
        surrogate: Surrogate = "noise",
        distortion: DistortionConfig | None = None,
        adversarial: AdversarialConfig | None = None,
        optimizer: OptimizerCallable = torch.optim.Adam,
        disc_optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        disc_lr_scheduler: LRSchedulerCallable | None = None,
        aux_lr: float = 1e-3,
        gradient_clip: float | None = 1.0,
        init_from: str | None = None,
    ) -> None:
        super().__init__(init_from, optimizer, lr_scheduler, gradient_clip, disc_optimizer, disc_lr_scheduler)
        if self._init_description is not None and self._init_description["family"] != "sq":
            raise ConfigError(f"{init_from} holds a {self._init_description['family']!r} codec, not a scalar codec")
        if surrogate not in ("noise", "ste"):
            raise ConfigError(f"surrogate must be noise or ste, got {surrogate!r}")
        if codec is None:
            codec = ScalarCodecConfig.from_dict(self._init_description["model"]) if self._init_description else ScalarCodecConfig()
        if codec.trellis_states is not None and surrogate != "noise":
            raise ConfigError("TCQ trains with the noise surrogate (surrogate: noise); straight-through is for usq")
        self.set_rd_point(lmbda, None)
        self.surrogate = surrogate
        self.aux_lr = aux_lr
        self.model = ScalarHyperprior(codec)
        self.distortion = DistortionLoss(distortion, adversarial)
        self.validation = FileValidation()
        self.load_init_weights()

    # ------------------------------------------------------------------ rate-distortion point
    @property
    def lmbda(self) -> float:
        return self._lmbda

    @property
    def tau(self) -> None:
        """The scalar codec has no soft posterior: always None."""
        return None

    def set_rd_point(self, lmbda: float, tau: float | None) -> None:
        """Move the trade-off ``distortion + lmbda * bpp`` (``tau`` does not apply and is ignored)."""
        if not lmbda >= 0:
            raise ConfigError(f"lmbda must be >= 0, got {lmbda}")
        self._lmbda = float(lmbda)

    # ------------------------------------------------------------------ training
    def parameter_groups(self) -> list[dict[str, Any]]:
        aux = self.model.entropy_bottleneck.quantiles
        return [{"params": [p for p in self.model.parameters() if p.requires_grad and p is not aux]}]

    def configure_optimizers(self) -> Any:
        """The generator (and discriminator) optimizers, then Adam on the bottleneck's quantiles
        alone, as CompressAI trains them: their loss never reaches the generator's gradients or its
        clipping."""
        aux = torch.optim.Adam([self.model.entropy_bottleneck.quantiles], lr=self.aux_lr)
        return [*super().configure_optimizers(), {"optimizer": aux}]

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        height, width = batch.shape[-2:]
        out = self.model(pad_to_multiple(batch, STRIDE), self.surrogate)
        pixels = height * width
        bpp_y, bpp_z = out.y_bits.mean() / pixels, out.z_bits.mean() / pixels
        logs = {"train/bpp": bpp_y + bpp_z, "train/bpp_y": bpp_y, "train/bpp_z": bpp_z, "train/lambda": self._lmbda}
        self.generator_and_discriminator_step(batch, out.x_hat[..., :height, :width], self._lmbda * (bpp_y + bpp_z), logs)
        aux_optimizer = self.optimizers()[-1]
        aux_optimizer.zero_grad(set_to_none=True)
        aux = self.model.aux_loss()
        self.manual_backward(aux)
        self.trainer.strategy.optimizer_step(aux_optimizer.optimizer, closure=lambda: None, model=self)  # uncounted
        self.log("train/aux_loss", aux)

    # ------------------------------------------------------------------ validation
    def on_validation_epoch_start(self) -> None:
        self.model.update_tables()
        self.validation.begin(SQCodec(self.model), EncodeOptions())

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> dict[str, torch.Tensor]:
        return {"x": batch, "x_hat": self.validation.update(batch).to(batch)}

    def on_validation_epoch_end(self) -> None:
        metrics = self.validation.end()
        mse = 10 ** (-metrics["val/psnr"] / 10)  # of the mean PSNR: for ranking checkpoints only
        metrics["val/loss"] = mse + self._lmbda * metrics["val/bpp_real"]
        for name, value in metrics.items():
            self.log(name, value, prog_bar=name in ("val/psnr", "val/bpp_real"))

    # ------------------------------------------------------------------ checkpoints
    def codec_description(self) -> tuple[str, dict[str, Any]]:
        return "sq", sq_description(self.model.config)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The codec description, the rate-distortion point, and coding tables matching the weights."""
        super().on_save_checkpoint(checkpoint)
        checkpoint[RD_POINT_KEY] = {"lmbda": self._lmbda, "tau": None}
        self.model.update_tables()
        prefix = f"{MODEL_PREFIX}entropy_bottleneck."
        for name, tensor in self.model.entropy_bottleneck.state_dict().items():
            checkpoint["state_dict"][prefix + name] = tensor

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A resumed run continues at the saved rate-distortion point."""
        point = checkpoint.get(RD_POINT_KEY)
        if point is not None:
            self.set_rd_point(point["lmbda"], point.get("tau"))
