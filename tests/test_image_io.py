"""read_image accepts every pixel format sensibly and turns every bad file into ImageReadError; write_png is atomic."""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import rdvq.image_io as image_io
from rdvq.errors import ImageReadError
from rdvq.image_io import ImageWarning, read_image, to_uint8, write_png


def _save(path: Path, image: Image.Image, **kwargs) -> Path:
    image.save(path, **kwargs)
    return path


def _read_quietly(path: Path, **kwargs) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning expected
        return read_image(path, **kwargs)


def _assert_image(tensor: torch.Tensor, height: int, width: int) -> None:
    assert tensor.dtype == torch.float32
    assert tensor.shape == (3, height, width)
    assert tensor.is_contiguous()
    assert 0.0 <= tensor.min().item() and tensor.max().item() <= 1.0


def test_rgb_values_are_exact(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    image = _read_quietly(_save(tmp_path / "rgb.png", Image.fromarray(pixels)))
    _assert_image(image, 5, 7)
    assert torch.equal(to_uint8(image), torch.from_numpy(pixels).permute(2, 0, 1))


@pytest.mark.parametrize("mode", ["L", "1"])
def test_gray_is_replicated(tmp_path, mode):
    pixels = np.random.default_rng(1).integers(0, 256, (6, 4), dtype=np.uint8)
    image = _read_quietly(_save(tmp_path / "gray.png", Image.fromarray(pixels).convert(mode)))
    _assert_image(image, 6, 4)
    assert torch.equal(image[0], image[1]) and torch.equal(image[0], image[2])
    if mode == "L":
        assert torch.equal(to_uint8(image[0]), torch.from_numpy(pixels))


def test_palette_without_transparency(tmp_path):
    image = Image.new("P", (3, 2))
    image.putpalette([10, 20, 30] + [0, 0, 0] * 255)
    tensor = _read_quietly(_save(tmp_path / "p.png", image))
    _assert_image(tensor, 2, 3)
    assert to_uint8(tensor[:, 0, 0]).tolist() == [10, 20, 30]


@pytest.mark.parametrize("kind", ["RGBA", "LA", "P"])
def test_transparency_is_dropped_with_one_warning(tmp_path, kind):
    if kind == "P":
        image = Image.new("P", (4, 3))
        image.putpalette([200, 100, 50] * 256)
        path = _save(tmp_path / "p.png", image, transparency=0)
    else:
        image = Image.new(kind, (4, 3), (200, 100, 50, 0) if kind == "RGBA" else (200, 0))
        path = _save(tmp_path / f"{kind}.png", image)
    with pytest.warns(ImageWarning, match="alpha") as record:
        tensor = read_image(path)
    assert len(record) == 1 and "\n" not in str(record[0].message) and str(path) in str(record[0].message)
    _assert_image(tensor, 3, 4)
    expected = [200, 100, 50] if kind != "LA" else [200, 200, 200]
    assert to_uint8(tensor[:, 0, 0]).tolist() == expected  # colors kept, alpha ignored


def test_opaque_alpha_gives_no_warning(tmp_path):
    tensor = _read_quietly(_save(tmp_path / "opaque.png", Image.new("RGBA", (2, 2), (1, 2, 3, 255))))
    assert to_uint8(tensor[:, 1, 1]).tolist() == [1, 2, 3]


def test_sixteen_bit_gray_keeps_precision(tmp_path):
    values = np.array([[0, 1, 257, 1000], [32768, 65534, 65535, 12345]], dtype=np.uint16)
    path = _save(tmp_path / "g16.png", Image.fromarray(values))
    assert Image.open(path).mode == "I;16"
    tensor = _read_quietly(path)
    _assert_image(tensor, 2, 4)
    assert torch.equal(tensor[0], tensor[2])
    # every 16-bit level survives (8-bit truncation would merge 0, 1 and 257 / 65534, 65535)
    assert torch.equal(torch.round(tensor[0].double() * 65535).to(torch.int64), torch.from_numpy(values.astype(np.int64)))


def test_float_image_outside_unit_range_is_scaled_by_max(tmp_path):
    values = np.array([[-1.0, 0.0], [2.0, 4.0]], dtype=np.float32)
    tensor = _read_quietly(_save(tmp_path / "f.tif", Image.fromarray(values)))
    assert tensor[0].tolist() == [[0.0, 0.0], [0.5, 1.0]]


def test_cmyk_is_converted(tmp_path):
    tensor = _read_quietly(_save(tmp_path / "cmyk.jpg", Image.new("CMYK", (8, 8), (0, 0, 0, 0))))
    _assert_image(tensor, 8, 8)
    assert tensor.min().item() > 0.95  # no ink is white


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (4, 2))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    tensor = _read_quietly(_save(tmp_path / "rotated.jpg", image, exif=exif))
    assert tensor.shape == (3, 4, 2)


