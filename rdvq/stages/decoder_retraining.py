"""Stage D: decoder retraining on the latents the deployed encoder really produces (Borzechowski et
al., arXiv 2506.08662), for any codec family.

The codec is loaded from ``init_from`` as ``ImageCodec.from_checkpoint`` loads it, and every training
crop goes through the family's own ``analyze`` and ``encode(analysis, options)``: the symbols are
what ``rdvq compress`` with the same options would write (rounding or the trellis search for the
scalar codec; nearest-codeword or entropy-constrained index selection and rate-control completion
for VQ). Only the synthesis from those symbols runs with gradients. Everything else is frozen and
stays bit-identical; the family's ``decoder`` part trains on distortion and, with
``train_hyper_decoder``, its ``hyper_decoder`` part too, on distortion plus ``lmbda`` times the
symbols' rate (it also predicts their distribution). ``lmbda`` defaults to the point the codec was
trained at (the checkpoint's rate-distortion point).

Latents are computed online by the frozen encoder: the same as precomputing them (the paper's
offline variant) for a fixed crop, but every random crop is fresh, and retraining the hyper-decoder
(which moves the means the latents are quantized around) needs no other code path. A discriminator
in the ``init_from`` checkpoint (stages A and C keep theirs) continues when the adversarial term is on.
"""

from __future__ import annotations

from typing import Any

import torch

from rdvq.checkpointing import RD_POINT_KEY
from rdvq.codec import codec_from_checkpoint
from rdvq.coding.engine import EngineName
from rdvq.encode_options import EncodeOptions
from rdvq.errors import ConfigError
from rdvq.padding import pad_to_multiple
from rdvq.stages.base import DecoderStage
from rdvq.stages.file_validation import FileValidation
from rdvq.stages.rd_point import RDPoint


class DecoderRetraining(DecoderStage):
    def __init__(
        self, options: EncodeOptions | None = None, train_hyper_decoder: bool = False, lmbda: float | None = None,
        engine: EngineName = "auto", **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if self.init_description is None:
            raise ConfigError("stage D retrains a trained codec: model.init_from must name its checkpoint")
        self.codec = codec_from_checkpoint(self._init_checkpoint, str(self.init_from), engine)
        self.codec.requires_grad_(False)
        parts = self.codec.trainable_parts()
        self._trained = [parts["decoder"]]
        if train_hyper_decoder:
            if "hyper_decoder" not in parts:
                raise ConfigError(f"the {self.codec.family!r} codec has no hyper-decoder to retrain (train_hyper_decoder: false)")
            self._trained.append(parts["hyper_decoder"])
        for module in self._trained:
            module.requires_grad_(True)
        stored = self._init_checkpoint.get(RD_POINT_KEY) or {}
        if lmbda is None and "lmbda" not in stored and train_hyper_decoder:
            raise ConfigError(f"{self.init_from} records no lambda: retraining the hyper-decoder needs model.lmbda")
        if lmbda is not None or "lmbda" in stored:  # the point the codec was trained at, kept in every checkpoint
            self.rd_point = RDPoint(stored["lmbda"] if lmbda is None else lmbda, stored.get("tau"))
        self.train_hyper_decoder = train_hyper_decoder
        self.validation = FileValidation()
        self.options = options or EncodeOptions()
        stride = self.codec.stride
        with torch.no_grad():  # refuse options the family does not implement now, not at the first batch
            self.codec.encode(self.codec.analyze(torch.zeros(1, 3, stride, stride)), self.options)
        self.load_init_weights()  # the codec loaded strictly above; this brings a discriminator along

    def train(self, mode: bool = True) -> "DecoderRetraining":
        """Everything frozen stays in eval mode (no quantizer statistics, no restarts)."""
        super().train(mode)
        self.codec.eval()
        for module in self._trained:
            module.train(mode)
        return self

    def trained_parameters(self) -> list[torch.nn.Parameter]:
        return self.trainable(*self._trained)

    @torch.no_grad()
    def deployed_symbols(self, padded: torch.Tensor) -> tuple[list[Any], list[torch.Tensor]]:
        """(analysis of each image, the symbols the deployed encoder writes for the batch, batched)."""
        analyses = [self.codec.analyze(image.unsqueeze(0)) for image in padded]
        sets = [self.codec.encode(analysis, self.options).symbols for analysis in analyses]
        return analyses, [torch.cat(parts).to(padded.device) for parts in zip(*sets)]

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        height, width = batch.shape[-2:]
        padded = pad_to_multiple(batch, self.codec.stride)
        analyses, symbols = self.deployed_symbols(padded)
        x_hat = self.codec.synthesize(symbols, tuple(padded.shape[-2:]))[..., :height, :width]
        logs: dict[str, Any] = {}
        extra = x_hat.new_zeros(())
        if self.train_hyper_decoder:
            bits = torch.cat([
                self.codec.symbol_bits(analysis, [s[n : n + 1] for s in symbols]) for n, analysis in enumerate(analyses)
            ])
            bpp = bits.mean() / (height * width)
            extra = self.rd_point.lmbda * bpp
            logs["train/bpp"] = bpp
        self.distortion_step(batch, x_hat, extra, logs)
