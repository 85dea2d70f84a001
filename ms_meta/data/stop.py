"""Stopping a collection without losing or falsifying a record.

A terminal's Ctrl-C reaches every process of the group: the collector and the worker
processes that build and time candidates. A worker it kills would turn a valid schedule into a
failed run, and an exception raised while TVM's C++ search calls back into Python ends in a
traceback. So the collector measures in a thread whose workers inherit a blocked SIGINT, only
sets a flag on the first request (:class:`StopRequest`; the batch in flight is then dropped),
and on a second one aborts at once, except while records are being written.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["StopRequest", "run_without_sigint", "writing"]


class StopRequest(threading.Event):
    """A request to stop (set it), which a second request can turn into an abort.

    An abort calls ``on_abort`` (which should end the process) at once, or, while records
    are being written (:meth:`writing`), as soon as they and ``meta.json`` are complete, so
    that an abort never leaves records that ``meta.json`` does not account for.
    """

    def __init__(self, on_abort: Callable[[], None]) -> None:
        super().__init__()
        self._on_abort = on_abort
        self._writing = 0
        self._aborted = False

    def abort(self) -> None:
        """Abort now, or once the records being written are complete."""
        self.set()
        if self._writing:
            self._aborted = True
        else:
            self._on_abort()

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Defer an abort until the block ends."""
        self._writing += 1
        try:
            yield
        finally:
            self._writing -= 1
            if self._aborted and not self._writing:
                self._on_abort()


def writing(stop: threading.Event | None):
    """:meth:`StopRequest.writing` of ``stop``, or nothing for a plain event."""
    return stop.writing() if isinstance(stop, StopRequest) else contextlib.nullcontext()


def run_without_sigint(measure: Callable[[], Any]) -> Any:
    """``measure()`` in a thread that has SIGINT blocked, so that the builder's and runner's
    worker processes, started from it, inherit the block.

    Ctrl-C in a terminal signals the whole process group; a worker it reaches dies, and a
    valid schedule would come back as a failed run (with the worker's traceback). This
    thread keeps handling signals meanwhile, so a stop request is seen at once.
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = measure()
        except BaseException as err:  # handed to the calling thread
            outcome["error"] = err

    try:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    except (AttributeError, OSError, ValueError):  # no POSIX signal masks: measure here
        return measure()
    try:
        worker = threading.Thread(target=run, name="ms-meta-measure", daemon=True)
        worker.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    while worker.is_alive():
        worker.join(0.1)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
