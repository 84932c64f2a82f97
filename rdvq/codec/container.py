"""Bitstream container, format version 2 (specified in docs/bitstream.md).

Layout (integers little-endian, ``varint`` = unsigned LEB128)::

    magic "RDVQ" | version u8 | crc32 u32 over everything after this field
    fingerprint 8 bytes | codec family u8 | height varint | width varint
    model id u8 | parameter count u8 | parameters varint...
    symbol crc32 u32 | stream count u8 | stream lengths varint...
    streams, concatenated

Reading checks, in this order: magic, version, that the declared streams end exactly at the end
of the file (truncation / trailing data), the payload CRC, the image size's range, then the model
fingerprint. The codec then checks the family, model id and parameters against its model, the
declared size against its ``max_pixels`` limit, and after decoding the symbol CRC: it catches a
decoder whose probabilities differ from the encoder's, which would otherwise return a wrong image
silently. No field is trusted before its check: :func:`unpack` allocates nothing beyond the file.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from rdvq.errors import (
    BadMagicError,
    ChecksumError,
    InvalidHeaderError,
    ModelMismatchError,
    TrailingDataError,
    TruncatedStreamError,
    UnsupportedVersionError,
)

from rdvq.coding.format import FINGERPRINT_BYTES, MAGIC, MAX_SIDE, VERSION
from rdvq.coding.format import MAX_VARINT_BYTES as _MAX_VARINT_BYTES

_PREFIX = len(MAGIC) + 1 + 4


@dataclass(frozen=True)
class Container:
    fingerprint: bytes
    family: int
    height: int
    width: int
    model_id: int
    parameters: tuple[int, ...]
    symbol_crc: int
    streams: tuple[bytes, ...]


def _varint(value: int) -> bytes:
    if value < 0 or value >= 1 << (7 * _MAX_VARINT_BYTES):
        raise ValueError(f"varint out of range: {value}")
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _byte(value: int, what: str) -> bytes:
    if not 0 <= value <= 255:
        raise ValueError(f"{what} must fit in one byte, got {value}")
    return bytes([value])


def pack(container: Container) -> bytes:
    if len(container.fingerprint) != FINGERPRINT_BYTES:
        raise ValueError("fingerprint must be 8 bytes")
    body = bytearray(container.fingerprint)
    body += _byte(container.family, "codec family")
    body += _varint(container.height) + _varint(container.width)
    body += _byte(container.model_id, "model id") + _byte(len(container.parameters), "parameter count")
    for value in container.parameters:
        body += _varint(value)
    body += container.symbol_crc.to_bytes(4, "little")
    body += _byte(len(container.streams), "stream count")
    for stream in container.streams:
        body += _varint(len(stream))
    for stream in container.streams:
        body += stream
    return MAGIC + bytes([VERSION]) + with_crc(bytes(body))


def with_crc(body: bytes) -> bytes:
    """``body`` prefixed with its CRC-32, as it follows the version byte."""
    return zlib.crc32(body).to_bytes(4, "little") + body


class _Reader:
    def __init__(self, data: bytes, start: int) -> None:
        self.data, self.pos = data, start

    def take(self, count: int, what: str) -> bytes:
        if self.pos + count > len(self.data):
            raise TruncatedStreamError(f"truncated: file ends inside the {what} (byte {len(self.data)} of at least {self.pos + count})")
        out = self.data[self.pos : self.pos + count]
        self.pos += count
        return out

    def varint(self, what: str) -> int:
        value = 0
        for shift in range(0, 7 * _MAX_VARINT_BYTES, 7):
            byte = self.take(1, what)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise InvalidHeaderError(f"corrupt header: {what} is not a valid varint")


def unpack(data: bytes, expected_fingerprint: bytes | None = None) -> Container:
    """Parse and verify a file; raises a :class:`~rdvq.errors.BitstreamError` subclass on any problem."""
    if not data:
        raise BadMagicError("empty file: not an rdvq file")
    if not data.startswith(MAGIC):
        if MAGIC.startswith(data):
            raise TruncatedStreamError(f"truncated: file is only {len(data)} bytes long")
        raise BadMagicError("not an rdvq file (bad magic bytes)")
    reader = _Reader(data, len(MAGIC))
    version = reader.take(1, "version")[0]
    if version != VERSION:
        hint = " (written by an earlier rdvq: compress the image again)" if version < VERSION else ""
        raise UnsupportedVersionError(f"format version {version} is not supported, this build reads version {VERSION}{hint}")
    crc = int.from_bytes(reader.take(4, "checksum"), "little")
    fingerprint = reader.take(FINGERPRINT_BYTES, "model fingerprint")
    family = reader.take(1, "codec family")[0]
    height, width = reader.varint("height"), reader.varint("width")
    model_id, count = reader.take(2, "model fields")
    parameters = tuple(reader.varint("model parameters") for _ in range(count))
    symbol_crc = int.from_bytes(reader.take(4, "symbol checksum"), "little")
    lengths = [reader.varint("stream lengths") for _ in range(reader.take(1, "stream count")[0])]
    end = reader.pos + sum(lengths)
    if end > len(data):
        raise TruncatedStreamError(f"truncated: file is {len(data)} bytes but its streams end at byte {end}")
    if end < len(data):
        raise TrailingDataError(f"{len(data) - end} unexpected bytes after the last stream")
    if zlib.crc32(data[_PREFIX:]) != crc:
        raise ChecksumError("checksum mismatch: the file is corrupt")
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise InvalidHeaderError(f"corrupt header: image size {height}x{width} outside 1..{MAX_SIDE}")
    if expected_fingerprint is not None and fingerprint != expected_fingerprint:
        raise ModelMismatchError(
            f"file was made by model {fingerprint.hex()}, not by this checkpoint ({expected_fingerprint.hex()})"
        )
    streams = tuple(reader.take(length, "streams") for length in lengths)
    return Container(fingerprint, family, height, width, model_id, parameters, symbol_crc, streams)
