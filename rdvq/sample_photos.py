"""The zero-download default dataset: real photographs bundled inside the scikit-image wheel.

Only files shipped in the package directory are used (nothing is fetched, pooch is never called), and
only natural photographs: text, logos, charts, binary and synthetic images would teach a codec the
wrong statistics. Grayscale photographs are left out too: with so few images they would teach a colour
codec to drop colour. The split is fixed and disjoint so validation numbers are comparable across runs.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Literal

from rdvq.errors import ConfigError

__all__ = ["sample_photo_paths"]

_VAL = ("astronaut.png", "coffee.png", "chelsea.png")
_TRAIN = (
    "rocket.jpg",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "ihc.png",
)


def sample_photo_paths(split: Literal["train", "val"]) -> list[Path]:
    """Paths of the bundled photographs of one split (val: 3 colour photos; train: 6 others).

    The files are looked up in the ``skimage/data`` package directory rather than
    ``skimage.data.data_dir``, which points at pooch's download cache when pooch is installed.
    """
    if split not in ("train", "val"):
        raise ConfigError(f"sample photo split must be 'train' or 'val', got {split!r}")
    directory = Path(str(files("skimage.data")))
    paths = [directory / name for name in (_TRAIN if split == "train" else _VAL)]
    missing = [path.name for path in paths if not path.is_file()]
    if missing:
        raise ConfigError(f"scikit-image sample photos missing from {directory}: {', '.join(missing)} (reinstall scikit-image)")
    return paths
