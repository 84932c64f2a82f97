"""End-to-end training of the scalar codec (the scalar family's stage A): ``distortion + lambda * bpp``
under a quantization surrogate (:mod:`rdvq.sq.model`), plus the bottleneck's quantile loss on its
own optimizer.

The rate is the codec's own: the likelihoods of the latents and of the hyper-latent, in bits over
the crop's pixels. Validation compresses real files with the deployed quantizer (rounding or the
trellis search). ``lmbda`` is the stage's :class:`~rdvq.stages.rd_point.RDPoint` (no tau: the
scalar codec has no soft posterior), so a sweep can move it and a resumed run continues with it.
"""

from __future__ import annotations

from typing import Any

import torch

from rdvq.codec import SQCodec
from rdvq.errors import ConfigError
from rdvq.padding import pad_to_multiple
from rdvq.sq import ScalarCodecConfig, ScalarHyperprior
from rdvq.sq.model import Surrogate
from rdvq.stages.base import DecoderStage
from rdvq.stages.file_validation import FileValidation
from rdvq.stages.rd_point import RDPoint


class ScalarCodecTraining(DecoderStage):
    family = "sq"

    def __init__(
        self, codec: ScalarCodecConfig | None = None, lmbda: float = 0.01, surrogate: Surrogate = "noise", **kwargs: Any
    ) -> None:
        point = RDPoint(lmbda)  # checked before any checkpoint is read
        if surrogate not in ("noise", "ste"):
            raise ConfigError(f"surrogate must be noise or ste, got {surrogate!r}")
        super().__init__(**kwargs)
        stored = self.inherited("model", codec)
        config = ScalarCodecConfig.from_dict(stored) if isinstance(stored, dict) else stored or ScalarCodecConfig()
        if config.trellis_states is not None and surrogate != "noise":
            raise ConfigError("TCQ trains with the noise surrogate (surrogate: noise); straight-through is for usq")
        self.rd_point = point
        self.surrogate = surrogate
        self.codec = SQCodec(ScalarHyperprior(config))
        self.validation = FileValidation()
        self.load_init_weights()

    def trained_parameters(self) -> list[torch.nn.Parameter]:
        return self.trainable(self.codec)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        height, width = batch.shape[-2:]
        out = self.codec.model(pad_to_multiple(batch, self.codec.stride), self.surrogate)
        pixels = height * width
        bpp_y, bpp_z = out.y_bits.mean() / pixels, out.z_bits.mean() / pixels
        logs = {"train/bpp": bpp_y + bpp_z, "train/bpp_y": bpp_y, "train/bpp_z": bpp_z, "train/lambda": self.rd_point.lmbda}
        self.distortion_step(batch, out.x_hat[..., :height, :width], self.rd_point.lmbda * (bpp_y + bpp_z), logs)

    def on_validation_epoch_end(self) -> None:
        metrics = self.validation.end()
        for name, value in metrics.items():
            self.log(name, value, prog_bar=name in ("val/psnr", "val/bpp_real"))
        mse = 10 ** (-metrics["val/psnr"] / 10)  # of the mean PSNR: for ranking checkpoints only
        self.log("val/loss", mse + self.rd_point.lmbda * metrics["val/bpp_real"])
