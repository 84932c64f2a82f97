"""Reading and writing images at the edge of the system.

Training data and the codec CLI both read user files, so every way a file can be unusable ends in one
:class:`~rdvq.errors.ImageReadError` with a one-line message naming the path, and every pixel format
PIL can open becomes the same thing: a float32 RGB tensor ``(3, H, W)`` in ``[0, 1]``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from rdvq.atomic import atomic_write
from rdvq.errors import ConfigError, ImageReadError

__all__ = ["IMAGE_EXTENSIONS", "ImageWarning", "find_images", "read_image", "to_uint8", "write_png"]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "PA")


class ImageWarning(UserWarning):
    """An image was read, but something in it (e.g. transparency) was discarded."""


def read_image(path: str | os.PathLike, *, max_pixels: int = 100_000_000) -> torch.Tensor:
    """Read an image file as a float32 RGB tensor ``(3, H, W)`` in ``[0, 1]``.

    Conversions: gray (``1``, ``L``) is replicated to three channels; palettes are expanded;
    CMYK/YCbCr/... go through PIL's RGB conversion; 16-bit gray (``I;16*`` and ``I``, which is how
    PIL reports some 16-bit files) is divided by 65535 so no precision is lost (values outside
    ``[0, 65535]`` are clipped); float images (``F``) are used as they are when already in ``[0, 1]``,
    otherwise negatives are clipped and the image is divided by its maximum. An alpha channel (or
    palette/tRNS transparency) is dropped, with one :class:`ImageWarning` when it was not fully
    opaque. The EXIF orientation is applied. Multi-frame files give their first frame.
    Pillow decodes 16-bit RGB as 8-bit RGB; that precision is lost before this function sees it.
    ``max_pixels`` above PIL's own decompression-bomb limit (``2 * Image.MAX_IMAGE_PIXELS``) has no effect.
    """
    path = Path(path)
    try:
        if path.is_dir():
            raise _error(path, "is a directory, not an image file")
        if path.stat().st_size == 0:  # a missing file fails here with its OS message
            raise _error(path, "file is empty")
        with warnings.catch_warnings():
            # max_pixels is the limit that applies; PIL's warning below its hard limit is noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width == 0 or height == 0:
                    raise _error(path, f"image has zero size ({width}x{height})")
                if width * height > max_pixels:
                    raise _error(path, f"image has {width * height} pixels ({width}x{height}), more than the limit of {max_pixels}")
                image.load()  # full decode here, so truncated or corrupt data fails now
                image = ImageOps.exif_transpose(image)
                array, alpha_discarded = _to_rgb_array(image)
    except ImageReadError:
        raise
    except Image.DecompressionBombError as exc:
        raise _error(path, f"rejected by PIL's decompression-bomb check ({exc})") from exc
    except Image.UnidentifiedImageError as exc:
        raise _error(path, "not an image or an unknown format") from exc
    except OSError as exc:
        reason = exc.strerror if exc.errno is not None else f"corrupt or truncated image data ({exc})"
        raise _error(path, reason) from exc
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - PIL plugins raise many types on bad data; none may escape
        raise _error(path, f"corrupt, truncated or unsupported image data ({type(exc).__name__}: {exc})") from exc
    if alpha_discarded:
        warnings.warn(f"{path}: discarded the alpha channel (transparency) of the image", ImageWarning, stacklevel=2)
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def find_images(directory: str | os.PathLike, *, role: str = "image directory") -> list[Path]:
    """All image files under ``directory``, recursively, sorted so that runs see the same order.

    Symlinked folders are followed (each real folder once); hidden files and folders (``.*``, e.g.
    macOS ``._x.jpg`` resource forks) are skipped because they are not images.
    ``role`` names the directory in the error raised when it is missing or holds no images.
    """
    root = Path(directory)
    if not root.is_dir():
        reason = "is not a directory" if root.exists() else "does not exist"
        raise ConfigError(f"{role} {root} {reason}")
    found, visited = [], set()
    for folder, subfolders, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in visited:  # a symlink cycle or a folder linked twice
            subfolders[:] = []
            continue
        visited.add(real)
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        found += [Path(folder, name) for name in names if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS]
    if not found:
        raise ConfigError(f"{role} {root} contains no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return sorted(found)


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """Quantize ``[0, 1]`` floats to 8 bits (round to nearest), as PSNR and PNG output both expect."""
    return image.clamp(0, 1).mul(255).round().to(torch.uint8)


def write_png(path: str | os.PathLike, image: torch.Tensor) -> None:
    """Write a ``(3, H, W)`` float tensor in ``[0, 1]`` as an 8-bit RGB PNG, atomically (see
    :func:`rdvq.atomic.atomic_write`: complete or not at all, usual permissions)."""
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"write_png expects an image of shape (3, H, W), got {tuple(image.shape)}")
    pixels = Image.fromarray(to_uint8(image.detach()).permute(1, 2, 0).cpu().numpy())
    atomic_write(path, lambda handle: pixels.save(handle, format="PNG"))


def _to_rgb_array(image: Image.Image) -> tuple[np.ndarray, bool]:
    """Convert a decoded PIL image to a float32 ``(H, W, 3)`` array in ``[0, 1]``; also say whether
    a non-opaque alpha channel was dropped."""
    if image.mode in _SIXTEEN_BIT_MODES:
        gray = np.clip(np.asarray(image).astype(np.float32) / 65535.0, 0.0, 1.0)
        return _replicate(gray), False
    if image.mode == "F":
        gray = np.asarray(image, dtype=np.float32)
        if not np.isfinite(gray).all():
            raise ValueError("float image contains NaN or infinite values")
        if gray.min() < 0.0 or gray.max() > 1.0:
            gray = np.clip(gray, 0.0, None)
            peak = gray.max()
            if peak > 0:
                gray = gray / peak
        return _replicate(gray), False
    if image.mode in ("1", "L") and "transparency" not in image.info:
        return _replicate(np.asarray(image.convert("L"), dtype=np.float32) / 255.0), False
    alpha_discarded = False
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        image = image.convert("RGBA")  # palette / tRNS transparency becomes a real alpha channel too
        alpha_discarded = image.getchannel("A").getextrema()[0] < 255
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0, alpha_discarded


def _replicate(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)


def _error(path: Path, reason: str) -> ImageReadError:
    return ImageReadError(" ".join(f"cannot read image {path}: {reason}".split()))
