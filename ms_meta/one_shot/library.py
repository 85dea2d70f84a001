"""A library of measured schedules that One-Shot transfers to new tasks.

The evolutionary search, scored by the model alone, climbs to wherever the model's error is
largest: its picks are the model's confident mistakes as often as fast schedules (the online
benchmark, docs/). The best *measured* schedules of similar tasks do not have
that problem: a schedule that was fast for ``dense 128x2304x768`` keeps its register tile, vector
width and loop order when replayed on ``dense 128x3072x768``; only the tile factors that no longer
divide the new extents are repaired (MetaSchedule's ``SamplePerfectTile`` does that on replay).
So a library keeps, for every task of some tuning databases, the few best measured traces, and
One-Shot lets the model choose among the traces of a new task's nearest neighbours.

A library is plain data (gzip JSON) and TVM-free to read: the task kind and task features are
computed once, when it is built. Neighbours are tasks of the same operator kind, nearest by
:func:`task_signature` (task features and the main block's log extents); the transfer itself is
in :mod:`ms_meta.one_shot.search`.
"""

from __future__ import annotations

import datetime as _dt
import gzip
import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ms_meta.atomic import atomic_write
from ms_meta.errors import MsMetaError
from ms_meta.feature.schema import FEATURE_VERSION
from ms_meta.labels import cpu_label

LIBRARY_FORMAT = "ms-meta-schedule-library"
LIBRARY_FORMAT_VERSION = 1
LIBRARY_SUFFIX = ".library.json.gz"
DEFAULT_SCHEDULES_PER_TASK = 8
DEFAULT_NEIGHBOURS = 4
# How much a library schedule's measured speed on its own task counts beside the model's score
# when One-Shot ranks the transferred schedules (both standardized over a task's candidates):
# rank = z(score) + DEFAULT_PRIOR_WEIGHT * z(-log relative run time). Chosen on 27 held-out tasks
# that are not the benchmark's five (geomean against each task's best record: 0.942 at 0,
# 0.910 at 0.25, 0.907 at 0.5, 0.949 at 1; measured 2026-12-04, commit 23de864).
DEFAULT_PRIOR_WEIGHT = 0.5


class LibraryError(MsMetaError):
    """A schedule library that cannot be read, or built from nothing."""


@dataclass(frozen=True)
class LibrarySchedule:
    """One measured schedule: its trace without the postprocessors' part (the new task's
    postprocessors run again after replay), and its mean run time over the task's best."""

    trace: list[Any]
    relative: float


@dataclass
class LibraryTask:
    """A task of the library: its best measured schedules, fastest first."""

    name: str
    kind: str
    features: list[float]
    schedules: list[LibrarySchedule]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "features": [round(float(x), 6) for x in self.features],
            "schedules": [
                {"trace": s.trace, "relative": round(s.relative, 4)} for s in self.schedules
            ],
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> LibraryTask:
        return cls(
            name=str(raw["name"]),
            kind=str(raw["kind"]),
            features=[float(x) for x in raw["features"]],
            schedules=[LibrarySchedule(s["trace"], float(s["relative"])) for s in raw["schedules"]],
        )


