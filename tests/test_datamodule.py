"""ImageFolderDataModule: folder scanning, crops that never drop small images, reproducible randomness, whole validation images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules import ImageFolderDataModule, find_images, sample_photo_paths
from datamodules.image_folder import WholeImageDataset
from rdvq.errors import ConfigError


def _photo(path: Path, width: int, height: int, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "images"
    for i in range(6):
        _photo(root / f"img{i}.png", 80 + 8 * i, 72, seed=i)
    return root


def _first_batch(datamodule: ImageFolderDataModule) -> torch.Tensor:
    datamodule.setup("fit")
    return next(iter(datamodule.train_dataloader()))


def test_find_images_is_recursive_case_insensitive_and_sorted(tmp_path):
    names = ["a.png", "b/c.JPG", "b/d/e.jpeg", "f.webp", "g/h.bmp", "g/i.tif", "g/j.TIFF"]
    for i, name in enumerate(names):
        _photo(tmp_path / name, 4, 4, seed=i)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "._a.png").write_bytes(b"macOS resource fork")
    (tmp_path / ".cache").mkdir()
    _photo(tmp_path / ".cache" / "hidden.png", 4, 4)
    found = find_images(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == sorted(names, key=lambda n: Path(n).parts)
    assert found == sorted(found)


@pytest.mark.parametrize("make", ["missing", "empty", "file"])
def test_bad_directories_raise_config_error(tmp_path, make):
    target = tmp_path / "data"
    if make == "empty":
        target.mkdir()
        (target / "readme.txt").write_text("no images here")
    elif make == "file":
        target.write_text("x")
    datamodule = ImageFolderDataModule(train_dir=str(target), num_workers=0)
    with pytest.raises(ConfigError, match=str(target)) as info:
        datamodule.setup("fit")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [{"crop_size": 0}, {"batch_size": 0}, {"num_workers": -1}, {"repeat": 0}, {"seed": -1}, {"val_center_crop": 0}, {"val_max_images": 0}, {"small_images": "drop"},
     {"saturation": (0.5,)}, {"saturation": (-0.1, 1.0)}, {"saturation": (1.2, 0.8)}],
)
def test_invalid_arguments_raise_config_error(kwargs):
    with pytest.raises(ConfigError):
        ImageFolderDataModule(**kwargs)


@pytest.mark.parametrize("policy", ["pad", "resize"])
def test_small_image_is_kept_and_cropped(tmp_path, policy):
    _photo(tmp_path / "small.png", 30, 20)
    datamodule = ImageFolderDataModule(train_dir=str(tmp_path), val_dir=str(tmp_path), crop_size=64, batch_size=4, num_workers=0, small_images=policy)
    batch = _first_batch(datamodule)  # one image, batch size 4: a tiny dataset still gives a batch
    assert batch.shape == (1, 3, 64, 64)
    assert 0.0 <= batch.min().item() and batch.max().item() <= 1.0


def test_batches_have_crop_shape_and_repeat_lengthens_the_epoch(folder):
    datamodule = ImageFolderDataModule(train_dir=str(folder), val_dir=str(folder), crop_size=32, batch_size=4, num_workers=0, repeat=3)
    datamodule.setup("fit")
    batches = list(datamodule.train_dataloader())
    assert len(datamodule.train_set) == 18
    assert len(batches) == 4  # drop_last: 18 samples, batch 4
    for batch in batches:
        assert batch.shape == (4, 3, 32, 32) and batch.dtype == torch.float32
        assert 0.0 <= batch.min().item() and batch.max().item() <= 1.0


def test_same_seed_same_batch_different_seed_different(folder):
    def batch(seed: int) -> torch.Tensor:
        return _first_batch(ImageFolderDataModule(train_dir=str(folder), val_dir=str(folder), crop_size=32, batch_size=4, num_workers=0, seed=seed))

    assert torch.equal(batch(0), batch(0))
    assert not torch.equal(batch(0), batch(1))


def test_workers_are_reproducible_and_draw_different_crops(tmp_path):
    # one image repeated: any two identical crops in a batch would mean workers share a random stream
    _photo(tmp_path / "only.png", 96, 96)

    def batches(seed: int) -> list[torch.Tensor]:
        datamodule = ImageFolderDataModule(train_dir=str(tmp_path), val_dir=str(tmp_path), crop_size=16, batch_size=4, num_workers=2, seed=seed, repeat=8)
        datamodule.setup("fit")
        return list(datamodule.train_dataloader())

    first, second = batches(5), batches(5)
    assert len(first) == 2 and all(torch.equal(a, b) for a, b in zip(first, second))
    crops = torch.cat(first)
    assert len({tuple(crop.flatten()[:64].tolist()) for crop in crops}) == len(crops)


def test_saturation_jitter_blends_towards_gray_and_is_off_by_default(folder):
    def batch(saturation: tuple[float, float] | None) -> torch.Tensor:
        extra = {} if saturation is None else {"saturation": saturation}
        return _first_batch(ImageFolderDataModule(train_dir=str(folder), val_dir=str(folder), crop_size=32, batch_size=4, num_workers=0, **extra))

    plain = batch(None)
    assert torch.equal(batch((1.0, 1.0)), plain)  # the identity range draws nothing: the same crops
    gray = batch((0.0, 0.0))
    assert torch.allclose(gray[:, 0], gray[:, 1]) and torch.allclose(gray[:, 1], gray[:, 2])
    # the first crop is drawn before any factor, so it is the same crop with its colour removed or halved
    luma = 0.2989 * plain[0, 0] + 0.587 * plain[0, 1] + 0.114 * plain[0, 2]
    assert torch.allclose(gray[0, 0], luma, atol=1e-5)
    half = batch((0.5, 0.5))
    assert torch.allclose(half[0], 0.5 * plain[0] + 0.5 * gray[0], atol=1e-5)
    assert not torch.equal(half[0], plain[0])


def test_validation_yields_whole_images_one_at_a_time(folder):
    datamodule = ImageFolderDataModule(train_dir=str(folder), val_dir=str(folder), num_workers=0, val_max_images=3)
    datamodule.setup("validate")
    assert datamodule.train_set is None
    shapes = [batch.shape for batch in datamodule.val_dataloader()]
    assert shapes == [(1, 3, 72, 80), (1, 3, 72, 88), (1, 3, 72, 96)]
    assert [b.shape for b in datamodule.test_dataloader()] == shapes


def test_validation_center_crop_is_clipped_to_the_image(tmp_path):
    path = _photo(tmp_path / "wide.png", 50, 20)
    full = WholeImageDataset([path])[0]
    crop = WholeImageDataset([path], center_crop=32)[0]
    assert crop.shape == (3, 20, 32)
    assert torch.equal(crop, full[:, :, 9:41])


def test_default_uses_disjoint_sample_photos():
    train, val = sample_photo_paths("train"), sample_photo_paths("val")
    assert len(val) == 3 and len(train) >= 6 and not set(train) & set(val)
    assert all(path.is_file() and "site-packages" in path.parts for path in train + val)
    datamodule = ImageFolderDataModule(crop_size=32, batch_size=2, num_workers=0, val_center_crop=24)
    datamodule.setup("fit")
    assert datamodule.train_set.paths == train and datamodule.val_set.paths == val
    assert next(iter(datamodule.train_dataloader())).shape == (2, 3, 32, 32)
    assert next(iter(datamodule.val_dataloader())).shape == (1, 3, 24, 24)
