"""Caches of append-only record files: ``.npz`` files that stay valid while the file only grows.

A cache file stores which record lines it covers and the SHA-256 of those lines' bytes. Record
files are append-only (the collector adds lines while others read them), so a file that only
grew re-uses the cached prefix and one that was rewritten is processed again. Shared by the
graph data set (:mod:`ms_meta.data.dataset`) and the PerStoreFeature cache
(:mod:`ms_meta.eval.baselines`).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ms_meta.atomic import atomic_write
from ms_meta.data import layout

logger = logging.getLogger(__name__)


@dataclass
class Snapshot:
    """The record file's (decompressed) bytes as read once, before the reader parses it.

    The reader reads the file again afterwards; since record files only grow, its first
    :attr:`complete_lines` lines are exactly the ones here, so the cache may claim them.
    """

    data: bytes
    ends: np.ndarray  # byte offset just past the newline of each complete line
    _digests: dict[int, str] = field(default_factory=dict, repr=False)

    @property
    def complete_lines(self) -> int:
        return int(self.ends.shape[0])

    def digest(self, lines: int) -> str:
        """SHA-256 of the first ``lines`` complete lines (memoized: the workloads of one
        database usually ask for the same prefix)."""
        if lines not in self._digests:
            end = int(self.ends[lines - 1]) if lines > 0 else 0
            self._digests[lines] = hashlib.sha256(memoryview(self.data)[:end]).hexdigest()
        return self._digests[lines]


def read_snapshot(path: Path | None) -> Snapshot:
    data = b""
    if path is not None:
        try:
            if path.name.endswith(layout.GZIP_SUFFIX):
                chunks = []
                with gzip.open(path, "rb") as f:
                    try:
                        while chunk := f.read(1 << 20):
                            chunks.append(chunk)
                    except (EOFError, OSError, zlib.error):
                        pass  # a gzip member being written: keep what decompressed
                data = b"".join(chunks)
            else:
                with open(path, "rb") as f:
                    data = f.read()
        except OSError:
            data = b""  # the reader reports the unreadable file
    ends = np.flatnonzero(np.frombuffer(data, np.uint8) == ord("\n")).astype(np.int64) + 1
    return Snapshot(data, ends)


def cache_path(cache_dir: Path, identity: dict[str, Any], task: str) -> Path:
    """``<cache_dir>/<task slug>-<hash of identity>.npz``."""
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode("utf-8")).hexdigest()[:20]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", task).strip("._")[:60] or "task"
    return cache_dir / f"{slug}-{key}.npz"


def prefix_still_valid(
    meta: dict[str, Any], identity: dict[str, Any], snapshot: Snapshot, path: Path, redo: str
) -> bool:
    """Whether a cache file's ``meta`` belongs to ``identity`` and the record file still starts
    with the lines it covers (logged with ``redo``, e.g. "re-featurizing", when not)."""
    if meta.get("identity") != identity:
        logger.info("%s belongs to other records; ignoring it", path)
        return False
    covered = int(meta["covered_lines"])
    if covered > snapshot.complete_lines or snapshot.digest(covered) != meta["prefix_sha256"]:
        logger.info("%s: the record file changed (not only appended); %s", path, redo)
        return False
    return True


def write_npz_atomically(path: Path, arrays: dict[str, np.ndarray], what: str) -> bool:
    """``np.savez_compressed`` to ``path`` atomically (:func:`ms_meta.atomic.atomic_write`);
    ``False`` (with a warning naming ``what``) when the file cannot be written."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)

    try:
        atomic_write(path, write)
        return True
    except OSError as err:
        logger.warning("cannot write the %s %s: %s", what, path, err)
        return False
