"""Container format v2: round trip, and every kind of bad file raises its typed error."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rdvq.codec import container as C
from rdvq.errors import (
    BadMagicError,
    BitstreamError,
    ChecksumError,
    InvalidHeaderError,
    ModelMismatchError,
    TrailingDataError,
    TruncatedStreamError,
    UnsupportedVersionError,
)

FINGERPRINT = bytes(range(8))
SAMPLE = C.Container(FINGERPRINT, 0, 512, 768, 2, (0,), 0xDEADBEEF, (b"index-stream" * 3, b"side", b""))


def test_round_trip() -> None:
    data = C.pack(SAMPLE)
    assert C.unpack(data, FINGERPRINT) == SAMPLE
    assert data.startswith(b"RDVQ\x02")


def test_each_bad_file_gets_its_error() -> None:
    data = C.pack(SAMPLE)
    with pytest.raises(BadMagicError):
        C.unpack(b"\x89PNG\r\n\x1a\n" + data[8:])
    with pytest.raises(UnsupportedVersionError, match="version 3"):
        C.unpack(data[:4] + b"\x03" + data[5:])
    with pytest.raises(UnsupportedVersionError, match="earlier rdvq"):
        C.unpack(data[:4] + b"\x01" + data[5:])
    with pytest.raises(TruncatedStreamError):
        C.unpack(data[:-1])
    with pytest.raises(TruncatedStreamError):
        C.unpack(b"RD")
    with pytest.raises(TrailingDataError):
        C.unpack(data + b"\x00")
    corrupt = bytearray(data)
    corrupt[-8] ^= 0x10
    with pytest.raises(ChecksumError):
        C.unpack(bytes(corrupt))
    with pytest.raises(ModelMismatchError):
        C.unpack(data, bytes(8))
    with pytest.raises(BadMagicError):
        C.unpack(b"")


@settings(max_examples=300, deadline=None)
@given(position=st.integers(0, len(C.pack(SAMPLE)) - 1), flip=st.integers(1, 255))
def test_any_byte_corruption_raises_a_bitstream_error(position: int, flip: int) -> None:
    corrupt = bytearray(C.pack(SAMPLE))
    corrupt[position] ^= flip
    with pytest.raises(BitstreamError):
        C.unpack(bytes(corrupt), FINGERPRINT)


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(0, len(C.pack(SAMPLE)) - 1))
def test_any_truncation_raises(cut: int) -> None:
    with pytest.raises((TruncatedStreamError, BadMagicError)):
        C.unpack(C.pack(SAMPLE)[:cut], FINGERPRINT)


@settings(max_examples=100, deadline=None)
@given(junk=st.binary(min_size=1, max_size=64))
def test_trailing_garbage_and_foreign_bytes(junk: bytes) -> None:
    with pytest.raises(TrailingDataError):
        C.unpack(C.pack(SAMPLE) + junk, FINGERPRINT)
    with pytest.raises(BitstreamError):
        C.unpack(junk, FINGERPRINT)


def _with_size(height: int, width: int) -> bytes:
    return C.pack(C.Container(FINGERPRINT, 0, height, width, 2, (0,), 0, (b"x" * 4,)))


def test_sizes_outside_the_format_range_are_invalid_headers() -> None:
    for height, width in ((0, 5), (5, 0), (C.MAX_SIDE + 1, 1), (1, 1 << 40)):
        with pytest.raises(InvalidHeaderError, match="image size"):
            C.unpack(_with_size(height, width), FINGERPRINT)
    assert C.unpack(_with_size(C.MAX_SIDE, C.MAX_SIDE), FINGERPRINT).height == C.MAX_SIDE


def test_overlong_varints_are_invalid_headers() -> None:
    data = bytearray(_with_size(3, 3))
    position = 4 + 1 + 4 + 8 + 1  # the height varint
    data[position : position + 1] = b"\xff" * 12  # continues past 63 bits
    data[5:9] = C.with_crc(bytes(data[9:]))[:4]
    with pytest.raises(InvalidHeaderError, match="varint"):
        C.unpack(bytes(data), FINGERPRINT)
