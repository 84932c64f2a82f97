"""Mutations of valid files, for testing that decoders survive untrusted input.

A random corruption is almost always caught by the payload CRC, which says nothing about the
entropy decoders behind it; :func:`fix_crc` recomputes the CRC so a mutation reaches them. Header
edits go through :func:`rdvq.codec.container.pack`, so they carry a valid CRC by construction.
Test code, kept out of the installed package: used by ``tests/test_untrusted_files.py`` and
``benchmarks/fuzz_decoder.py``.
"""

from __future__ import annotations

import dataclasses
import random

from rdvq.codec import container

KINDS = ("flip", "truncate", "insert", "delete", "header")
HEADER_FIELDS = ("family", "height", "width", "model_id", "parameters", "symbol_crc", "streams")
_PREFIX = len(container.MAGIC) + 1 + 4


def fix_crc(data: bytes) -> bytes:
    """``data`` with its payload CRC recomputed (unchanged when it is too short to have one)."""
    if len(data) < _PREFIX:
        return data
    return data[: _PREFIX - 4] + container.with_crc(data[_PREFIX:])


def _edge_value(rng: random.Random, limit: int) -> int:
    return rng.choice([0, 1, 2, limit - 1, limit, limit + 1, rng.randrange(limit + 2), (1 << 62) + rng.randrange(1 << 20)])


def edit_header(parsed: container.Container, rng: random.Random) -> bytes:
    """A re-packed file with one header field set to a boundary or random value."""
    name = rng.choice(HEADER_FIELDS)
    if name in ("height", "width"):
        value = _edge_value(rng, container.MAX_SIDE)
    elif name in ("family", "model_id"):
        value = rng.randrange(256)
    elif name == "symbol_crc":
        value = rng.randrange(1 << 32)
    elif name == "parameters":
        count = rng.choice([0, len(parsed.parameters), len(parsed.parameters) + 1, 255])
        value = tuple(_edge_value(rng, 1 << 16) for _ in range(count))
    else:  # streams: drop, duplicate, split or empty one
        streams = list(parsed.streams)
        choice = rng.randrange(4)
        if choice == 0 and streams:
            streams.pop(rng.randrange(len(streams)))
        elif choice == 1 and streams:
            streams.append(streams[rng.randrange(len(streams))])
        elif choice == 2 and streams and streams[0]:
            cut = rng.randrange(len(streams[0]) + 1)
            streams[0:1] = [streams[0][:cut], streams[0][cut:]]
        else:
            streams.append(b"")
        value = tuple(streams)
    try:
        return container.pack(dataclasses.replace(parsed, **{name: value}))
    except ValueError:  # a value the writer itself refuses (e.g. beyond 63 bits): mutate bytes instead
        return mutate(container.pack(parsed), rng, kinds=("flip",), crc=True)


def mutate(data: bytes, rng: random.Random, *, kinds: tuple[str, ...] = KINDS, crc: bool = True) -> bytes:
    """One random mutation of a valid file; with ``crc`` the payload CRC is recomputed afterwards."""
    kind = rng.choice(kinds)
    if kind == "header":
        return edit_header(container.unpack(data), rng)
    out = bytearray(data)
    if kind == "flip":
        for _ in range(rng.choice([1, 1, 2, 8])):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        del out[rng.randrange(len(out)) :]
    elif kind == "insert":
        position = rng.randrange(len(out) + 1)
        out[position:position] = rng.randbytes(rng.choice([1, 4, 64]))
    else:  # delete
        position = rng.randrange(len(out))
        del out[position : position + rng.choice([1, 4, 64])]
    return fix_crc(bytes(out)) if crc else bytes(out)
