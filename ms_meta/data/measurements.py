"""Which measurement each record of a task folder comes from, and which records to leave out.

Latencies measured on different machines, or at different times on a shared one, are not
comparable, so the data set keeps each measurement's labels apart; and batches that the
collector's contention guard could only time while other processes took CPU are left out.
Both facts are read from the task folder's ``meta.json``. TVM-free.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["disturbed_line_mask", "line_timing", "measurement_sources", "record_latency"]


def record_latency(run_secs: Sequence[float] | None, failed: bool) -> float:
    """Seconds of one record: the minimum over its repeats, ``inf`` when it failed."""
    if failed or not run_secs:
        return math.inf
    return float(min(run_secs))


def disturbed_line_mask(meta: Mapping[str, Any] | None, lines: np.ndarray) -> np.ndarray:
    """Which record lines the collector timed only while other processes took CPU.

    ``meta.json``'s ``disturbed_lines`` lists ``[first, last]`` line ranges (1-based,
    inclusive) of batches that its contention guard kept although every attempt was disturbed
    (see :mod:`ms_meta.tuning.contention`).

    Shapes: ``lines [n]`` -> ``[n]`` bool.
    """
    mask = np.zeros(len(lines), bool)
    ranges = (meta or {}).get("disturbed_lines") or []
    if not isinstance(ranges, list):
        return mask
    for item in ranges:
        if isinstance(item, (list, tuple)) and len(item) == 2:
            first, last = int(item[0]), int(item[1])
            mask |= (lines >= first) & (lines <= last)
    return mask


def measurement_sources(
    meta: Mapping[str, Any] | None, lines: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """Which measurement each record line of a task directory comes from.

    Latencies measured on different machines, or at different times on a shared one, are not
    comparable: the seed records, measured on another machine of the same type, time the same
    schedules about 2x faster than this project's collector (median over the 163 schedules
    measured by both), and a later VM of the Zen 4 type timed earlier VMs' records at 0.7-0.8x.
    Normalized labels and ranking pairs must therefore stay within one measurement.

    Source 0 is what was measured into the directory itself by collectors that did not name
    their machine (before commit ff34129, 2026-12-04). Source ``i >= 1`` is the ``i``-th of
    the names returned:
    first each entry of ``meta.json``'s ``ingested`` map, whose records occupy the lines from
    its ``first_line`` on (entries written before ``first_line`` was recorded were ingested
    into empty directories, one after another, so they start at line 1); then each distinct
    ``machine`` named by ``meta.json``'s ``sources`` entries (the collector's record of where
    it timed which lines), told apart by the runtime thread count where an entry names one
    (``"<machine> @ <n> threads"``: one schedule runs about twice as fast on two threads) and
    by cold caches (``", cold caches"``).

    Shapes: ``lines [n]`` (1-based) -> ``sources [n]`` int64, with the other sources' names.
    """
    meta = meta or {}
    ingested = meta.get("ingested") or {}
    sources = np.zeros(len(lines), np.int64)
    names: list[str] = []
    next_first = 1
    if isinstance(ingested, Mapping):
        for name, entry in ingested.items():
            if not isinstance(entry, Mapping):
                continue
            count = int(entry.get("records", 0) or 0)
            first = int(entry.get("first_line", next_first) or next_first)
            names.append(str(name))
            sources[(lines >= first) & (lines < first + count)] = len(names)
            next_first = first + count
    collected = meta.get("sources") or []
    for entry in collected if isinstance(collected, list) else []:
        machine = entry.get("machine") if isinstance(entry, Mapping) else None
        if not machine:
            continue
        if entry.get("threads"):
            machine = f"{machine} @ {int(entry['threads'])} threads"
        if entry.get("cache_flush"):
            machine = f"{machine}, cold caches"
        if machine not in names:
            names.append(str(machine))
        first, last = entry["lines"]
        sources[(lines >= first) & (lines <= last)] = names.index(machine) + 1
    return sources, names


def line_timing(meta: Mapping[str, Any] | None, lines: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How each record line was timed, from ``meta.json``'s ``sources`` entries: the runtime
    thread count (0 where no entry names one: TVM's default then, half the logical CPUs on
    x86, one thread on a 2-vCPU guest) and whether the caches were flushed before each run.

    Shapes: ``lines [n]`` (1-based) -> ``threads [n]`` int64, ``cold [n]`` bool.
    """
    threads = np.zeros(len(lines), np.int64)
    cold = np.zeros(len(lines), bool)
    collected = (meta or {}).get("sources") or []
    for entry in collected if isinstance(collected, list) else []:
        if not isinstance(entry, Mapping) or "lines" not in entry:
            continue
        first, last = entry["lines"]
        span = (lines >= first) & (lines <= last)
        threads[span] = int(entry.get("threads") or 0)
        cold[span] = bool(entry.get("cache_flush"))
    return threads, cold
