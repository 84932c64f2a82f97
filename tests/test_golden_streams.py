"""Streams written by earlier versions must decode unchanged: the probability engine's output is
pinned by the SHA-256 of the bytes it codes for fixed integer inputs (exactly representable, so
the same on every machine), for logits and Gaussians, full tables and the bounded tail floor, one
block and several. A faster engine or coder that changes a single frequency, or the order in
which symbols reach the coder, fails here; every engine must produce these exact bytes."""

from __future__ import annotations

import hashlib

import pytest
import torch

from rdvq.coding import IndexDecoder, IndexEncoder, ProbabilityEngine
from rdvq.coding.probability import FixedPointCodebook, GaussianParameters

# (kind, K, positions, top_k) -> SHA-256 of the stream, recorded with the torch reference engine.
GOLDEN = {
    ('logits', 37, 300, None): "3b2ce4076866c61c02be17da87ca654b1dfe38c8c138a48206bc2f60f1c50774",
    ('logits', 1024, 700, None): "0c65394df7accc4da7c9bb697519f749123d9081bae1a1ea58f8b62ecdc4dab2",
    ('logits', 1024, 700, 16): "81fa50998abef8a7e037ee063867a501fc74a66dbd61eaf1d8a0e914e906bc8f",
    ('logits', 5000, 900, 64): "f6f04a5590a809264c7087547d35ae9ca2609f20e8f8575ecccd4f2ede885335",
    ('gaussian', 48, 500, None): "6e1070f2fad1c7966ead7d611d0c6a596b124085a6ec0d924138d9286ec02e7e",
    ('gaussian', 1024, 1536, None): "d4110511a80d575b680a0f8226ca218c97d7212e5fed9b8f980e81842aacb8d2",
    ('gaussian', 1024, 1536, 32): "e9a0e50c5692370b9374e6d20ae2be2ffa208ec481bed9c6ddc8e40b98fbbff2",
    ('gaussian', 16384, 600, 256): "69e960036a130d190a017fe00708e14e471b1b067780e3060bd143dd83818caf",
    ('diagonal', 300, 400, None): "8806294396dea1bbdc6a71993f5e8199fc8b53936185f1910000b4d5ebf2a2bd",
    ('diagonal', 3000, 800, 40): "616b73602b714300f371e8688f05b86172642334f69e1419f1f0d4e6ff05f4d5",
}


def _some_in_the_tail(symbols: torch.Tensor, size: int, g: torch.Generator) -> torch.Tensor:
    """One symbol in five replaced by a random one, so the tail floor's escape path is coded too."""
    random = torch.randint(0, size, symbols.shape, generator=g)
    return torch.where(torch.randint(0, 5, symbols.shape, generator=g) == 0, random, symbols)


def _inputs(kind: str, size: int, positions: int):
    """Deterministic integer-valued inputs: (symbols, logits or (params, codebook))."""
    g = torch.Generator().manual_seed(size * 7919 + positions)
    if kind == "logits":
        logits = torch.randint(-4000, 4000, (positions, size), generator=g).float() / 64.0
        peak = torch.randint(0, size, (positions,), generator=g)
        logits[torch.arange(positions), peak] += 40.0
        return _some_in_the_tail(peak, size, g), logits
    dim = 8
    values = torch.randint(-(1 << 12), 1 << 12, (size, dim), generator=g)
    codebook = FixedPointCodebook(values=values, exponent=12)
    symbols = torch.randint(0, size, (positions,), generator=g)
    mean = values[symbols] + torch.randint(-1500, 1500, (positions, dim), generator=g)
    scale = torch.randint(1, 64, (positions,), generator=g).float() / float(1 << 25)
    weights = torch.randint(1, 16, (positions, dim), generator=g) if kind == "diagonal" else None
    return _some_in_the_tail(symbols, size, g), (GaussianParameters(mean=mean, scale=scale, dim_weights=weights), codebook)


def _encode(engine: ProbabilityEngine, kind: str, symbols: torch.Tensor, model) -> bytes:
    encoder = IndexEncoder()
    if kind == "logits":
        engine.encode_logits(encoder, symbols, model)
    else:
        engine.encode_gaussian(encoder, symbols, *model)
    return encoder.finish()


@pytest.mark.parametrize("engine_name", ["torch", "auto"])
@pytest.mark.parametrize("case", sorted(GOLDEN, key=str))
def test_streams_are_byte_identical_to_earlier_versions(case, engine_name: str) -> None:
    kind, size, positions, top_k = case
    symbols, model = _inputs(kind, size, positions)
    engine = ProbabilityEngine(engine_name, top_k=top_k)
    data = _encode(engine, kind, symbols, model)
    assert hashlib.sha256(data).hexdigest() == GOLDEN[case]
    decoder = IndexDecoder(data)
    decoded = engine.decode_logits(decoder, model) if kind == "logits" else engine.decode_gaussian(decoder, *model)
    assert torch.equal(decoded, symbols)


def test_the_weight_table_is_pinned() -> None:
    """Every frequency derives from this table: it must never change (its SHA-256 as int64 bytes)."""
    from rdvq.coding.probability import WEIGHTS

    digest = hashlib.sha256(WEIGHTS.numpy().astype("<i8").tobytes()).hexdigest()
    assert digest == "ccf444ff488d1c94180fd5eb8306e934038158364336fae69638f7cd5ea53253"
