"""Atomic file writes: a reader (or a crash) sees the old file or the complete new one, never a part.

Every file rdvq writes for a user (checkpoints, ``.rdvq`` files, PNGs) goes through
:func:`atomic_write`: the bytes go to a temporary file in the target's directory, are flushed to
disk, and the temporary file is renamed over the target. Permissions follow what a plain
``open(path, "wb")`` would give: a new file gets the process umask's default mode (not
``tempfile``'s 0600), and an existing file keeps its mode.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Create or replace ``path`` with what ``write`` writes to the handle it is given.

    The parent directory is created if needed. On any error the temporary file is removed and the
    target is left as it was; OS errors (permissions, a parent that is a file) propagate unchanged.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        existing_mode = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        existing_mode = None
    try:
        with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as handle:
            if existing_mode is not None:
                os.fchmod(handle.fileno(), existing_mode)
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """:func:`atomic_write` for a bytes object."""
    atomic_write(path, lambda handle: handle.write(data))
