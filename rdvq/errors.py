"""Typed errors: every failure a user can cause maps to one of these, with a one-line message.

The CLI catches :class:`RdvqError` and prints ``error: <message>`` without a traceback.
"""


class RdvqError(Exception):
    """Base class of all errors rdvq raises on purpose."""


class ConfigError(RdvqError, ValueError):
    """A configuration value is invalid or inconsistent."""


class CheckpointError(RdvqError):
    """A checkpoint is missing, unreadable, or not the kind that was expected."""


class MissingWeightsError(RdvqError):
    """Pretrained weights a component needs are not on disk (nothing is downloaded at run time)."""


class ImageReadError(RdvqError):
    """An input image cannot be read or is outside the supported range."""


class ProbabilityError(RdvqError, ValueError):
    """The probability engine received logits or scales it cannot turn into a valid distribution."""


class BitstreamError(RdvqError):
    """Base class of errors raised while reading a compressed file."""


class BadMagicError(BitstreamError):
    """The file does not start with the rdvq magic bytes (it is not an rdvq file)."""


class UnsupportedVersionError(BitstreamError):
    """The file uses a format version this build cannot read."""


class ModelMismatchError(BitstreamError):
    """The file was produced by a different model than the one decoding it."""


class TruncatedStreamError(BitstreamError):
    """The file ends before all declared fields and streams were read."""


class ChecksumError(BitstreamError):
    """The payload checksum does not match: the file is corrupt."""


class InvalidHeaderError(BitstreamError):
    """A header field holds a value this decoder cannot accept (out of range, or not what its model writes)."""


class SizeLimitError(BitstreamError):
    """The file declares an image larger than the decoder's ``max_pixels`` limit."""


class TrailingDataError(BitstreamError):
    """Bytes follow the last declared stream."""


class DecodeMismatchError(BitstreamError):
    """Decoded indices disagree with the encoder's checksum (different probabilities on the two sides)."""
