"""Folders of images as a LightningDataModule: random crops for training, whole images for validation.

With no folders configured it falls back to the photographs bundled with scikit-image, so every
config runs without a download.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, get_worker_info
from torchvision.transforms.v2.functional import adjust_saturation

from rdvq.errors import ConfigError
from rdvq.image_io import find_images, read_image
from rdvq.sample_photos import sample_photo_paths

__all__ = ["ImageFolderDataModule", "RandomCropDataset", "WholeImageDataset"]

SmallImagePolicy = Literal["pad", "resize"]


class RandomCropDataset(Dataset):
    """Random ``crop_size`` squares with random horizontal flips; each image is visited ``repeat`` times per epoch.

    ``saturation`` (low, high) scales each crop's colour saturation by a factor drawn uniformly from
    that range (torchvision's ``adjust_saturation``: a blend with the crop's own grayscale); (1, 1)
    leaves colours alone and draws nothing, so crops are those of a run without it.

    Images smaller than the crop are kept: replicate-padded (``"pad"``) or upscaled so the shorter side
    equals the crop (``"resize"``). Randomness comes from a torch generator owned by the current process:
    seeded with ``seed`` in the main process and with the DataLoader's per-worker seed in a worker
    (which the DataLoader derives from its own generator), so a run is reproducible for a given
    seed and worker count, and workers never repeat each other's draws.
    """

    def __init__(
        self, paths: list[Path], crop_size: int, small_images: SmallImagePolicy, repeat: int, seed: int,
        saturation: tuple[float, float] = (1.0, 1.0),
    ) -> None:
        self.paths = paths
        self.crop_size = crop_size
        self.small_images = small_images
        self.repeat = repeat
        self.seed = seed
        self.saturation = saturation
        self._rng: torch.Generator | None = None
        self._rng_owner: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.paths) * self.repeat

    def __getitem__(self, index: int) -> torch.Tensor:
        image = _cover(read_image(self.paths[index % len(self.paths)]), self.crop_size, self.small_images)
        rng = self._generator()
        _, height, width = image.shape
        top = int(torch.randint(height - self.crop_size + 1, (1,), generator=rng))
        left = int(torch.randint(width - self.crop_size + 1, (1,), generator=rng))
        crop = image[:, top : top + self.crop_size, left : left + self.crop_size]
        if torch.rand(1, generator=rng).item() < 0.5:
            crop = crop.flip(-1)
        low, high = self.saturation
        if (low, high) != (1.0, 1.0):
            crop = adjust_saturation(crop, low + (high - low) * torch.rand(1, generator=rng).item())
        return crop.contiguous()

    def _generator(self) -> torch.Generator:
        # A dataset copied into a worker (fork or pickle) must not reuse the main process's stream.
        worker = get_worker_info()
        owner = None if worker is None else (worker.id, worker.seed)
        if self._rng is None or self._rng_owner != owner:
            self._rng = torch.Generator().manual_seed(self.seed if worker is None else worker.seed)
            self._rng_owner = owner
        return self._rng


class WholeImageDataset(Dataset):
    """Whole images for validation, optionally center-cropped (to at most the image size) for cheap runs.

    Padding to the model stride is the model's job, so sizes are returned as they are.
    """

    def __init__(self, paths: list[Path], center_crop: int | None = None) -> None:
        self.paths = paths
        self.center_crop = center_crop

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = read_image(self.paths[index])
        if self.center_crop is None:
            return image
        _, height, width = image.shape
        crop_h, crop_w = min(self.center_crop, height), min(self.center_crop, width)
        top, left = (height - crop_h) // 2, (width - crop_w) // 2
        return image[:, top : top + crop_h, left : left + crop_w].contiguous()


class ImageFolderDataModule(pl.LightningDataModule):
    """Training crops and validation images from folders (searched recursively), or the scikit-image sample photos.

    A folder left as ``None`` falls back to the matching split of :func:`sample_photo_paths`.
    ``repeat`` makes an epoch ``repeat`` passes over the training images, useful when there are few;
    ``saturation`` jitters the training crops' colour saturation (see :class:`RandomCropDataset`).
    The test set is the validation set. Under DDP, Lightning replaces the samplers with
    distributed ones; this module only mixes the rank into the seed so ranks draw different crops.
    """

    def __init__(
        self,
        train_dir: str | None = None,
        val_dir: str | None = None,
        crop_size: int = 256,
        batch_size: int = 8,
        num_workers: int = 2,
        seed: int = 0,
        small_images: SmallImagePolicy = "resize",
        val_center_crop: int | None = None,
        val_max_images: int | None = None,
        repeat: int = 1,
        saturation: tuple[float, float] = (1.0, 1.0),
    ) -> None:
        super().__init__()
        for name, value, minimum in (
            ("crop_size", crop_size, 1),
            ("batch_size", batch_size, 1),
            ("num_workers", num_workers, 0),
            ("seed", seed, 0),
            ("repeat", repeat, 1),
            ("val_center_crop", val_center_crop, 1),
            ("val_max_images", val_max_images, 1),
        ):
            if value is not None and value < minimum:
                raise ConfigError(f"data: {name} must be >= {minimum}, got {value}")
        if small_images not in ("pad", "resize"):
            raise ConfigError(f"data: small_images must be 'pad' or 'resize', got {small_images!r}")
        if len(saturation) != 2 or not 0 <= saturation[0] <= saturation[1]:
            raise ConfigError(f"data: saturation must be a range [low, high] with 0 <= low <= high, got {list(saturation)}")
        self.save_hyperparameters()
        self.train_dir = train_dir
        self.val_dir = val_dir
        self.crop_size = crop_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.small_images = small_images
        self.val_center_crop = val_center_crop
        self.val_max_images = val_max_images
        self.repeat = repeat
        self.saturation = (float(saturation[0]), float(saturation[1]))
        self.train_set: RandomCropDataset | None = None
        self.val_set: WholeImageDataset | None = None
        self._loader_generator: torch.Generator | None = None

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.train_set is None:
            paths = sample_photo_paths("train") if self.train_dir is None else find_images(self.train_dir, role="train_dir")
            # One generator for the whole run, so reloaded dataloaders continue the stream instead of repeating it.
            loader_seed, crop_seed = np.random.SeedSequence([self.seed, self._rank()]).generate_state(2, np.uint64)
            self._loader_generator = torch.Generator().manual_seed(int(loader_seed))
            self.train_set = RandomCropDataset(
                paths, self.crop_size, self.small_images, self.repeat, int(crop_seed), self.saturation
            )
        if self.val_set is None:
            paths = sample_photo_paths("val") if self.val_dir is None else find_images(self.val_dir, role="val_dir")
            self.val_set = WholeImageDataset(paths[: self.val_max_images], self.val_center_crop)

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            raise RuntimeError("call setup('fit') before train_dataloader()")
        world_size = self.trainer.world_size if self.trainer is not None else 1
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            shuffle=True,
            generator=self._loader_generator,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            # a dataset smaller than one (global) batch must still give a batch
            drop_last=len(self.train_set) >= self.batch_size * world_size,
        )

    def val_dataloader(self) -> DataLoader:
        if self.val_set is None:
            raise RuntimeError("call setup() before val_dataloader()")
        # batch size 1: validation images differ in size
        return DataLoader(self.val_set, batch_size=1, shuffle=False, num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def _rank(self) -> int:
        return self.trainer.global_rank if self.trainer is not None else 0


def _cover(image: torch.Tensor, size: int, policy: SmallImagePolicy) -> torch.Tensor:
    """Make both sides at least ``size`` so a crop fits, without ever dropping an image."""
    _, height, width = image.shape
    if height >= size and width >= size:
        return image
    if policy == "pad":
        pad_h, pad_w = max(size - height, 0), max(size - width, 0)
        padding = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
        return F.pad(image[None], padding, mode="replicate")[0]
    scale = size / min(height, width)
    target = (max(size, round(height * scale)), max(size, round(width * scale)))
    resized = F.interpolate(image[None], size=target, mode="bicubic", align_corners=False, antialias=True)[0]
    return resized.clamp(0, 1)  # bicubic overshoots
