"""A progress line with rate and ETA that also works when output goes to a log file."""

from __future__ import annotations

import sys
import time

__all__ = ["Progress"]


def _fmt_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class Progress:
    """``done/total unit  rate/s  ETA  note`` on stderr.

    On a terminal the line is redrawn in place; otherwise (a background job writing to a log)
    a full line is written at most every ``log_every`` seconds.
    """

    def __init__(self, total: int, unit: str = "items", log_every: float = 30.0) -> None:
        self.total = max(total, 0)
        self.unit = unit
        self.done = 0
        self.start = time.perf_counter()
        self.log_every = log_every
        self._last_log = 0.0
        self._tty = sys.stderr.isatty()

    def update(self, n: int = 1, note: str = "") -> None:
        self.done += n
        now = time.perf_counter()
        if self._tty or now - self._last_log >= self.log_every or self.done >= self.total:
            self._last_log = now
            self._draw(note)

    def follow(self, done: int, total: int, note: str = "") -> None:
        """Show ``done`` of ``total``: the ``progress(done, total[, note])`` callback of the
        library functions that report their own count (``build_dataset``, ``pretrain``, ...)."""
        self.total = total
        self.update(done - self.done, note)

    def _draw(self, note: str) -> None:
        elapsed = time.perf_counter() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else float("inf")
        eta = _fmt_duration(left) if left != float("inf") else "?"
        width = 24
        filled = int(width * min(self.done, self.total) / self.total) if self.total else width
        bar = "#" * filled + "-" * (width - filled)
        line = (
            f"[{bar}] {self.done}/{self.total} {self.unit} {rate:.2f}/s "
            f"elapsed {_fmt_duration(elapsed)} ETA {eta} {note}"
        )
        if self._tty:
            sys.stderr.write("\r" + line[:160].ljust(160))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self._tty:
            sys.stderr.write("\n")
            sys.stderr.flush()
