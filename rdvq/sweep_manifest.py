"""The manifest of a lambda/tau sweep: which checkpoint holds which RD point.

The sweep callback writes it beside the point checkpoints (``<run>/checkpoints/rd_sweep.json``) and
rewrites it after every point; ``rdvq eval`` accepts it in place of a list of checkpoints and names
each point by its lambda and tau. Checkpoint names are relative to the manifest and the run is named
by the folder the manifest is in, so a run folder can be moved or renamed.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from rdvq.atomic import atomic_write_bytes
from rdvq.errors import ConfigError

MANIFEST_NAME = "rd_sweep.json"
KIND = "rdvq-rd-sweep"
VERSION = 1


@dataclass(frozen=True)
class SweepPoint:
    index: int
    lmbda: float
    tau: float | None  # None: the stage has no temperature
    step: int  # global step at which the point's checkpoint was written
    checkpoint: str  # file name, relative to the manifest's folder

    @property
    def label(self) -> str:
        return point_label(self.lmbda, self.tau)


def point_label(lmbda: float, tau: float | None) -> str:
    return f"λ={lmbda:g}" + ("" if tau is None else f" τ={tau:g}")


def checkpoint_name(index: int, lmbda: float, tau: float | None) -> str:
    """``rd_point<i>_lambda<λ>[_tau<τ>].ckpt``: the point's index and its RD parameters."""
    return f"rd_point{index}_lambda{lmbda:g}" + ("" if tau is None else f"_tau{tau:g}") + ".ckpt"


def write_manifest(path: str | os.PathLike, points: list[SweepPoint]) -> None:
    document = {"kind": KIND, "version": VERSION, "points": [asdict(p) for p in points]}
    atomic_write_bytes(Path(path), (json.dumps(document, indent=2) + "\n").encode())


def read_manifest(path: str | os.PathLike) -> tuple[str, list[tuple[Path, SweepPoint]]]:
    """(run name, [(checkpoint path, point)]) of a manifest, checked for its kind and version; the run
    is named by its folder (``<run>/checkpoints/rd_sweep.json``)."""
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read sweep manifest {path}: {type(exc).__name__}") from None
    if not isinstance(document, dict) or document.get("kind") != KIND:
        raise ConfigError(f"{path} is not an rdvq sweep manifest")
    if document.get("version") != VERSION:
        raise ConfigError(f"{path} is sweep manifest version {document.get('version')}, this build reads {VERSION}")
    try:
        points = [SweepPoint(**entry) for entry in document["points"]]
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: malformed sweep manifest ({exc})") from None
    if not points:
        raise ConfigError(f"{path}: the sweep has not finished any point yet")
    folder = path.resolve().parent
    run = folder.parent.name if folder.name == "checkpoints" else folder.name
    return run, [(path.parent / p.checkpoint, p) for p in points]
