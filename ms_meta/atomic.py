"""Atomic file writes: the one helper every checkpoint, library, split, cache and report uses.

A reader, or a crash halfway through a write, must never see a half-written file: the data is
written to a temporary file in the destination's directory and moved over the destination with
``os.replace`` (atomic on POSIX within one file system). The temporary file is removed when the
writer raises, and the destination is then left as it was.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_json", "atomic_write_text"]


def atomic_write(path: str | os.PathLike, write: Callable[[str], Any], mode: int = 0o644) -> Path:
    """Call ``write(tmp_path)`` to fill a temporary file, then move it over ``path``.

    Parameters
    ----------
    path : str or PathLike
        The destination; its parent directories are created.
    write : callable
        Writes the whole content to the temporary path it is given (``torch.save``,
        ``np.savez_compressed``, ``open(...).write`` ...).
    mode : int
        Permission bits of the result (``mkstemp`` makes private files; these are ordinary
        data files).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    return atomic_write(path, write)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 1) -> Path:
    """Write ``obj`` as JSON (sorted keys, trailing newline) to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=True) + "\n")
