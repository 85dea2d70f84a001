"""The append-only files of one task folder: the writers' lock, torn-tail repair, line counts,
and the keys that tell two measured schedules apart.

Records are only ever appended. Two writers (two collectors on overlapping shards, or a
collector and ``ms-meta db merge --append``) must not append to one task at once: their lines
would interleave and ``meta.json``'s line ranges would name the wrong records. Every writer
therefore holds the task's lock (an ``flock`` on :data:`~ms_meta.data.layout.LOCK_FILE`) while
it appends.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

from ms_meta.data.layout import LOCK_FILE, RECORD_FILE, WORKLOAD_FILE
from ms_meta.errors import MsMetaError

__all__ = [
    "TaskLockedError",
    "count_lines",
    "existing_trace_keys",
    "line_trace_key",
    "repair_torn_tail",
    "repaired_count",
    "task_lock",
    "trace_key",
]

logger = logging.getLogger(__name__)

# How often a writer that waits for a task's lock tries again.
_LOCK_POLL_SEC = 0.2


class TaskLockedError(MsMetaError, RuntimeError):
    """Another process is appending to this task's records."""


@contextlib.contextmanager
def task_lock(task_dir: Path, wait_sec: float = 0.0) -> Iterator[None]:
    """Hold the lock of a task folder while appending to its records.

    Parameters
    ----------
    task_dir : Path
        The task folder (created if missing).
    wait_sec : float
        How long to wait for another writer to let go; 0 refuses at once.

    Raises
    ------
    TaskLockedError
        When another process still holds the lock after ``wait_sec``.
    """
    task_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_sec
    with open(task_dir / LOCK_FILE, "w") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TaskLockedError(
                        f"{task_dir} is being collected by another process"
                    ) from None
                time.sleep(_LOCK_POLL_SEC)
        yield


def count_lines(path: Path) -> int:
    """Non-blank lines of a file; 0 when it does not exist."""
    if not path.exists():
        return 0
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def repair_torn_tail(path: Path) -> bool:
    """Cut a last line that a kill left half-written; returns whether anything was cut.

    JSONDatabase refuses to load a file with a torn line, and the next append would glue a
    record onto it. Records end with a newline, so everything after the last one is torn.
    """
    if not path.exists() or path.stat().st_size == 0:
        return False
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return False
        f.seek(0)
        data = f.read()
        keep = data.rfind(b"\n") + 1
        f.truncate(keep)
    logger.warning("%s: dropped a torn last line (%d bytes)", path, len(data) - keep)
    return True


def repaired_count(task_dir: Path) -> int:
    """Records of a task once torn tails are cut (call it holding the task lock)."""
    repair_torn_tail(task_dir / WORKLOAD_FILE)
    repair_torn_tail(task_dir / RECORD_FILE)
    return count_lines(task_dir / RECORD_FILE)


def _canonical(obj):
    """The JSON value as it reads back from a database file, where booleans are 0/1."""
    if isinstance(obj, bool):
        return int(obj)
    if isinstance(obj, list):
        return [_canonical(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _canonical(v) for k, v in obj.items()}
    return obj


def trace_key(trace) -> str:
    """De-duplication key of a TVM trace; equal to :func:`line_trace_key` of its record line."""
    from ms_meta.tuning.plain import to_plain

    return json.dumps(_canonical(to_plain(trace.as_json(remove_postproc=False))), sort_keys=True)


def line_trace_key(line: str) -> str:
    """De-duplication key of a record line ``[workload_index, [trace, ...]]``."""
    return json.dumps(_canonical(json.loads(line)[1][0]), sort_keys=True)


def existing_trace_keys(path: Path) -> set[str]:
    """The :func:`line_trace_key` of every record line of a file (none when it is missing)."""
    keys: set[str] = set()
    if not path.exists():
        return keys
    with open(path) as f:
        for line in f:
            try:
                keys.add(line_trace_key(line))
            except (ValueError, IndexError, TypeError):
                continue  # not a record line; repair_torn_tail removes torn ones
    return keys
