"""How much CPU other processes and the hypervisor took while kernels were being timed.

A timed run on this 2-core machine is slowed 2-4x when anything else runs beside it (a test, a
benchmark, pretraining), and nothing in MetaSchedule's runner notices. :class:`ForeignLoadMeter`
reads Linux's accounting around a block of code: the CPU time of the whole machine (from
``/proc/stat``), minus that of this process and its descendants (the runner's worker), plus the
time the hypervisor took (steal). The collector re-runs a batch measured under such load.

Linux only; elsewhere the meter reads ``None`` and nothing is re-run.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

__all__ = [
    "ContentionGuard",
    "ForeignLoad",
    "ForeignLoadMeter",
]

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

# /proc/stat's cpu line: user nice system idle iowait irq softirq steal guest guest_nice;
# guest time is already inside user and nice.
_BUSY_FIELDS = (0, 1, 2, 5, 6)
_STEAL_FIELD = 7


def _machine_ticks() -> tuple[int, int] | None:
    """(busy, steal) clock ticks of all CPUs since boot, or None without /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:]
    except OSError:
        return None
    values = [int(v) for v in fields]
    steal = values[_STEAL_FIELD] if len(values) > _STEAL_FIELD else 0
    return sum(values[i] for i in _BUSY_FIELDS), steal


def _process_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, CPU ticks of the process and of its reaped children)."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                text = f.read()
        except OSError:
            continue  # the process ended meanwhile
        # The command name, in parentheses, may contain spaces: the fields follow the last ')'.
        fields = text[text.rfind(")") + 2 :].split()
        # fields[1] is ppid; fields[11:15] are utime, stime, cutime, cstime
        table[int(entry)] = (int(fields[1]), sum(int(v) for v in fields[11:15]))
    return table


def _own_tree_ticks(root: int) -> int:
    """CPU ticks of ``root`` and all its descendants, living or reaped."""
    table = _process_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        if pid in table:
            total += table[pid][1]
        stack.extend(children.get(pid, ()))
    return total


@dataclass
class ForeignLoad:
    """CPU taken by others over an interval, in cores (1.0 = one core busy all the time)."""

    other_processes: float
    steal: float
    seconds: float
    own: float = 0.0  # this process and its descendants, for comparison

    @property
    def cores(self) -> float:
        return self.other_processes + self.steal


class ForeignLoadMeter:
    """Measures :class:`ForeignLoad` over a ``with`` block; ``load`` is None where the
    accounting cannot be read (not Linux)."""

    def __init__(self) -> None:
        self.load: ForeignLoad | None = None
        self._start: tuple | None = None

    def __enter__(self) -> ForeignLoadMeter:
        machine = _machine_ticks()
        if machine is not None:
            self._start = (time.perf_counter(), machine, _own_tree_ticks(os.getpid()))
        return self

    def __exit__(self, *exc) -> None:
        if self._start is None:
            return
        machine = _machine_ticks()
        if machine is None:
            return
        own = _own_tree_ticks(os.getpid())
        started, (busy0, steal0), own0 = self._start
        seconds = time.perf_counter() - started
        if seconds <= 0:
            return
        # Another process's ticks may be sampled a little before or after this one's: clamp at zero.
        others = max(0, (machine[0] - busy0) - (own - own0))
        self.load = ForeignLoad(
            other_processes=others / _CLOCK_TICKS / seconds,
            steal=(machine[1] - steal0) / _CLOCK_TICKS / seconds,
            seconds=seconds,
            own=(own - own0) / _CLOCK_TICKS / seconds,
        )


@dataclass(frozen=True)
class ContentionGuard:
    """When to distrust a batch's timings, and how often to re-time it.

    Parameters
    ----------
    max_foreign_cores : float
        A batch timed while other processes took more than this many cores on average is
        re-run.
    max_steal_cores : float
        The same for the hypervisor's steal. It is looser: on this VM steal is often 0.1-0.4
        cores with nothing else running, and it slows a run by its share of the time, where
        another process on the same 2 cores slowed runs 2-4x.
    max_reruns : int
        Re-runs per batch; after the last, the least disturbed measurement is kept.
    wait_seconds : float
        Pause before a re-run, so that a short burst of other work can end.
    """

    max_foreign_cores: float = 0.25
    max_steal_cores: float = 0.5
    max_reruns: int = 2
    wait_seconds: float = 2.0

    def excess(self, load: ForeignLoad) -> float:
        """How far ``load`` is over the limits (0: within them), in cores."""
        return max(
            0.0,
            load.other_processes - self.max_foreign_cores,
            load.steal - self.max_steal_cores,
        )
