"""Data modules: image folders with random training crops and whole validation images, defaulting to
scikit-image's bundled photographs so nothing has to be downloaded."""

from datamodules.image_folder import IMAGE_EXTENSIONS, ImageFolderDataModule, RandomCropDataset, WholeImageDataset, find_images
from datamodules.sample_photos import sample_photo_paths

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageFolderDataModule",
    "RandomCropDataset",
    "WholeImageDataset",
    "find_images",
    "sample_photo_paths",
]
