"""Time a task folder's fastest measured schedules again, on as many runtime threads as their
target was built for, and append them as new records.

TVM's runtime starts half the logical CPUs as threads on x86 (it assumes hyper-threading), so
records measured before the runner set the thread count ran every parallel schedule on one
thread of a 2-vCPU guest. Their ranking is not the ranking on both cores: a schedule that
splits its work unevenly loses nothing on one thread. Re-timing each task's ``top`` fastest
schedules costs a few seconds per schedule, a small share of the search that found them, and
lets the library (:func:`ms_meta.one_shot.library.build_library`) rank by the timings that
match the code it serves.

The folder stays append-only: new records go to the end of ``database_tuning_record.json``
and ``meta.json`` marks their lines as a ``"remeasure"`` source with their thread count. A
second run re-times only what the first left out.
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ms_meta.data.layout import RECORD_FILE
from ms_meta.data.measurements import line_timing
from ms_meta.data.records import canonical_json
from ms_meta.data.stop import run_without_sigint, writing
from ms_meta.data.task_files import count_lines, task_lock
from ms_meta.data.task_meta import local_machine, note_source, read_meta_json
from ms_meta.errors import MsMetaError

__all__ = ["REMEASURE_PHASE", "RemeasureError", "RemeasureResult", "remeasure_task"]

logger = logging.getLogger(__name__)

# meta.json source phase of re-timed schedules
REMEASURE_PHASE = "remeasure"


class RemeasureError(MsMetaError):
    """A task folder that cannot be re-timed (no database, several workloads, no target)."""


@dataclass
class RemeasureResult:
    """What :func:`remeasure_task` did to one task folder."""

    task: str
    threads: int
    measured: int = 0
    failed: int = 0
    # fastest mean seconds before (any thread count) and among the records at ``threads``
    best_before: float | None = None
    best_after: float | None = None
    stopped: bool = False


def _load_group(task_dir: Path):
    from ms_meta.data.records import load_database

    groups = [g for g in load_database(task_dir).groups if g.records]
    if len(groups) != 1:
        raise RemeasureError(
            f"{task_dir}: expected the records of one workload, found {len(groups)}"
        )
    return groups[0]


def _target_of(group) -> dict:
    targets = {canonical_json(r.target) for r in group.records if r.target}
    if len(targets) != 1:
        raise RemeasureError(f"{group.task}: expected records of one target, found {len(targets)}")
    return next(r.target for r in group.records if r.target)


def remeasure_task(
    task_dir: str | Path,
    *,
    top: int,
    measurer_factory: Callable[[int], tuple[object, object]],
    cache_flush: bool = True,
    batch_size: int = 8,
    stop: threading.Event | None = None,
) -> RemeasureResult:
    """Re-time the ``top`` fastest distinct schedules of the task in ``task_dir``.

    Parameters
    ----------
    task_dir : path
        A task folder (``database_*.json`` of one workload and its ``meta.json``).
    top : int
        How many of the fastest schedules (by their mean time, whatever their thread count)
        to re-time; those already timed at the target's thread count are not timed again.
    measurer_factory : callable
        ``threads -> (builder, runner)``; called only when something needs timing. Its
        runner's settings must match ``cache_flush``, which only labels the records.
    cache_flush : bool
        Whether the runner flushes the caches before each run
        (:meth:`~ms_meta.tuning.measure.MeasureSettings.with_cold_caches`), as a model's
        layers meet their weights.
    batch_size : int
        Schedules per build-and-run batch; ``meta.json`` is updated after each.
    stop : threading.Event, optional
        Set it to end after the batch in flight, which is dropped.

    Raises
    ------
    RemeasureError
        The folder holds no single workload of one target.
    """
    import tvm
    from tvm.s_tir import meta_schedule as ms

    from ms_meta.atomic import atomic_write_json
    from ms_meta.data.collect import commit_measured
    from ms_meta.data.layout import META_FILE
    from ms_meta.tuning.measure import measure, run_secs_of

    if top < 1:
        raise RemeasureError(f"top must be >= 1, got {top}")
    task_dir = Path(task_dir)
    if not task_dir.is_dir():
        raise RemeasureError(f"{task_dir}: no such task folder")
    with task_lock(task_dir):
        group = _load_group(task_dir)
        target_dict = _target_of(group)
        threads = int(target_dict.get("num-cores") or 0)
        if threads < 1:
            raise RemeasureError(f"{group.task}: the records' target names no num-cores")
        result = RemeasureResult(group.task, threads)
        valid = [r for r in group.records if not r.failed]
        if not valid:
            return result
        at, cold = line_timing(group.database.meta, np.array([r.line for r in valid]))
        result.best_before = min(r.mean_secs for r in valid)
        done = {
            canonical_json(r.trace)
            for r, n, c in zip(valid, at, cold, strict=True)
            if n == threads and c == cache_flush
        }
        wanted, seen = [], set()
        for record in sorted(valid, key=lambda r: r.mean_secs):
            key = canonical_json(record.trace)
            if key in seen:
                continue
            seen.add(key)
            if key not in done:
                wanted.append(record)
            if len(seen) == top:
                break
        if wanted:
            builder, runner = measurer_factory(threads)
            target = tvm.target.Target(target_dict)
            workload = group.workload()
            database = ms.database.JSONDatabase(work_dir=str(task_dir))
            db_workload = database.commit_workload(workload.mod)
            run = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            for start in range(0, len(wanted), batch_size):
                if stop is not None and stop.is_set():
                    result.stopped = True
                    break
                batch = wanted[start : start + batch_size]
                candidates = []
                for record in batch:
                    tuning_record = ms.database.TuningRecord.from_json(record.as_json(), workload)
                    sch = tvm.s_tir.Schedule(workload.mod)
                    tuning_record.trace.apply_to_schedule(sch, remove_postproc=False)
                    candidates.append(ms.MeasureCandidate(sch, tuning_record.args_info))
                results = run_without_sigint(
                    lambda c=candidates: measure(builder, runner, target, c)
                )
                with writing(stop):
                    if stop is not None and stop.is_set():
                        result.stopped = True
                        break
                    first = count_lines(task_dir / RECORD_FILE) + 1
                    for cand, res in zip(candidates, results, strict=True):
                        secs = run_secs_of(res)
                        result.failed += secs is None
                        commit_measured(database, db_workload, target, cand, secs)
                    result.measured += len(candidates)
                    meta = read_meta_json(task_dir)
                    sources = list(meta.get("sources") or [])
                    note_source(
                        sources, REMEASURE_PHASE, None, run, first, len(candidates),
                        machine=local_machine(), threads=threads, cache_flush=cache_flush,
                    )  # fmt: skip
                    meta["sources"] = sources
                    meta["records"] = count_lines(task_dir / RECORD_FILE)
                    atomic_write_json(task_dir / META_FILE, meta)
        result.best_after = _best_at(task_dir, threads, cache_flush)
    return result


def _best_at(task_dir: Path, threads: int, cache_flush: bool) -> float | None:
    """Fastest mean seconds among the folder's records timed on ``threads`` threads, with
    or without cold caches as ``cache_flush`` says."""
    group = _load_group(task_dir)
    valid = [r for r in group.records if not r.failed]
    at, cold = line_timing(group.database.meta, np.array([r.line for r in valid]))
    times = [
        r.mean_secs
        for r, n, c in zip(valid, at, cold, strict=True)
        if n == threads and c == cache_flush
    ]
    return min(times) if times else None
