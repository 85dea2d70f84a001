"""One timed batch at a time on this machine: a lock shared by every measuring process.

On a 2-core machine two processes timing candidates at once slow each other down, and with
SCHED_FIFO (``--realtime``) they still compete for the same cores: the latencies of both then
describe a machine running two benchmarks. Every runner built by
:func:`~ms_meta.tuning.measure.make_local_runner` therefore takes an exclusive ``flock`` on one
lock file for each batch it times, and so do the whole-model benchmark's timing processes
(which is why this module imports nothing of TVM: a process timing PyTorch loads no other
runtime).
Building stays parallel; only timing is serialized. The kernel drops the lock when its holder
exits, even on ``kill -9``.

``$MS_META_MEASURE_LOCK`` names the lock file (default: ``ms-meta-measure.lock`` in the
system's temporary directory); ``none`` turns the lock off.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["lock_path", "measurement_lock"]

logger = logging.getLogger(__name__)

LOCK_ENV = "MS_META_MEASURE_LOCK"
# a wait longer than this is logged once per batch, so a stalled run says why
SLOW_WAIT_SECONDS = 30.0


def lock_path() -> Path | None:
    """The machine-wide measurement lock file, or None when ``$MS_META_MEASURE_LOCK=none``."""
    value = os.environ.get(LOCK_ENV, "").strip()
    if value.lower() == "none":
        return None
    return Path(value) if value else Path(tempfile.gettempdir()) / "ms-meta-measure.lock"


@contextlib.contextmanager
def measurement_lock() -> Iterator[float]:
    """Hold the measurement lock over a ``with`` block; yields the seconds spent waiting.

    A lock file that cannot be opened (a read-only temporary directory) is skipped with a
    warning: measuring unserialized beats not measuring.
    """
    path = lock_path()
    if path is None:
        yield 0.0
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        logger.warning("measuring without the machine-wide lock (%s: %s)", path, err)
        yield 0.0
        return
    started = time.perf_counter()
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("waiting for another process's measurements to finish (%s)", path)
            fcntl.flock(fd, fcntl.LOCK_EX)
        waited = time.perf_counter() - started
        if waited > SLOW_WAIT_SECONDS:
            logger.warning("waited %.0f s for another process's measurements", waited)
        yield waited
    finally:
        os.close(fd)  # closing the descriptor releases the lock
