"""Untrusted files: crafted headers with valid CRCs, and mutated files whose CRC was recomputed so
that they reach the entropy decoders, end in typed errors, quickly and in bounded memory, for
every entropy model."""

from __future__ import annotations

import dataclasses
import random
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rdvq.codec import ImageCodec, container
from mutations import mutate
from rdvq.encode_options import EncodeOptions
from rdvq.errors import BitstreamError, InvalidHeaderError, SizeLimitError
from rdvq.image_io import read_image
from rdvq.sample_photos import sample_photo_paths
from test_codec import make_codec
from test_sq_codec import make_sq_codec


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def _decode_measured(codec: ImageCodec, data: bytes) -> tuple[BaseException | None, float, float]:
    """(exception raised or None, seconds, peak resident memory growth in MiB)."""
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS counter
    baseline = _status_kib("VmRSS")
    start = time.perf_counter()
    try:
        codec.decompress(data)
        error = None
    except BitstreamError as exc:
        error = exc
    return error, time.perf_counter() - start, (_status_kib("VmHWM") - baseline) / 1024


@pytest.fixture(scope="module")
def trained_file(stage_b_checkpoint: Path) -> tuple[ImageCodec, bytes]:
    codec = ImageCodec.from_checkpoint(stage_b_checkpoint)
    return codec, codec.compress(read_image(sample_photo_paths("val")[0])[:, :64, :96])


@pytest.mark.parametrize(
    "size", [(2048, 2048), (8192, 8192), (16384, 16384), (1 << 20, 1 << 20), (1, 1 << 20), (1 << 20, 1)]
)
def test_crafted_sizes_fail_fast_with_a_typed_error(trained_file, size: tuple[int, int]) -> None:
    codec, valid = trained_file
    crafted = container.pack(dataclasses.replace(container.unpack(valid), height=size[0], width=size[1]))
    error, seconds, peak_mib = _decode_measured(codec, crafted)
    assert isinstance(error, BitstreamError), error
    if size[0] * size[1] > codec.max_pixels:
        assert isinstance(error, SizeLimitError) and "--max-pixels" in str(error)
    assert seconds < 2.0, seconds
    assert peak_mib < 1024, peak_mib


@pytest.mark.parametrize("size", [(2048, 2048), (8192, 8192), (1, 1 << 20), (1 << 20, 1), (16384, 16384)])
def test_crafted_sizes_fail_fast_for_the_scalar_codec(size: tuple[int, int]) -> None:
    codec = make_sq_codec("tcq4")
    valid = codec.compress(read_image(sample_photo_paths("val")[0])[:, :64, :96])
    crafted = container.pack(dataclasses.replace(container.unpack(valid), height=size[0], width=size[1]))
    error, seconds, peak_mib = _decode_measured(codec, crafted)
    assert isinstance(error, BitstreamError), error
    if size[0] * size[1] > codec.max_pixels:
        assert isinstance(error, SizeLimitError)
    assert seconds < 2.0, seconds
    assert peak_mib < 1024, peak_mib


def test_max_pixels_is_a_decoder_setting(trained_file) -> None:
    codec, valid = trained_file
    with pytest.raises(SizeLimitError):
        codec.decompress(valid, max_pixels=64 * 96 - 1)
    assert codec.decompress(valid, max_pixels=64 * 96).shape == (3, 64, 96)


@pytest.mark.parametrize("field, value", [("family", 7), ("model_id", 9), ("parameters", (0, 0)), ("parameters", (1 << 40,))])
def test_header_fields_the_model_does_not_write_are_refused(trained_file, field: str, value) -> None:
    codec, valid = trained_file
    crafted = container.pack(dataclasses.replace(container.unpack(valid), **{field: value}))
    with pytest.raises(BitstreamError):
        codec.decompress(crafted)


def test_a_tail_floor_at_the_codebook_size_is_invalid(trained_file) -> None:
    codec, valid = trained_file
    size = codec.latent.tokenizer.config.codebook_size
    crafted = container.pack(dataclasses.replace(container.unpack(valid), parameters=(size,)))
    with pytest.raises(InvalidHeaderError, match="top_k"):
        codec.decompress(crafted)


