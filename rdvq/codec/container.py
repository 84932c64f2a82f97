"""Bitstream container, format version 1 (specified in docs/bitstream.md).

Layout (integers little-endian, ``varint`` = unsigned LEB128)::

    magic "RDVQ" | version u8 | crc32 u32 over everything after this field
    fingerprint 8 bytes | height varint | width varint
    entropy model id u8 | parameter count u8 | parameters varint...
    index crc32 u32 | stream count u8 | stream lengths varint...
    streams, concatenated

Reading checks, in this order: magic, version, that the declared streams end exactly at the end
of the file (truncation / trailing data), the payload CRC, then the model fingerprint. The index
CRC is checked by the codec after decoding: it catches a decoder whose probabilities differ from
the encoder's, which would otherwise return a wrong image silently.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from rdvq.errors import (
    BadMagicError,
    ChecksumError,
    ModelMismatchError,
    TrailingDataError,
    TruncatedStreamError,
    UnsupportedVersionError,
)

MAGIC = b"RDVQ"
VERSION = 1
FINGERPRINT_BYTES = 8
MAX_SIDE = 1 << 20
_PREFIX = len(MAGIC) + 1 + 4


@dataclass(frozen=True)
class Container:
    fingerprint: bytes
    height: int
    width: int
    model_id: int
    parameters: tuple[int, ...]
    index_crc: int
    streams: tuple[bytes, ...]


def _varint(value: int) -> bytes:
    if value < 0:
        raise ValueError("varints are unsigned")
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def pack(container: Container) -> bytes:
    if len(container.fingerprint) != FINGERPRINT_BYTES:
        raise ValueError("fingerprint must be 8 bytes")
    body = bytearray(container.fingerprint)
    body += _varint(container.height) + _varint(container.width)
    body += bytes([container.model_id, len(container.parameters)])
    for value in container.parameters:
        body += _varint(value)
    body += container.index_crc.to_bytes(4, "little")
    body += bytes([len(container.streams)])
    for stream in container.streams:
        body += _varint(len(stream))
    for stream in container.streams:
        body += stream
    return MAGIC + bytes([VERSION]) + zlib.crc32(body).to_bytes(4, "little") + bytes(body)


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
        value = shift = 0
        while True:
            byte = self.take(1, what)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 56:
                raise ChecksumError(f"corrupt header: {what} is not a valid varint")


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
        raise UnsupportedVersionError(f"format version {version} is not supported (this build reads version {VERSION})")
    crc = int.from_bytes(reader.take(4, "checksum"), "little")
    fingerprint = reader.take(FINGERPRINT_BYTES, "model fingerprint")
    height, width = reader.varint("height"), reader.varint("width")
    model_id, count = reader.take(2, "entropy model fields")
    parameters = tuple(reader.varint("entropy model parameters") for _ in range(count))
    index_crc = int.from_bytes(reader.take(4, "index checksum"), "little")
    lengths = [reader.varint("stream lengths") for _ in range(reader.take(1, "stream count")[0])]
    end = reader.pos + sum(lengths)
    if end > len(data):
        raise TruncatedStreamError(f"truncated: file is {len(data)} bytes but its streams end at byte {end}")
    if end < len(data):
        raise TrailingDataError(f"{len(data) - end} unexpected bytes after the last stream")
    if zlib.crc32(data[_PREFIX:]) != crc:
        raise ChecksumError("checksum mismatch: the file is corrupt")
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise ChecksumError(f"corrupt header: image size {height}x{width}")
    if expected_fingerprint is not None and fingerprint != expected_fingerprint:
        raise ModelMismatchError(
            f"file was made by model {fingerprint.hex()}, not by this checkpoint ({expected_fingerprint.hex()})"
        )
    streams = []
    for length in lengths:
        streams.append(reader.take(length, "streams"))
    return Container(fingerprint, height, width, model_id, parameters, index_crc, tuple(streams))
