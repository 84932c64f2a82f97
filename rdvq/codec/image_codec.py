"""``ImageCodec``: an image tensor to bytes and back, bit-exact, with any trained entropy model.

    codec = ImageCodec.from_checkpoint("runs/rate/checkpoints/last.ckpt")
    data = codec.compress(image)          # (3, H, W) in [0, 1] -> bytes
    image_hat = codec.decompress(data)    # -> (3, H, W) in [0, 1]
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from rdvq.checkpointing import read_checkpoint
from rdvq.codec import container
from rdvq.coding import FixedPointCodebook, IndexDecoder, IndexEncoder, ProbabilityEngine
from rdvq.coding.engine import EngineName
from rdvq.entropy import BranchBatch, CodingContext, EntropyModelConfig, IndexEntropyModel, build_entropy_model
from rdvq.errors import CheckpointError, DecodeMismatchError, ModelMismatchError
from rdvq.tokenizer import Tokenizer, TokenizerConfig, pad_to_multiple


@dataclass
class Encoded:
    data: bytes
    indices: list[torch.Tensor]  # per branch (1, h, w)
    reconstruction: torch.Tensor  # (3, H, W): exactly what the decoder will produce
    estimated_bits: float  # the entropy model's estimate for these indices (incl. side information)


def model_fingerprint(tokenizer: Tokenizer, entropy_model: IndexEntropyModel, entropy_config: EntropyModelConfig) -> bytes:
    """8 bytes of SHA-256 over both configurations and every tensor (coding tables included)."""
    digest = hashlib.sha256()
    configs = {"tokenizer": tokenizer.config.to_dict(), "entropy_model": entropy_config.to_dict()}
    digest.update(json.dumps(configs, sort_keys=True).encode())
    for prefix, module in (("tokenizer.", tokenizer), ("entropy_model.", entropy_model)):
        for name, tensor in sorted(module.state_dict().items()):
            digest.update((prefix + name).encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.digest()[: container.FINGERPRINT_BYTES]


def _index_crc(indices: list[torch.Tensor]) -> int:
    crc = 0
    for tensor in indices:
        crc = zlib.crc32(tensor.detach().cpu().to(torch.int32).numpy().astype("<i4").tobytes(), crc)
    return crc


class ImageCodec:
    def __init__(
        self,
        tokenizer: Tokenizer,
        entropy_model: IndexEntropyModel,
        entropy_config: EntropyModelConfig,
        *,
        engine: EngineName = "auto",
        top_k: int | None = None,
    ) -> None:
        self.tokenizer = tokenizer.eval()
        self.entropy_model = entropy_model.eval()
        self.engine_name = engine
        self.top_k = top_k
        self.device = next(tokenizer.parameters()).device
        self.fingerprint = model_fingerprint(tokenizer, entropy_model, entropy_config)
        codewords = [tokenizer.quantizer(b).codewords().detach() for b in tokenizer.branches]
        self._codewords = codewords
        self._codebooks = [FixedPointCodebook.from_codewords(c) for c in codewords]

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, *, engine: EngineName = "auto", top_k: int | None = None, device: str = "cpu"
    ) -> "ImageCodec":
        checkpoint = read_checkpoint(path)
        hparams = checkpoint["hyper_parameters"]
        if "entropy_model" not in hparams:
            raise CheckpointError(f"{path} has no entropy model (a stage A checkpoint?): train stage B first")
        tokenizer = Tokenizer(TokenizerConfig.from_dict(hparams["tokenizer"]))
        entropy_config = EntropyModelConfig.from_dict(hparams["entropy_model"])
        entropy_model = build_entropy_model(entropy_config, tokenizer)
        state = checkpoint["state_dict"]
        for prefix, module in (("tokenizer.", tokenizer), ("entropy_model.", entropy_model)):
            part = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            try:
                module.load_state_dict(part, strict=True)
            except RuntimeError as exc:
                raise CheckpointError(f"{path}: weights do not match the stored configuration ({str(exc).splitlines()[0]})") from None
        tokenizer.to(device)
        entropy_model.to(device)
        if not entropy_model.has_coding_tables():
            entropy_model.update_tables()
        return cls(tokenizer, entropy_model, entropy_config, engine=engine, top_k=top_k)

    def _context(self, top_k: int | None) -> CodingContext:
        return CodingContext(
            engine=ProbabilityEngine(self.engine_name, top_k=top_k), codebooks=self._codebooks, codewords=self._codewords
        )

    # ------------------------------------------------------------------ encoder
    @torch.no_grad()
    def tokenize(self, image: torch.Tensor) -> list[BranchBatch]:
        """Analysis and quantization: the index maps (and latents) of one (3, H, W) image."""
        x = image.unsqueeze(0) if image.dim() == 3 else image
        if x.shape[:2] != (1, 3):
            raise ValueError(f"expected one RGB image (3, H, W), got {tuple(image.shape)}")
        padded = pad_to_multiple(x.to(self.device, torch.float32), self.tokenizer.stride)
        quantization = self.tokenizer.quantize(self.tokenizer.encode(padded))
        return [
            BranchBatch(indices=i, latents=v, codewords=c)
            for i, v, c in zip(quantization.indices, quantization.inputs, self._codewords)
        ]

    @torch.no_grad()
    def pack(self, branches: list[BranchBatch], height: int, width: int) -> bytes:
        """The entropy stage: index maps -> a complete file."""
        encoder = IndexEncoder()
        side = self.entropy_model.compress(branches, encoder, self._context(self.top_k))
        indices = [b.indices for b in branches]
        return container.pack(
            container.Container(
                fingerprint=self.fingerprint,
                height=height,
                width=width,
                model_id=self.entropy_model.model_id,
                parameters=(self.top_k or 0,),
                index_crc=_index_crc(indices),
                streams=(encoder.finish(), *side),
            )
        )

    @torch.no_grad()
    def encode(self, image: torch.Tensor) -> Encoded:
        height, width = image.shape[-2:]
        branches = self.tokenize(image)
        data = self.pack(branches, height, width)
        indices = [b.indices for b in branches]
        return Encoded(
            data=data,
            indices=indices,
            reconstruction=self.reconstruct(indices, height, width),
            estimated_bits=float(self.entropy_model(branches).total().sum()),
        )

    def compress(self, image: torch.Tensor) -> bytes:
        """Just the file: no reconstruction, no estimate (see :meth:`encode` for those)."""
        return self.pack(self.tokenize(image), *image.shape[-2:])

    # ------------------------------------------------------------------ decoder
    @torch.no_grad()
    def unpack(self, data: bytes) -> tuple[list[torch.Tensor], int, int]:
        """The entropy stage of the decoder: a file -> index maps and the original image size."""
        parsed = container.unpack(data, expected_fingerprint=self.fingerprint)
        if parsed.model_id != self.entropy_model.model_id:
            raise ModelMismatchError(
                f"file uses entropy model {parsed.model_id}, this checkpoint has {self.entropy_model.model_id}"
            )
        expected_streams = 1 + self.entropy_model.num_side_streams()
        if len(parsed.streams) != expected_streams or len(parsed.parameters) != 1:
            raise ModelMismatchError(
                f"file has {len(parsed.streams)} streams and {len(parsed.parameters)} parameters, "
                f"this model writes {expected_streams} and 1"
            )
        top_k = parsed.parameters[0] or None
        padded_h = -(-parsed.height // self.tokenizer.stride) * self.tokenizer.stride
        padded_w = -(-parsed.width // self.tokenizer.stride) * self.tokenizer.stride
        shapes = self.tokenizer.latent_shapes(padded_h, padded_w)
        decoder = IndexDecoder(parsed.streams[0])
        indices = self.entropy_model.decompress(list(parsed.streams[1:]), shapes, decoder, self._context(top_k))
        indices = [i.to(self.device) for i in indices]
        if _index_crc(indices) != parsed.index_crc:
            raise DecodeMismatchError(
                "decoded indices fail their checksum: this decoder's probabilities differ from the encoder's "
                "(another device, library version or engine?)"
            )
        return indices, parsed.height, parsed.width

    @torch.no_grad()
    def decompress(self, data: bytes) -> torch.Tensor:
        indices, height, width = self.unpack(data)
        return self.reconstruct(indices, height, width)

    @torch.no_grad()
    def reconstruct(self, indices: list[torch.Tensor], height: int, width: int) -> torch.Tensor:
        image = self.tokenizer.decode_indices(indices)[0, :, :height, :width]
        return image.clamp(0.0, 1.0).cpu()
