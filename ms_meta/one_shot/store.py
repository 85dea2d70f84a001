"""Where one-shot runs store their records, and the summary that describes them.

A run in ``work_dir`` writes:

``database_workload.predicted.json``, ``database_tuning_record.predicted.json``
    A MetaSchedule ``JSONDatabase`` of the chosen schedules, one per task, whose run time is
    :data:`~ms_meta.one_shot.settings.PREDICTED_RUN_SECS`: predictions, not measurements. The
    names differ from MetaSchedule's standard ones on purpose, so that nothing that reads tuning
    records (``ms-meta db``, the data set) takes them for measurements. A new run replaces them.
``database_workload.json``, ``database_tuning_record.json``
    Only with ``verify``: the real measurements of the verified finalists, in the standard
    format (appended, like any MetaSchedule database).
``one_shot_summary.json``
    Per task: scores, ranks, timings, and whether the chosen record is measured; plus the
    model weights, target and search settings of the run.

A run also learns from the record store (:mod:`ms_meta.store`): a task the store holds a valid
measurement of, for the run's target, takes the store's fastest record with no search (its
measured ``run_secs`` go into the predicted database, since it is the task's pick); and the
store's fastest schedules of every other task measured for that target join the schedule
library (:func:`store_library`, :func:`merge_libraries`), the store's winning over the shipped
library's for the same task.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import tvm
from tvm.s_tir import meta_schedule as ms

from ms_meta.atomic import atomic_write_text
from ms_meta.data.layout import RECORD_FILE, WORKLOAD_FILE
from ms_meta.errors import MsMetaError
from ms_meta.one_shot.library import (
    DEFAULT_SCHEDULES_PER_TASK,
    SAME_TASK_DISTANCE,
    LibrarySchedule,
    LibraryTask,
    ScheduleLibrary,
    task_signature,
    trace_damage,
    without_postprocs,
)

logger = logging.getLogger(__name__)

__all__ = [
    "MEASURED_RECORD_FILE",
    "MEASURED_WORKLOAD_FILE",
    "PREDICTED_RECORD_FILE",
    "PREDICTED_WORKLOAD_FILE",
    "STORE_TASK_PREFIX",
    "SUMMARY_FILE",
    "SUMMARY_FORMAT",
    "SUMMARY_FORMAT_VERSION",
    "fresh_predicted_database",
    "measured_database",
    "merge_libraries",
    "predicted_database",
    "read_summary",
    "store_library",
    "stored_record",
    "task_module",
    "write_summary",
]

PREDICTED_WORKLOAD_FILE = "database_workload.predicted.json"
PREDICTED_RECORD_FILE = "database_tuning_record.predicted.json"
MEASURED_WORKLOAD_FILE = WORKLOAD_FILE  # MetaSchedule's standard names
MEASURED_RECORD_FILE = RECORD_FILE
SUMMARY_FILE = "one_shot_summary.json"
SUMMARY_FORMAT = "ms-meta-one-shot"
SUMMARY_FORMAT_VERSION = 1
# Library tasks made from the record store are named "store:<task name>" (the origin of a
# schedule One-Shot transfers from one of them says so).
STORE_TASK_PREFIX = "store:"
# (kind, signature) of stored workloads, by a digest of their module text: computing them
# parses the module (milliseconds each), and a process runs One-Shot more than once
_SIGNATURES: OrderedDict[str, tuple[str, list[float]]] = OrderedDict()
_SIGNATURE_CACHE_SIZE = 8192


def fresh_predicted_database(work_dir: Path) -> ms.database.JSONDatabase:
    """An empty predicted-records database in ``work_dir`` (a previous run's is replaced)."""
    for name in (PREDICTED_WORKLOAD_FILE, PREDICTED_RECORD_FILE):
        (work_dir / name).unlink(missing_ok=True)
    return predicted_database(work_dir)


def predicted_database(work_dir: str | os.PathLike) -> ms.database.JSONDatabase:
    """The predicted records of the last one-shot run in ``work_dir``."""
    work_dir = Path(work_dir)
    return ms.database.JSONDatabase(
        path_workload=str(work_dir / PREDICTED_WORKLOAD_FILE),
        path_tuning_record=str(work_dir / PREDICTED_RECORD_FILE),
    )


def measured_database(work_dir: str | os.PathLike) -> ms.database.JSONDatabase:
    """MetaSchedule's standard database in ``work_dir`` (real measurements only)."""
    return ms.database.JSONDatabase(work_dir=str(work_dir))


def write_summary(work_dir: Path, summary: dict[str, Any]) -> Path:
    """Write ``one_shot_summary.json`` atomically."""
    document = {"format": SUMMARY_FORMAT, "format_version": SUMMARY_FORMAT_VERSION, **summary}
    return atomic_write_text(work_dir / SUMMARY_FILE, json.dumps(document, indent=2) + "\n")


def read_summary(work_dir: str | os.PathLike) -> dict[str, Any]:
    """The summary of the last one-shot run in ``work_dir``."""
    path = Path(work_dir) / SUMMARY_FILE
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise MsMetaError(f"{path} does not exist: no one-shot run in {work_dir}") from None
    except (OSError, json.JSONDecodeError) as err:
        raise MsMetaError(f"{path} is not readable JSON ({err})") from None
    if not isinstance(document, dict) or document.get("format") != SUMMARY_FORMAT:
        raise MsMetaError(f"{path} is not an ms-meta one-shot summary")
    return document


# ---- learning from the record store -----------------------------------------------------------


def task_module(mod: tvm.IRModule | tvm.tirx.PrimFunc) -> tvm.IRModule:
    """A task as MetaSchedule stores its workload (a PrimFunc becomes ``{"main": func}``)."""
    from tvm.s_tir.meta_schedule.tune_context import _normalize_mod

    return _normalize_mod(mod)


def stored_record(record_store, mod, target: tvm.target.Target) -> ms.database.TuningRecord | None:
    """The record store's fastest valid record of this very task for ``target``, or None."""
    if record_store is None:
        return None
    try:
        return record_store.query_tuning_record(task_module(mod), target, "main")
    except MsMetaError as err:
        logger.warning("the record store could not be read: %s", err)
        return None


def _kind_and_signature(module_text: str, shash: str) -> tuple[str, list[float]]:
    from tvm.s_tir.meta_schedule.database import Workload

    from ms_meta.feature.task import infer_operator_kind

    digest = hashlib.blake2b(module_text.encode(), digest_size=16).hexdigest()
    found = _SIGNATURES.get(digest)
    if found is None:
        mod = Workload.from_json([shash, module_text]).mod
        found = _SIGNATURES[digest] = (infer_operator_kind(mod), task_signature(mod))
        if len(_SIGNATURES) > _SIGNATURE_CACHE_SIZE:
            _SIGNATURES.popitem(last=False)
    return found


def store_library(
    record_store, target: tvm.target.Target, per_task: int = DEFAULT_SCHEDULES_PER_TASK
) -> ScheduleLibrary | None:
    """A schedule library of the ``per_task`` fastest valid records of every task the record
    store measured for ``target`` (only that target: :mod:`ms_meta.store.targets`); None when
    it has none. A workload whose module or traces cannot be read is left out (logged)."""
    from ms_meta.store.database import key_of

    sql = record_store.sql
    groups: dict[int, list] = {}
    for stored in sql.best_per_workload(key_of(target), per_task):
        groups.setdefault(stored.workload_id, []).append(stored)
    tasks, skipped = [], []
    for workload_id, records in groups.items():
        workload = sql.workload(workload_id)
        name = STORE_TASK_PREFIX + (workload.name or f"wl-{workload.shash}")
        try:
            kind, features = _kind_and_signature(workload.module, workload.shash)
            traces = [
                without_postprocs(json.loads(f"[{r.text.insts},{r.text.decisions}]"))
                for r in records
            ]
        except Exception as err:  # a module this TVM cannot parse: TVM's own error types
            skipped.append(f"{name} ({type(err).__name__})")
            continue
        if any(trace_damage(trace) for trace in traces):
            skipped.append(f"{name} (a malformed trace)")
            continue
        best = records[0].mean_secs
        schedules = [
            LibrarySchedule(t, r.mean_secs / best) for t, r in zip(traces, records, strict=True)
        ]
        tasks.append(LibraryTask(name, kind, features, schedules, best))
    if skipped:
        logger.warning("%d record-store tasks left out of the schedule library (first: %s)",
                       len(skipped), skipped[0])  # fmt: skip
    if not tasks:
        return None
    return ScheduleLibrary(
        tasks, {"path": f"record store {record_store.path}", "store_tasks": len(tasks)}
    )


def merge_libraries(
    shipped: ScheduleLibrary | None, own: ScheduleLibrary | None
) -> ScheduleLibrary | None:
    """The shipped library with the record store's tasks added; where both hold the same task
    (same operator kind and signature), the store's own measurements replace the shipped ones."""
    if own is None or shipped is None:
        return own if shipped is None else shipped

    def same(a: LibraryTask, b: LibraryTask) -> bool:
        return (
            a.kind == b.kind
            and len(a.features) == len(b.features)
            and math.dist(a.features, b.features) <= SAME_TASK_DISTANCE
        )

    kept = [t for t in shipped.tasks if not any(same(t, o) for o in own.tasks)]
    meta = {
        **shipped.meta,
        "store_tasks": len(own.tasks),
        "replaced_tasks": len(shipped.tasks) - len(kept),
    }
    return ScheduleLibrary([*own.tasks, *kept], meta)
