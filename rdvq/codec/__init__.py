"""The codec: image <-> bytes (container format v2) over any codec family."""

from rdvq.codec.image_codec import DEFAULT_MAX_PIXELS, Decoded, Encoded, ImageCodec
from rdvq.codec.latent import CodedSymbols, LatentCodec
from rdvq.codec.registry import FAMILIES, codec_from_checkpoint
from rdvq.codec.sq import SQCodec
from rdvq.codec.vq import VQCodec

__all__ = [
    "DEFAULT_MAX_PIXELS", "FAMILIES", "CodedSymbols", "Decoded", "Encoded", "ImageCodec", "LatentCodec", "SQCodec",
    "VQCodec", "codec_from_checkpoint",
]
