"""Stage D: decoder retraining on the latents the deployed encoder really produces (Borzechowski et
al., arXiv 2506.08662), for any codec family.

The codec is loaded from ``init_from`` exactly as ``ImageCodec.from_checkpoint`` loads it, and every
training crop goes through the family's own ``analyze`` and ``encode(analysis, options)``: the
symbols are what ``rdvq compress`` with the same options would write, rounding or the trellis
search for the scalar codec, nearest-codeword or entropy-constrained (``rdo_lambda``) index
selection and rate-control completion for VQ. Only the synthesis from those symbols runs with
gradients. The encoder, the codebook / quantizer and the entropy models are frozen and stay
bit-identical; the decoder (and, for the scalar codec, optionally the hyper-decoder) trains on
distortion (plus ``lmbda`` times the latents' rate when the hyper-decoder trains, since it also
predicts their distribution).

Latents are computed online, on each batch, by the frozen encoder: the same as precomputing them
(the paper's offline variant) for a fixed crop, but every random crop is fresh, and retraining the
hyper-decoder (which moves the means the latents are quantized around) needs no other code path.

Checkpoints have the layout of the family's other stages, so they compress, decompress and
initialise later stages like any other. A discriminator in the ``init_from`` checkpoint (stages A
and C keep theirs) continues when the adversarial term is on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from rdvq.checkpointing import load_weights
from rdvq.codec import FAMILIES, LatentCodec
from rdvq.codec.sq import MODEL_PREFIX
from rdvq.codec.vq import ENTROPY_MODEL_PREFIX, TOKENIZER_PREFIX
from rdvq.coding.engine import EngineName
from rdvq.encode_options import EncodeOptions
from rdvq.errors import ConfigError
from rdvq.padding import pad_to_multiple
from rdvq.stages.base import CodecStage
from rdvq.stages.distortion import AdversarialConfig, DistortionConfig, DistortionLoss
from rdvq.stages.file_validation import FileValidation
from rdvq.stages.scalar_training import RD_POINT_KEY

CODEC_PREFIX = "codec."
DISCRIMINATOR_PREFIX = "distortion.discriminator."


@dataclass(frozen=True)
class Retrainable:
    """Where a family keeps what stage D trains, and how its checkpoints name its tensors."""

    checkpoint_prefixes: dict[str, str]  # prefix in the codec's state dict -> prefix in checkpoints
    decoder: str  # the synthesis network, as an attribute path inside the codec
    hyper_decoder: str | None = None  # the network predicting the latents' distribution, if any


FAMILY_PARTS = {
    "vq": Retrainable({"tokenizer.": TOKENIZER_PREFIX, "entropy_model.": ENTROPY_MODEL_PREFIX}, "tokenizer.decoder"),
    "sq": Retrainable({MODEL_PREFIX: MODEL_PREFIX}, "model.g_s", "model.h_s"),
}


class DecoderRetraining(CodecStage):
    def __init__(
        self,
        init_from: str | None = None,
        options: EncodeOptions | None = None,
        train_hyper_decoder: bool = False,
        lmbda: float | None = None,
        distortion: DistortionConfig | None = None,
        adversarial: AdversarialConfig | None = None,
        optimizer: OptimizerCallable = torch.optim.Adam,
        disc_optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        disc_lr_scheduler: LRSchedulerCallable | None = None,
        gradient_clip: float | None = 1.0,
        engine: EngineName = "auto",
    ) -> None:
        if not init_from:
            raise ConfigError("stage D retrains a trained codec: model.init_from must name its checkpoint")
        super().__init__(init_from, optimizer, lr_scheduler, gradient_clip, disc_optimizer, disc_lr_scheduler)
        family = self._init_description["family"]
        if family not in FAMILY_PARTS:
            raise ConfigError(f"{init_from} holds a {family!r} codec, which stage D cannot retrain")
        self.parts = FAMILY_PARTS[family]
        self.options = options or EncodeOptions()
        self.codec: LatentCodec = FAMILIES[family][1].from_checkpoint(
            self._init_description, self._init_checkpoint["state_dict"], init_from, engine
        )
        self.rd_point = self._init_checkpoint.get(RD_POINT_KEY)
        init_state = self._init_checkpoint["state_dict"]
        self._init_checkpoint = None  # the codec loaded strictly above; a discriminator follows below
        self.codec.requires_grad_(False)
        trained = [self._part(self.parts.decoder)]
        if train_hyper_decoder:
            if self.parts.hyper_decoder is None:
                raise ConfigError(f"the {family!r} codec has no hyper-decoder to retrain (train_hyper_decoder: false)")
            if lmbda is None:
                lmbda = None if self.rd_point is None else self.rd_point["lmbda"]
            if lmbda is None:
                raise ConfigError(f"{init_from} records no lambda: retraining the hyper-decoder needs model.lmbda")
            trained.append(self._part(self.parts.hyper_decoder))
            self.rd_point = {"lmbda": float(lmbda), "tau": None}
        self.lmbda = float(lmbda) if train_hyper_decoder else None
        # Parts of self.codec: kept out of the module tree so their tensors are not saved twice.
        self._trained = trained
        for module in trained:
            module.requires_grad_(True)
        self.distortion = DistortionLoss(distortion, adversarial)
        if self.distortion.discriminator is not None and any(k.startswith(DISCRIMINATOR_PREFIX) for k in init_state):
            # A discriminator trained with this decoder (stages A and C keep theirs) continues.
            part = {k[len(DISCRIMINATOR_PREFIX) :]: v for k, v in init_state.items() if k.startswith(DISCRIMINATOR_PREFIX)}
            load_weights(self.distortion.discriminator, part, source=init_from)
        self.validation = FileValidation()
        stride = self.codec.stride
        with torch.no_grad():  # refuse options the family does not implement now, not at the first batch
            self.codec.encode(self.codec.analyze(torch.zeros(1, 3, stride, stride)), self.options)

    def _part(self, path: str) -> nn.Module:
        module: nn.Module = self.codec
        for name in path.split("."):
            module = getattr(module, name)
        return module

    def train(self, mode: bool = True) -> "DecoderRetraining":
        """Everything frozen stays in eval mode (no quantizer statistics, no restarts)."""
        super().train(mode)
        self.codec.eval()
        for module in self._trained:
            module.train(mode)
        return self

    def parameter_groups(self) -> list[dict[str, Any]]:
        return [{"params": self.trainable(*self._trained)}]

    # ------------------------------------------------------------------ training
    @torch.no_grad()
    def deployed_symbols(self, padded: torch.Tensor) -> list[torch.Tensor]:
        """The symbols the deployed encoder writes for each image of a padded batch, batched."""
        sets = [self.codec.encode(self.codec.analyze(image.unsqueeze(0)), self.options).symbols for image in padded]
        return [torch.cat(parts).to(padded.device) for parts in zip(*sets)]

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        height, width = batch.shape[-2:]
        padded = pad_to_multiple(batch, self.codec.stride)
        symbols = self.deployed_symbols(padded)
        x_hat = self.codec.synthesize(symbols, tuple(padded.shape[-2:]))[..., :height, :width]
        logs: dict[str, Any] = {}
        extra = x_hat.new_zeros(())
        if self.lmbda is not None:
            bpp = self.codec.symbol_bits(symbols).mean() / (height * width)
            extra = self.lmbda * bpp
            logs["train/bpp"] = bpp
        self.generator_and_discriminator_step(batch, x_hat, extra, logs)

    # ------------------------------------------------------------------ validation
    def on_validation_epoch_start(self) -> None:
        self.validation.begin(self.codec, self.options)

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> dict[str, torch.Tensor]:
        return {"x": batch, "x_hat": self.validation.update(batch).to(batch)}

    def on_validation_epoch_end(self) -> None:
        for name, value in self.validation.end().items():
            self.log(name, value, prog_bar=name in ("val/psnr", "val/bpp_real"))

    # ------------------------------------------------------------------ checkpoints
    def codec_description(self) -> tuple[str, dict[str, Any]]:
        return self.codec.family, self.codec.description()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The family's own layout (and the rate-distortion point the codec was trained at)."""
        super().on_save_checkpoint(checkpoint)
        checkpoint["state_dict"] = self._renamed(checkpoint["state_dict"], to_checkpoint=True)
        if self.rd_point is not None:
            checkpoint[RD_POINT_KEY] = self.rd_point

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Resuming: the family's layout back to this module's names."""
        checkpoint["state_dict"] = self._renamed(checkpoint["state_dict"], to_checkpoint=False)

    def _renamed(self, state_dict: dict[str, torch.Tensor], to_checkpoint: bool) -> dict[str, torch.Tensor]:
        pairs = [(CODEC_PREFIX + own, stored) for own, stored in self.parts.checkpoint_prefixes.items()]
        out = {}
        for key, tensor in state_dict.items():
            for own, stored in pairs:
                source, target = (own, stored) if to_checkpoint else (stored, own)
                if key.startswith(source):
                    key = target + key[len(source) :]
                    break
            out[key] = tensor
        return out
