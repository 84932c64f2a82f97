"""Data modules: image folders with random training crops and whole validation images, defaulting to
scikit-image's bundled photographs so nothing has to be downloaded."""

from datamodules.image_folder import ImageFolderDataModule, RandomCropDataset, WholeImageDataset
from rdvq.image_io import IMAGE_EXTENSIONS, find_images
from rdvq.sample_photos import sample_photo_paths

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageFolderDataModule",
    "RandomCropDataset",
    "WholeImageDataset",
    "find_images",
    "sample_photo_paths",
]
