"""The codec: image <-> bytes (container format v1) and its command-line front end."""

from rdvq.codec.image_codec import Encoded, ImageCodec

__all__ = ["Encoded", "ImageCodec"]