@dataclass
class ScheduleLibrary:
    """Measured schedules per task, and where they came from (``meta``)."""

    tasks: list[LibraryTask]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_schedules(self) -> int:
        return sum(len(t.schedules) for t in self.tasks)

    def nearest(
        self,
        kind: str,
        features: Sequence[float],
        k: int = DEFAULT_NEIGHBOURS,
        exclude: Iterable[str] = (),
    ) -> list[tuple[LibraryTask, float]]:
        """The ``k`` tasks of operator ``kind`` closest to ``features`` (Euclidean), nearest
        first, with their distances; tasks named in ``exclude`` are skipped."""
        skip = set(exclude)
        found = []
        for task in self.tasks:
            if task.kind != kind or task.name in skip or not task.schedules:
                continue
            if len(task.features) != len(features):
                continue
            distance = math.dist(task.features, features)
            found.append((distance, task.name, task))
        found.sort(key=lambda item: item[:2])
        return [(task, distance) for distance, _, task in found[:k]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": LIBRARY_FORMAT,
            "format_version": LIBRARY_FORMAT_VERSION,
            "feature_version": FEATURE_VERSION,
            "meta": self.meta,
            "tasks": [t.to_dict() for t in self.tasks],
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write gzip JSON atomically (:func:`ms_meta.atomic.atomic_write`)."""
        data = json.dumps(self.to_dict(), separators=(",", ":")).encode()

        def write(tmp: str) -> None:
            # mtime=0: the same library gives the same bytes
            with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
                f.write(data)

        return atomic_write(path, write)


def default_library_path(target: dict[str, Any], weights_path: str | None = None) -> Path | None:
    """The shipped library for ``target`` (``<kind>-<cpu label>.library.json.gz`` beside the
    shipped weights); else the one beside ``weights_path`` (the weights the model loaded, e.g.
    another CPU's shipped weights, whose schedules were measured on that CPU); else ``None``."""
    from ms_meta.model.weights import DEFAULT_WEIGHTS_DIR

    name = cpu_label(target) or str(target.get("kind"))
    candidates = [DEFAULT_WEIGHTS_DIR / f"{target.get('kind')}-{name}{LIBRARY_SUFFIX}"]
    if weights_path and str(weights_path).endswith(".pt"):
        candidates.append(Path(str(weights_path)[: -len(".pt")] + LIBRARY_SUFFIX))
    return next((path for path in candidates if path.is_file()), None)


def load_library(path: str | os.PathLike) -> ScheduleLibrary:
    """Read a library written by :meth:`ScheduleLibrary.save`; :class:`LibraryError` if it is
    missing, corrupt, newer than this ms-meta, or of another feature encoding."""
    path = Path(path)
    if not path.is_file():
        raise LibraryError(f"schedule library {path} does not exist")
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            raw = json.load(f)
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise LibraryError(f"{path} is not a readable schedule library ({err})") from None
    if not isinstance(raw, dict) or raw.get("format") != LIBRARY_FORMAT:
        raise LibraryError(f"{path} is not an ms-meta schedule library")
    if raw.get("format_version", 0) > LIBRARY_FORMAT_VERSION:
        raise LibraryError(
            f"{path} was written by a newer ms-meta (format {raw['format_version']}); upgrade"
        )
    if raw.get("feature_version") != FEATURE_VERSION:
        # the neighbours are found by task features, which change with the encoding
        raise LibraryError(
            f"{path} holds task features of encoding v{raw.get('feature_version')}, this "
            f"ms-meta computes v{FEATURE_VERSION}; rebuild it with `ms-meta library build`"
        )
    try:
        tasks = [LibraryTask.from_dict(t) for t in raw["tasks"]]
    except (KeyError, TypeError, ValueError) as err:
        raise LibraryError(f"{path}: bad task entry ({err})") from None
    return ScheduleLibrary(tasks, dict(raw.get("meta") or {}))


def task_signature(mod) -> list[float]:
    """What neighbours are found by: the task features
    (:func:`~ms_meta.feature.task.task_features`), then log2 of every iteration extent of the
    main block (the one with the most iterations).

    The extents are what a schedule's tile decisions divide; tasks whose main blocks have a
    different number of iterators get signatures of different lengths and are never neighbours.
    """
    import tvm

    from ms_meta.feature.task import task_features

    sch = tvm.s_tir.Schedule(mod)
    extents: list[int] = []
    for block_rv in sch.get_child_blocks(sch.get_sblock("root")):
        block = sch.get(block_rv)
        these = [int(iv.dom.extent) for iv in block.iter_vars]
        if math.prod(these) > math.prod(extents or [0]):
            extents = these
    return [float(x) for x in task_features(mod)] + [math.log2(e) for e in extents]


def without_postprocs(trace: list[Any]) -> list[Any]:
    """A trace JSON cut before ``EnterPostproc``, with the decisions of what is left.

    The postprocessors' instructions (parallel, vectorize and unroll of concrete loops) were
    derived from the old extents; replaying them on new extents could be wrong, so the new
    task's own postprocessors run instead.
    """
    insts, decisions = trace
    cut = next((i for i, inst in enumerate(insts) if inst[0] == "EnterPostproc"), len(insts))
    return [insts[:cut], [d for d in decisions if d[0] < cut]]


def build_library(
    paths: Sequence[str | os.PathLike],
    *,
    tasks: Iterable[str] | None = None,
    per_task: int = DEFAULT_SCHEDULES_PER_TASK,
    meta: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ScheduleLibrary:
    """A library of the ``per_task`` fastest measured schedules of every task in the tuning
    databases at ``paths`` (``tuning_records/<cpu>``, a user's ``ms.tune_tir`` work directory,
    ...; see :func:`ms_meta.data.records.load_database`).

    ``tasks``, when given, keeps only the tasks named (e.g. a split's training tasks, so that
    held-out tasks cannot lend their own schedules). Failed records are never taken. Task names
    are those of the record loader (``meta.json``'s task, else the directory).
    """
    from ms_meta.data.records import load_databases
    from ms_meta.feature.task import infer_operator_kind

    if per_task < 1:
        raise LibraryError(f"per_task must be >= 1, got {per_task}")
    wanted = None if tasks is None else set(tasks)
    records = load_databases(paths)
    groups = [g for g in records.groups if wanted is None or g.task in wanted]
    library_tasks = []
    targets: dict[str, int] = {}
    for done, group in enumerate(groups, start=1):
        valid = sorted((r for r in group.records if not r.failed), key=lambda r: r.mean_secs)
        if valid:
            best = valid[0].mean_secs
            schedules, seen = [], set()
            for record in valid:
                trace = without_postprocs(record.trace)
                key = json.dumps(trace, sort_keys=True)
                if key in seen:  # the same schedule measured twice
                    continue
                seen.add(key)
                schedules.append(LibrarySchedule(trace, record.mean_secs / best))
                label = json.dumps(record.target, sort_keys=True)
                targets[label] = targets.get(label, 0) + 1
                if len(schedules) == per_task:
                    break
            # kind and features as One-Shot computes them for a new task (not meta.json's op)
            kind, features = infer_operator_kind(group.mod), task_signature(group.mod)
            library_tasks.append(LibraryTask(group.task, kind, features, schedules))
        if progress:
            progress(done, len(groups))
    if not library_tasks:
        raise LibraryError(
            "no task with a valid measured record in "
            + ", ".join(str(p) for p in paths)
            + (" among the tasks asked for" if wanted is not None else "")
        )
    info = dict(meta or {})
    info.update(
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        sources=[str(p) for p in paths],
        per_task=per_task,
        # the target the most schedules were measured on: what the library is good for
        target=json.loads(max(targets, key=targets.get)) if targets else None,
    )
    return ScheduleLibrary(library_tasks, info)