CODECS = {kind: make_codec("multi", kind) for kind in ("uniform", "static", "hypervq", "transformer")}
FILES = {kind: codec.compress(torch.rand(3, 37, 53, generator=torch.Generator().manual_seed(5))) for kind, codec in CODECS.items()}
# HyperVQ with the searched tail floor: the candidate search runs on what the file declares.
CODECS["hypervq-searched"] = CODECS["hypervq"]
FILES["hypervq-searched"] = CODECS["hypervq"].compress(
    torch.rand(3, 37, 53, generator=torch.Generator().manual_seed(5)), EncodeOptions(top_k=4, search_width=12)
)
# The scalar codec family: the same container and typed errors, with rounding and with TCQ.
for _quantizer in ("usq", "tcq4"):
    CODECS[f"sq-{_quantizer}"] = make_sq_codec(_quantizer)
    FILES[f"sq-{_quantizer}"] = CODECS[f"sq-{_quantizer}"].compress(torch.rand(3, 37, 53, generator=torch.Generator().manual_seed(5)))


@pytest.mark.parametrize("size", [(8192, 8192), (1, 1 << 20)])
@pytest.mark.parametrize("kind", sorted(CODECS))
def test_crafted_sizes_fail_fast_for_every_entropy_model(kind: str, size: tuple[int, int]) -> None:
    crafted = container.pack(dataclasses.replace(container.unpack(FILES[kind]), height=size[0], width=size[1]))
    error, seconds, peak_mib = _decode_measured(CODECS[kind], crafted)
    assert isinstance(error, BitstreamError), error
    assert seconds < 2.0 and peak_mib < 512, (seconds, peak_mib)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(CODECS)), seed=st.integers(0, 2**32 - 1), crc=st.sampled_from([True, True, True, False]))
def test_mutated_files_decode_or_raise_a_typed_error(kind: str, seed: int, crc: bool) -> None:
    codec, valid = CODECS[kind], FILES[kind]
    data = mutate(valid, random.Random(seed), crc=crc)
    start = time.perf_counter()
    try:
        image = codec.decompress(data)
    except BitstreamError:
        pass
    else:  # a mutation the checks cannot see (e.g. in the coder's final padding bits) decodes in full
        parsed = container.unpack(data)
        assert image.shape == (3, parsed.height, parsed.width)
    assert time.perf_counter() - start < 2.0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_mutated_files_of_a_trained_model(trained_file, seed: int) -> None:
    """A CRC-recomputed mutation of a trained model's file ends in a typed error, quickly and in
    bounded memory, or, when no check can see it (the coder's padding bits, a header value the
    decoder does not use), decodes to exactly the valid file's image at the size the header
    declares: the symbol checksum rules out any other symbols."""
    codec, valid = trained_file
    data = mutate(valid, random.Random(seed), crc=True)
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS counter
    baseline = _status_kib("VmRSS")
    start = time.perf_counter()
    try:
        image = codec.decompress(data)
    except BitstreamError:
        image = None
    seconds, peak_mib = time.perf_counter() - start, (_status_kib("VmHWM") - baseline) / 1024
    assert seconds < 2.0 and peak_mib < 1024, (seconds, peak_mib)
    if image is not None:
        parsed = container.unpack(data)
        expected = codec.reconstruct(codec.unpack(valid).symbols, parsed.height, parsed.width)
        assert image.shape == (3, parsed.height, parsed.width) and torch.equal(image, expected)


def test_hypervq_tiles_see_the_whole_receptive_field() -> None:
    """Coding tile by tile must predict what the whole hyper-latent predicts (the halo is wide enough)."""
    from rdvq.entropy.hypervq import HyperPrior
    from rdvq.hyper.tiles import HALO, tile_spans

    torch.manual_seed(0)
    prior = HyperPrior(dim=8, channels=4, hidden=16, diagonal=False).eval()
    z = torch.randn(1, 4, 45, 37).round()
    height, width = 178, 146
    with torch.no_grad():
        whole, _ = prior.gaussian(z, height, width)
        tiled = torch.zeros_like(whole)
        for r0, r1 in tile_spans(z.shape[-2]):
            for c0, c1 in tile_spans(z.shape[-1]):
                top, left = max(0, r0 - HALO), max(0, c0 - HALO)
                bottom, right = min(z.shape[-2], r1 + HALO), min(z.shape[-1], c1 + HALO)
                mu, _ = prior.gaussian(z[..., top:bottom, left:right], 4 * (bottom - top), 4 * (right - left))
                rows, cols = slice(4 * r0, min(4 * r1, height)), slice(4 * c0, min(4 * c1, width))
                tiled[..., rows, cols] = mu[..., rows.start - 4 * top : rows.stop - 4 * top, cols.start - 4 * left : cols.stop - 4 * left]
    assert len(tile_spans(z.shape[-2])) * len(tile_spans(z.shape[-1])) == 9
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-5)