def test_one_pixel_image(tmp_path):
    _assert_image(_read_quietly(_save(tmp_path / "one.png", Image.new("RGB", (1, 1), (255, 0, 0)))), 1, 1)


def _png_with_size(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def _bad_inputs(tmp_path: Path) -> dict[str, Path]:
    good = _save(tmp_path / "good.png", Image.fromarray(np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)))
    data = good.read_bytes()
    paths = {
        "missing": tmp_path / "missing.png",
        "directory": tmp_path,
        "not_an_image": tmp_path / "notes.png",
        "empty": tmp_path / "empty.png",
        "truncated": tmp_path / "truncated.png",
        "corrupt": tmp_path / "corrupt.png",
        "zero_size": tmp_path / "zero.png",
    }
    paths["not_an_image"].write_text("this is not an image\n")
    paths["empty"].write_bytes(b"")
    paths["truncated"].write_bytes(data[: len(data) // 2])
    paths["corrupt"].write_bytes(data[:60] + bytes(len(data) - 60))
    paths["zero_size"].write_bytes(_png_with_size(0, 5))
    return paths


@pytest.mark.parametrize("case", ["missing", "directory", "not_an_image", "empty", "truncated", "corrupt", "zero_size"])
def test_bad_inputs_raise_image_read_error(tmp_path, case):
    path = _bad_inputs(tmp_path)[case]
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert type(info.value) is ImageReadError
    message = str(info.value)
    assert "\n" not in message and str(path) in message


def test_pixel_limit(tmp_path):
    path = _save(tmp_path / "big.png", Image.new("RGB", (20, 10)))
    assert read_image(path, max_pixels=200).shape == (3, 10, 20)
    with pytest.raises(ImageReadError, match=r"200 pixels.*limit of 199"):
        read_image(path, max_pixels=199)


def test_decompression_bomb_becomes_image_read_error(tmp_path, monkeypatch):
    path = _save(tmp_path / "bomb.png", Image.new("RGB", (20, 10)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)  # PIL refuses above twice this
    with pytest.raises(ImageReadError, match="decompression-bomb"):
        read_image(path)


def test_to_uint8_rounds_and_clamps_any_batch_shape():
    values = torch.tensor([-0.5, 0.0, 0.499 / 255, 0.501 / 255, 1.0, 1.5]).reshape(1, 2, 1, 3)
    out = to_uint8(values)
    assert out.dtype == torch.uint8 and out.shape == (1, 2, 1, 3)
    assert out.flatten().tolist() == [0, 0, 0, 1, 255, 255]


def test_write_png_round_trip(tmp_path):
    image = torch.rand(3, 9, 13, generator=torch.Generator().manual_seed(0))
    path = tmp_path / "nested" / "dir" / "out.png"
    write_png(path, image)
    assert torch.equal(to_uint8(read_image(path)), to_uint8(image))
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.png"]


def test_write_png_rejects_wrong_shape(tmp_path):
    with pytest.raises(ValueError):
        write_png(tmp_path / "x.png", torch.zeros(1, 3, 4, 4))
    assert list(tmp_path.iterdir()) == []


def test_write_png_parent_is_a_file_leaves_nothing(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError):
        write_png(blocker / "out.png", torch.zeros(3, 2, 2))
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_write_png_failure_midway_removes_temp_and_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "out.png"
    write_png(path, torch.ones(3, 2, 2))
    before = path.read_bytes()

    def failing_save(self, file, **kwargs):
        file.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(image_io.Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        write_png(path, torch.zeros(3, 2, 2))
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]
    assert path.read_bytes() == before
