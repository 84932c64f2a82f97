"""``ImageCodec``: an image tensor to bytes and back, bit-exact, for any codec family.

    codec = ImageCodec.from_checkpoint("runs/rate/checkpoints/last.ckpt")
    data = codec.compress(image)          # (3, H, W) in [0, 1] -> bytes
    image_hat = codec.decompress(data)    # -> (3, H, W) in [0, 1]

The four steps are also public, for benchmarks and for training on exactly what the deployed
codec produces: :meth:`ImageCodec.analyze` (networks), :meth:`ImageCodec.pack` (entropy coding
and the container), :meth:`ImageCodec.unpack` (the reverse, with every check) and
:meth:`ImageCodec.reconstruct` (synthesis).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rdvq.checkpointing import read_checkpoint
from rdvq.codec import container
from rdvq.codec.latent import LatentCodec
from rdvq.codec.registry import codec_from_checkpoint
from rdvq.coding.engine import EngineName
from rdvq.encode_options import EncodeOptions
from rdvq.errors import DecodeMismatchError, ModelMismatchError, SizeLimitError
from rdvq.padding import pad_to_multiple, padded_size

DEFAULT_MAX_PIXELS = 1 << 26  # 67 M pixels, e.g. 8192 x 8192


@dataclass
class Encoded:
    data: bytes
    symbols: list[torch.Tensor]  # exactly what the decoder will decode
    height: int
    width: int
    reconstruction: torch.Tensor | None = None  # (3, H, W): exactly what the decoder will produce
    estimated_bits: float | None = None  # the model's estimate for the coded symbols


@dataclass
class Decoded:
    symbols: list[torch.Tensor]
    height: int
    width: int


def model_fingerprint(latent: LatentCodec) -> bytes:
    """8 bytes of SHA-256 over the family, its configuration and every tensor (coding tables included)."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"family": latent.family, **latent.description()}, sort_keys=True).encode())
    for name, tensor in sorted(latent.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.digest()[: container.FINGERPRINT_BYTES]


def symbol_crc(symbols: list[torch.Tensor]) -> int:
    """CRC-32 of the symbols as int32 little-endian, tensor after tensor in raster order."""
    crc = 0
    for tensor in symbols:
        crc = zlib.crc32(tensor.detach().cpu().to(torch.int32).numpy().astype("<i4").tobytes(), crc)
    return crc


class ImageCodec:
    """Codes with ``latent`` as it stands: the module is put in eval mode and its coding tables are
    refreshed, so wrap a copy of a module that is still training (``CodecStage.deployed_codec``)."""

    def __init__(self, latent: LatentCodec, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        latent.check_codable()
        self.latent = latent.eval()
        latent.refresh_tables()
        self.family_id = latent.family_id
        self.max_pixels = max_pixels
        self.device = next(latent.parameters()).device
        self.fingerprint = model_fingerprint(latent)

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, *, engine: EngineName = "auto", device: str = "cpu", max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> "ImageCodec":
        return cls.from_checkpoint_state(read_checkpoint(path), str(path), engine=engine, device=device, max_pixels=max_pixels)

    @classmethod
    def from_checkpoint_state(
        cls, checkpoint: dict[str, Any], source: str, *, engine: EngineName = "auto", device: str | torch.device = "cpu",
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> "ImageCodec":
        """The codec of a checkpoint already in memory (``source`` names it in errors)."""
        return cls(codec_from_checkpoint(checkpoint, source, engine).to(device), max_pixels=max_pixels)

    # ------------------------------------------------------------------ encoder
    @torch.no_grad()
    def analyze(self, image: torch.Tensor) -> Any:
        """Analysis of one (3, H, W) image in [0, 1], padded to the codec's stride."""
        x = image.unsqueeze(0) if image.dim() == 3 else image
        if x.shape[:2] != (1, 3):
            raise ValueError(f"expected one RGB image (3, H, W), got {tuple(image.shape)}")
        return self.latent.analyze(pad_to_multiple(x.to(self.device, torch.float32), self.latent.stride))

    @torch.no_grad()
    def pack(self, analysis: Any, height: int, width: int, options: EncodeOptions = EncodeOptions()) -> Encoded:
        """The entropy stage: an analysis -> a complete file (and the symbols the decoder will see)."""
        coded = self.latent.encode(analysis, options)
        data = container.pack(
            container.Container(
                fingerprint=self.fingerprint,
                family=self.family_id,
                height=height,
                width=width,
                model_id=coded.model_id,
                parameters=coded.parameters,
                symbol_crc=symbol_crc(coded.symbols),
                streams=tuple(coded.streams),
            )
        )
        return Encoded(data=data, symbols=coded.symbols, height=height, width=width)

    @torch.no_grad()
    def encode(
        self, image: torch.Tensor, options: EncodeOptions = EncodeOptions(), *, reconstruct: bool = True, estimate: bool = True
    ) -> Encoded:
        """The file, and optionally the decoder's reconstruction and the model's rate estimate."""
        height, width = image.shape[-2:]
        analysis = self.analyze(image)
        encoded = self.pack(analysis, height, width, options)
        if reconstruct:
            encoded.reconstruction = self.reconstruct(encoded.symbols, height, width)
        if estimate:
            encoded.estimated_bits = self.estimate_bits(analysis, encoded.symbols)
        return encoded

    @torch.no_grad()
    def estimate_bits(self, analysis: Any, symbols: list[torch.Tensor]) -> float:
        """The model's own estimate of the bits of ``symbols`` (what training minimizes)."""
        return float(self.latent.symbol_bits(analysis, [s.to(self.device) for s in symbols]).sum())

    def compress(self, image: torch.Tensor, options: EncodeOptions = EncodeOptions()) -> bytes:
        """Just the file."""
        return self.encode(image, options, reconstruct=False, estimate=False).data

    # ------------------------------------------------------------------ decoder
    @torch.no_grad()
    def unpack(self, data: bytes, *, max_pixels: int | None = None) -> Decoded:
        """The entropy stage of the decoder: a file -> symbols and the original image size."""
        parsed = container.unpack(data, expected_fingerprint=self.fingerprint)
        if parsed.family != self.family_id:
            raise ModelMismatchError(f"file holds codec family {parsed.family}, this checkpoint is family {self.family_id}")
        limit = self.max_pixels if max_pixels is None else max_pixels
        if parsed.height * parsed.width > limit:
            raise SizeLimitError(
                f"file declares a {parsed.width}x{parsed.height} image ({parsed.height * parsed.width} pixels), "
                f"more than the limit of {limit} (--max-pixels)"
            )
        padded = padded_size(parsed.height, parsed.width, self.latent.stride)
        symbols = self.latent.decode(parsed.model_id, parsed.parameters, list(parsed.streams), padded)
        if symbol_crc(symbols) != parsed.symbol_crc:
            raise DecodeMismatchError(
                "decoded symbols fail their checksum: this decoder's probabilities differ from the encoder's "
                "(another device, library version or engine?) or the file is corrupt"
            )
        return Decoded(symbols, parsed.height, parsed.width)

    @torch.no_grad()
    def decompress(self, data: bytes, *, max_pixels: int | None = None) -> torch.Tensor:
        decoded = self.unpack(data, max_pixels=max_pixels)
        return self.reconstruct(decoded.symbols, decoded.height, decoded.width)

    @torch.no_grad()
    def reconstruct(self, symbols: list[torch.Tensor], height: int, width: int) -> torch.Tensor:
        padded = padded_size(height, width, self.latent.stride)
        image = self.latent.synthesize(symbols, padded)[0, :, :height, :width]
        return image.clamp(0.0, 1.0).cpu()
