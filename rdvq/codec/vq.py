"""The VQ codec family: a tokenizer's index maps, coded by an index entropy model.

Checkpoint layout (shared by every VQ stage): the tokenizer's weights under ``tokenizer.``, the
entropy model's under ``rate.entropy_model.``; the codec description holds both configurations
(``entropy_model`` is None for a tokenizer that has no entropy model yet, stage A).
"""

from __future__ import annotations

from typing import Any

import torch

from rdvq.checkpointing import load_strict
from rdvq.codec.latent import CodedSymbols, LatentCodec
from rdvq.coding import FixedPointCodebook
from rdvq.coding.engine import EngineName
from rdvq.encode_options import EncodeOptions
from rdvq.entropy import BranchBatch, CodingContext, IndexEntropyModel, build_entropy_model, entropy_config_from_dict
from rdvq.errors import CheckpointError, DecodeMismatchError, ModelMismatchError, ProbabilityError
from rdvq.tokenizer import Tokenizer, TokenizerConfig

TOKENIZER_PREFIX = "tokenizer."
ENTROPY_MODEL_PREFIX = "rate.entropy_model."


def vq_description(tokenizer: TokenizerConfig, entropy_model: Any | None) -> dict[str, Any]:
    """The configuration parts of a VQ checkpoint's codec description."""
    return {"tokenizer": tokenizer.to_dict(), "entropy_model": None if entropy_model is None else entropy_model.to_dict()}


def load_tokenizer(description: dict[str, Any], state_dict: dict[str, torch.Tensor], source: str) -> Tokenizer:
    """The tokenizer a VQ checkpoint's description and weights define (stage A checkpoints included)."""
    tokenizer = Tokenizer(TokenizerConfig.from_dict(description["tokenizer"]))
    load_strict(tokenizer, state_dict, TOKENIZER_PREFIX, source)
    return tokenizer


class VQCodec(LatentCodec):
    family = "vq"

    def __init__(self, tokenizer: Tokenizer, entropy_model: IndexEntropyModel, entropy_config: Any, engine: EngineName = "auto") -> None:
        super().__init__()
        self.tokenizer = tokenizer.eval()
        self.entropy_model = entropy_model.eval()
        self.entropy_config = entropy_config
        self.engine_name = engine
        if not entropy_model.has_coding_tables():
            entropy_model.update_tables()
        codewords = [tokenizer.quantizer(b).codewords().detach() for b in tokenizer.branches]
        self._context = CodingContext(engine, [FixedPointCodebook.from_codewords(c) for c in codewords], codewords)

    @property
    def stride(self) -> int:
        return self.tokenizer.stride

    def description(self) -> dict[str, Any]:
        return vq_description(self.tokenizer.config, self.entropy_config)

    @classmethod
    def from_checkpoint(
        cls, description: dict[str, Any], state_dict: dict[str, torch.Tensor], source: str, engine: EngineName
    ) -> "VQCodec":
        if description.get("entropy_model") is None:
            raise CheckpointError(f"{source} has no entropy model (a stage A checkpoint?): train stage B first")
        tokenizer = load_tokenizer(description, state_dict, source)
        entropy_config = entropy_config_from_dict(description["entropy_model"])
        entropy_model = build_entropy_model(entropy_config, tokenizer, coding_only=True)
        load_strict(entropy_model, state_dict, ENTROPY_MODEL_PREFIX, source)
        return cls(tokenizer, entropy_model, entropy_config, engine)

    # ------------------------------------------------------------------ encoder
    def analyze(self, padded: torch.Tensor) -> list[BranchBatch]:
        quantization = self.tokenizer.quantize(self.tokenizer.encode(padded))
        return [
            BranchBatch(indices=i, latents=v, codewords=c)
            for i, v, c in zip(quantization.indices, quantization.inputs, self._context.codewords)
        ]

    def encode(self, analysis: list[BranchBatch], options: EncodeOptions) -> CodedSymbols:
        options.check_supported(self.entropy_model.options, f"entropy model {self.entropy_model.kind}")
        compressed = self.entropy_model.compress(analysis, self._context, options)
        return CodedSymbols(self.entropy_model.model_id, compressed.parameters, compressed.streams, compressed.indices)

    def estimate_bits(self, analysis: list[BranchBatch], symbols: list[torch.Tensor]) -> float:
        sent = [BranchBatch(indices=i, latents=b.latents, codewords=b.codewords) for i, b in zip(symbols, analysis)]
        return float(self.entropy_model(sent).total().sum())

    # ------------------------------------------------------------------ decoder
    def decode(
        self, model_id: int, parameters: tuple[int, ...], streams: list[bytes], padded: tuple[int, int]
    ) -> list[torch.Tensor]:
        if model_id != self.entropy_model.model_id:
            raise ModelMismatchError(f"file uses entropy model {model_id}, this checkpoint has {self.entropy_model.model_id}")
        shapes = self.tokenizer.latent_shapes(*padded)
        try:
            indices = self.entropy_model.decompress(streams, parameters, shapes, self._context)
        except ProbabilityError as exc:  # side information that decodes to unusable Gaussians
            raise DecodeMismatchError(f"the streams decode to an invalid distribution ({exc})") from None
        return [i.to(self._context.codewords[0].device) for i in indices]

    def synthesize(self, symbols: list[torch.Tensor], padded: tuple[int, int]) -> torch.Tensor:
        return self.tokenizer.decode_indices(symbols)
