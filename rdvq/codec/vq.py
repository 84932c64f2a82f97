"""The VQ codec family: a tokenizer's index maps, coded by an index entropy model.

One module for every VQ stage: the tokenizer under ``tokenizer.`` and the entropy model under
``entropy_model.`` (so ``codec.tokenizer.*`` and ``codec.entropy_model.*`` in checkpoints). The
entropy model is None for a tokenizer that has none yet (stage A), which trains but cannot code.
The codec description holds both configurations.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rdvq.codec.latent import CodedSymbols, LatentCodec
from rdvq.coding import FixedPointCodebook
from rdvq.coding.engine import EngineName
from rdvq.encode_options import EncodeOptions
from rdvq.entropy import BranchBatch, CodingContext, IndexEntropyModel, build_entropy_model, entropy_config_from_dict
from rdvq.errors import CheckpointError, DecodeMismatchError, ModelMismatchError, ProbabilityError
from rdvq.tokenizer import Tokenizer, TokenizerConfig


class VQCodec(LatentCodec):
    family = "vq"
    family_id = 0

    def __init__(
        self, tokenizer: Tokenizer, entropy_model: IndexEntropyModel | None = None, entropy_config: Any | None = None,
        engine: EngineName = "auto",
    ) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.entropy_model = entropy_model
        self.entropy_config = entropy_config
        self.engine_name = engine
        self._context: CodingContext | None = None  # derived from the codebooks by refresh_tables

    @classmethod
    def build(
        cls, tokenizer: TokenizerConfig, entropy_config: Any | None, *, coding_only: bool = False, engine: EngineName = "auto"
    ) -> "VQCodec":
        """A new codec: the tokenizer, and the entropy model ``entropy_config`` describes (if any)."""
        network = Tokenizer(tokenizer)
        model = None if entropy_config is None else build_entropy_model(entropy_config, network, coding_only)
        return cls(network, model, entropy_config, engine)

    @classmethod
    def from_description(
        cls, description: dict[str, Any], source: str, *, coding_only: bool, engine: EngineName = "auto"
    ) -> "VQCodec":
        stored = description.get("entropy_model")
        if coding_only and stored is None:
            raise CheckpointError(f"{source} has no entropy model (a stage A checkpoint?): train stage B first")
        entropy_config = None if stored is None else entropy_config_from_dict(stored)
        return cls.build(TokenizerConfig.from_dict(description["tokenizer"]), entropy_config,
                         coding_only=coding_only, engine=engine)

    @property
    def stride(self) -> int:
        return self.tokenizer.stride

    @property
    def options(self) -> frozenset[str]:
        return frozenset() if self.entropy_model is None else self.entropy_model.options

    def description(self) -> dict[str, Any]:
        return {
            "tokenizer": self.tokenizer.config.to_dict(),
            "entropy_model": None if self.entropy_config is None else self.entropy_config.to_dict(),
        }

    # ------------------------------------------------------------------ training
    def trainable_parts(self) -> dict[str, nn.Module]:
        return {"decoder": self.tokenizer.decoder}

    def aux_parameters(self) -> list[nn.Parameter]:
        return [] if self.entropy_model is None else self.entropy_model.aux_parameters()

    def aux_loss(self) -> torch.Tensor:
        return torch.zeros(()) if self.entropy_model is None else self.entropy_model.aux_loss()

    def check_codable(self) -> None:
        self._coding_model()

    def refresh_tables(self) -> None:
        """The entropy model's tables and the fixed-point codebooks (a tokenizer alone has none)."""
        if self.entropy_model is None:
            return
        self.entropy_model.update_tables()
        codewords = [self.tokenizer.quantizer(b).codewords().detach() for b in self.tokenizer.branches]
        self._context = CodingContext(self.engine_name, [FixedPointCodebook.from_codewords(c) for c in codewords], codewords)

    def symbol_bits(self, analysis: list[BranchBatch], symbols: list[torch.Tensor]) -> torch.Tensor:
        """Bits of the index maps ``symbols`` under the entropy model, side information (computed
        from the analysed latents) included."""
        sent = [BranchBatch(indices=i, latents=b.latents, codewords=b.codewords) for i, b in zip(symbols, analysis)]
        return self._coding_model()(sent).total()

    def _coding_model(self) -> IndexEntropyModel:
        if self.entropy_model is None:
            raise CheckpointError("this VQ codec has no entropy model yet (stage A): train stage B first")
        return self.entropy_model

    # ------------------------------------------------------------------ encoder
    def analyze(self, padded: torch.Tensor) -> list[BranchBatch]:
        quantization = self.tokenizer.quantize(self.tokenizer.encode(padded))
        return [
            BranchBatch(indices=i, latents=v, codewords=c)
            for i, v, c in zip(quantization.indices, quantization.inputs, self._coding_context().codewords)
        ]

    def encode(self, analysis: list[BranchBatch], options: EncodeOptions) -> CodedSymbols:
        model = self._coding_model()
        options.check_supported(model.options, f"entropy model {model.kind}")
        compressed = model.compress(analysis, self._coding_context(), options)
        return CodedSymbols(model.model_id, compressed.parameters, compressed.streams, compressed.indices)

    def _coding_context(self) -> CodingContext:
        if self._context is None:
            self.refresh_tables()
        return self._context

    # ------------------------------------------------------------------ decoder
    def decode(
        self, model_id: int, parameters: tuple[int, ...], streams: list[bytes], padded: tuple[int, int]
    ) -> list[torch.Tensor]:
        model = self._coding_model()
        if model_id != model.model_id:
            raise ModelMismatchError(f"file uses entropy model {model_id}, this checkpoint has {model.model_id}")
        shapes = self.tokenizer.latent_shapes(*padded)
        context = self._coding_context()
        try:
            indices = model.decompress(streams, parameters, shapes, context)
        except ProbabilityError as exc:  # side information that decodes to unusable Gaussians
            raise DecodeMismatchError(f"the streams decode to an invalid distribution ({exc})") from None
        return [i.to(context.codewords[0].device) for i in indices]

    def synthesize(self, symbols: list[torch.Tensor], padded: tuple[int, int]) -> torch.Tensor:
        return self.tokenizer.decode_indices(symbols)
