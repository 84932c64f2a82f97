"""Where a result came from: the command, commit, date, machine and library versions.

Every benchmark script stores :func:`provenance` beside its numbers, so a table rendered from a
results file can say which run on which machine produced it.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

LIBRARIES = ("torch", "pytorch-lightning", "compressai", "constriction", "numpy", "lpips", "dists-pytorch")


def _git(*args: str, cwd: Path) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True, cwd=cwd).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def provenance(
    inputs: dict[str, str | os.PathLike] | None = None, code: str | os.PathLike | None = None,
    libraries: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The run's command, commit (``+dirty`` when the tree differs) of the tree at ``code`` (default:
    this repository; a worktree when a script measures another commit's code), UTC date, machine,
    the versions of the usual libraries and of ``libraries``, and the SHA-256 of each named input file."""
    tree = Path(code) if code is not None else Path(__file__).resolve().parent
    versions = {}
    for name in LIBRARIES + libraries:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    commit = _git("rev-parse", "--short", "HEAD", cwd=tree)
    if _git("status", "--porcelain", "--untracked-files=no", cwd=tree):
        commit += "+dirty"
    return {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "commit": commit,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpu": _cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()},
        "versions": versions,
        "inputs": {name: file_sha256(path) for name, path in (inputs or {}).items()},
    }
