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
import logging
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ms_meta.atomic import atomic_write
from ms_meta.errors import MsMetaError
from ms_meta.feature.schema import FEATURE_VERSION, NUM_TASK_FEATURES, TASK_FEATURE_INDEX
from ms_meta.labels import cpu_label

__all__ = [
    "DEFAULT_NEIGHBOURS",
    "DEFAULT_PRIOR_WEIGHT",
    "DEFAULT_SCHEDULES_PER_TASK",
    "LIBRARY_FORMAT",
    "LIBRARY_FORMAT_VERSION",
    "LIBRARY_SUFFIX",
    "MAX_SIGNATURE_EXTENTS",
    "SAME_MAIN_BLOCK_DISTANCE",
    "SAME_TASK_DISTANCE",
    "SIBLING_KINDS",
    "LibraryError",
    "LibrarySchedule",
    "LibraryTask",
    "ScheduleLibrary",
    "build_library",
    "default_library_path",
    "load_library",
    "report_damage",
    "task_damage",
    "task_signature",
    "trace_damage",
    "without_postprocs",
]

logger = logging.getLogger(__name__)

LIBRARY_FORMAT = "ms-meta-schedule-library"
LIBRARY_FORMAT_VERSION = 1
LIBRARY_SUFFIX = ".library.json.gz"
DEFAULT_SCHEDULES_PER_TASK = 8
DEFAULT_NEIGHBOURS = 4
# A task signature holds at most this many loop extents (a main block's iterators).
MAX_SIGNATURE_EXTENTS = 16
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
    # mean run time of the fastest schedule, seconds (absent in libraries built before
    # 2026-12-05): compares tasks of the same main block, whose relative times do not
    best_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "kind": self.kind,
            "features": [round(float(x), 6) for x in self.features],
            "schedules": [
                {"trace": s.trace, "relative": round(s.relative, 4)} for s in self.schedules
            ],
        }
        if self.best_seconds is not None:
            out["best_seconds"] = float(f"{self.best_seconds:.6g}")
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> LibraryTask:
        best = raw.get("best_seconds")
        return cls(
            name=str(raw["name"]),
            kind=str(raw["kind"]),
            features=[float(x) for x in raw["features"]],
            schedules=[LibrarySchedule(s["trace"], float(s["relative"])) for s in raw["schedules"]],
            best_seconds=None if best is None else float(best),
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

    def neighbours(
        self,
        kind: str,
        features: Sequence[float],
        k: int = DEFAULT_NEIGHBOURS,
    ) -> list[tuple[LibraryTask, float]]:
        """The ``k`` nearest tasks of ``kind`` (:meth:`nearest`) and the ``k`` nearest of each
        sibling kind (:data:`SIBLING_KINDS`: a convolution fused with its bias, batch norm or
        activation and the plain convolution of the same layout), compared as if ``features``
        were of the sibling kind; a fused task's schedules replay on the plain one's main block,
        and the plain convolutions are the tasks the library holds most of.

        The task itself and sibling tasks measured on its very main block
        (:meth:`same_main_block`) come first, the one with the fastest measured schedule first
        (the task's own record set leads among those with no measured time): the best
        measurement of the same loops is the best evidence.
        """
        found = self.nearest(kind, features, k)
        for sibling in SIBLING_KINDS.get(kind, ()):
            found += self.nearest(sibling, _as_kind(features, kind, sibling), k)
        # a task of another kind of this one's (a sibling) on the same loops, or the task itself:
        # two tasks of one kind may share shapes but not access order (dense reads its weight
        # transposed, a Relax matmul does not), so their measurements are not compared
        exact = [
            (t, d)
            for t, d in found
            if (t.kind != kind or d <= SAME_TASK_DISTANCE) and self.same_main_block(t, features)
        ]
        exact.sort(key=lambda item: (item[0].best_seconds is None, item[0].best_seconds or 0.0))
        leading = {id(task) for task, _ in exact}
        return exact + [item for item in found if id(item[0]) not in leading]

    @staticmethod
    def same_main_block(task: LibraryTask, features: Sequence[float]) -> bool:
        """Whether ``task`` was measured on the main block ``features`` describe: the same
        input, weight and output shapes and loop extents, whatever its kind or epilogue."""
        return _main_block_distance(task.features, features) < SAME_MAIN_BLOCK_DISTANCE

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


# kinds whose main blocks have the same loops in the same order, so that a trace of one
# replays on the other: a fused convolution (NCHW, the layout Relax imports) and the plain one
SIBLING_KINDS: dict[str, tuple[str, ...]] = {"conv2d_fused": ("conv2d_nchw",)}
# Signatures this close are the same task: a library stores its signatures rounded to 6
# decimals (about 4e-6 of distance over 50 values); the closest two real shapes differ by more
# (log2 of 4097 against 4096 is 3.5e-4).
SAME_TASK_DISTANCE = 1e-5
# main-block signatures closer than this are the same loops (a saved library rounds features)
SAME_MAIN_BLOCK_DISTANCE = 1e-3


def _as_kind(features: Sequence[float], kind: str, other: str) -> list[float]:
    """``features`` with the operator-kind one-hot moved from ``kind`` to ``other``."""
    out = [float(x) for x in features]
    out[TASK_FEATURE_INDEX[f"op_{kind}"]] = 0.0
    out[TASK_FEATURE_INDEX[f"op_{other}"]] = 1.0
    return out


def _main_block_distance(a: Sequence[float], b: Sequence[float]) -> float:
    """Distance between two signatures over the main block alone: the input, weight and output
    shapes and the loop extents (not the kind, FLOPs, input count or bytes an epilogue adds)."""
    keep = [i for name, i in TASK_FEATURE_INDEX.items() if name[:4] in ("out_", "in0_", "in1_")]
    keep += list(range(NUM_TASK_FEATURES, len(a)))
    if len(a) != len(b):
        return math.inf
    return math.dist([a[i] for i in keep], [b[i] for i in keep])


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


def load_library(path: str | os.PathLike, *, check_instructions: bool = False) -> ScheduleLibrary:
    """Read a library written by :meth:`ScheduleLibrary.save`; :class:`LibraryError` if it is
    missing, corrupt, newer than this ms-meta, or of another feature encoding.

    Damaged tasks (a malformed trace, a feature vector of the wrong length; see
    :func:`task_damage`) are left out with one warning that names the file and the first cause
    (also kept in ``meta["damaged"]``); :class:`LibraryError` when no task is left.
    ``check_instructions`` also leaves out tasks whose traces name an instruction this TVM does
    not know (this imports TVM)."""
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
    if not isinstance(raw.get("tasks"), list):
        raise LibraryError(f"{path}: no task list")
    tasks, damaged = [], []
    for index, entry in enumerate(raw["tasks"]):
        try:
            task = LibraryTask.from_dict(entry)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            damaged.append(f"task #{index}: bad entry ({type(err).__name__}: {err})")
            continue
        reason = task_damage(task)
        if reason:
            damaged.append(f"task {task.name!r}: {reason}")
        else:
            tasks.append(task)
    if check_instructions:
        unknown = _unknown_instructions(tasks)
        for task in [t for t in tasks if _kinds(t) & unknown]:
            kind = sorted(_kinds(task) & unknown)[0]
            damaged.append(f"task {task.name!r}: a trace instruction {kind!r} TVM does not know")
            tasks.remove(task)
    library = ScheduleLibrary(tasks, dict(raw.get("meta") or {}))
    report_damage(library, path, damaged, len(raw["tasks"]))
    return library


def _kinds(task: LibraryTask) -> set[str]:
    return {inst[0] for schedule in task.schedules for inst in schedule.trace[0]}


def _unknown_instructions(tasks: Sequence[LibraryTask]) -> set[str]:
    from tvm.s_tir.schedule import InstructionKind

    unknown = set()
    for kind in set().union(*(_kinds(task) for task in tasks)):
        try:
            InstructionKind.get(kind)
        except Exception:  # TVM's check failure for an unregistered name
            unknown.add(kind)
    return unknown


def trace_damage(trace: Any) -> str | None:
    """Why a library trace cannot be a MetaSchedule trace's JSON, or None when its shape is
    sound: ``[instructions, decisions]``, each instruction ``[kind, inputs, attrs, outputs]``,
    each decision ``[instruction index, value]``."""
    if not (isinstance(trace, list) and len(trace) == 2):
        return "a trace that is not [instructions, decisions]"
    insts, decisions = trace
    if not isinstance(insts, list) or not isinstance(decisions, list):
        return "a trace that is not [instructions, decisions]"
    for inst in insts:
        if not (
            isinstance(inst, list)
            and len(inst) == 4
            and isinstance(inst[0], str)
            and all(isinstance(part, list) for part in inst[1:])
        ):
            return f"a trace instruction that is not [kind, inputs, attrs, outputs]: {inst!r:.80}"
    for decision in decisions:
        if not (
            isinstance(decision, list)
            and len(decision) == 2
            and isinstance(decision[0], int)
            and 0 <= decision[0] < len(insts)
        ):
            return f"a trace decision that names no instruction: {decision!r:.80}"
    return None


def task_damage(task: LibraryTask) -> str | None:
    """Why a library task cannot be used, or None: its signature
    (:func:`task_signature`: the task features, then at least one loop extent) has the wrong
    length or non-finite or negative extents, or one of its traces is malformed."""
    features = task.features
    shortest, longest = NUM_TASK_FEATURES + 1, NUM_TASK_FEATURES + MAX_SIGNATURE_EXTENTS
    if not shortest <= len(features) <= longest:
        return (
            f"a feature vector of length {len(features)}, expected {shortest} to {longest} "
            f"({NUM_TASK_FEATURES} task features and the main block's loop extents); was it "
            "built by another ms-meta? rebuild it with `ms-meta library build`"
        )
    if not all(math.isfinite(x) for x in features) or min(features[NUM_TASK_FEATURES:]) < 0:
        return "non-finite features or a negative log2 loop extent"
    for schedule in task.schedules:
        reason = trace_damage(schedule.trace)
        if reason:
            return reason
        if not (math.isfinite(schedule.relative) and schedule.relative >= 1.0 - 1e-3):
            return f"a relative run time of {schedule.relative} (it is >= 1: over the fastest)"
    return None


def report_damage(
    library: ScheduleLibrary, path: str | os.PathLike, damaged: Sequence[str], total: int
) -> None:
    """Warn once (naming ``path`` and the first cause) that the ``damaged`` tasks were left out
    of ``library``, and note it in ``library.meta["damaged"]``; :class:`LibraryError` when no
    task is left."""
    if not damaged:
        return
    if not library.tasks:
        raise LibraryError(
            f"schedule library {path} is damaged: all {total} tasks are unusable "
            f"(first: {damaged[0]}); rebuild it with `ms-meta library build`"
        )
    library.meta["damaged"] = {"tasks": len(damaged), "first": damaged[0]}
    logger.warning(
        "schedule library %s is damaged: %d of %d tasks left out (first: %s); rebuild it with "
        "`ms-meta library build`",
        path, len(damaged), total, damaged[0],
    )  # fmt: skip


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


def _warn_skipped_lines(skipped: Sequence[Any]) -> None:
    """One warning for the record lines the reader dropped: how many, of which kinds, the
    first of them."""
    lines = [item for item in skipped if item.line]  # whole files: the unreadable sources
    if not lines:
        return
    kinds: dict[str, int] = {}
    for item in lines:
        kinds[item.kind] = kinds.get(item.kind, 0) + 1
    listing = ", ".join(f"{n} {kind}" for kind, n in kinds.items())
    logger.warning(
        "%d unreadable record lines left out (%s; first: %s); run `ms-meta db validate` for "
        "details",
        len(lines), listing, lines[0],
    )  # fmt: skip


def _timed_as_built(group: Any, records: list[Any]) -> list[Any]:
    """The ``records`` timed the way the code runs inside a model, as far as the task has any:
    on as many runtime threads as their target's ``num-cores``, with cold caches before warm
    ones (per ``meta.json``'s sources, :func:`ms_meta.data.measurements.line_timing`); else
    all of them. Timings at another thread count rank schedules differently (a schedule that
    parallelizes badly loses nothing on one thread), warm timings hide how often a schedule
    reads its weights from memory, and mixing kinds would let the faster kind win every
    comparison."""
    import numpy as np

    from ms_meta.data.measurements import line_timing

    if not records:
        return records
    threads, cold = line_timing(group.database.meta, np.array([r.line for r in records]))
    built = [
        bool(n) and n == int((record.target or {}).get("num-cores", 0) or 0)
        for record, n in zip(records, threads, strict=True)
    ]
    for wanted in (lambda i: built[i] and cold[i], lambda i: built[i]):
        matched = [record for i, record in enumerate(records) if wanted(i)]
        if matched:
            return matched
    return records


def build_library(
    paths: Sequence[str | os.PathLike],
    *,
    tasks: Iterable[str] | None = None,
    per_task: int = DEFAULT_SCHEDULES_PER_TASK,
    meta: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    skip_unreadable: bool = False,
) -> ScheduleLibrary:
    """A library of the ``per_task`` fastest measured schedules of every task in the tuning
    databases at ``paths`` (``tuning_records/<cpu>``, a user's ``ms.tune_tir`` work directory,
    ...; see :func:`ms_meta.data.records.load_database`).

    ``tasks``, when given, keeps only the tasks named (e.g. a split's training tasks, so that
    held-out tasks cannot lend their own schedules). Failed records are never taken. Where a
    task has records timed on its target's ``num-cores`` threads (``ms-meta db remeasure``,
    or collections since the runner sets the thread count), only those are ranked, and only
    the cold-cache ones among them where there are some. Task names
    are those of the record loader (``meta.json``'s task, else the directory).

    Record lines that cannot be read are left out with one warning (their count by kind and
    the first of them). A folder or database file that cannot be read at all is refused
    (:class:`LibraryError`) unless ``skip_unreadable``, which leaves it out with a warning: a
    library silently built from part of its sources would lack tasks no message explains.
    """
    from ms_meta.data.records import load_databases
    from ms_meta.feature.task import infer_operator_kind

    if per_task < 1:
        raise LibraryError(f"per_task must be >= 1, got {per_task}")
    wanted = None if tasks is None else set(tasks)
    records = load_databases(paths)
    unreadable = records.unreadable_sources()
    if unreadable and not skip_unreadable:
        raise LibraryError(
            f"cannot build a library: {len(unreadable)} source folder(s) or file(s) cannot be "
            f"read ({'; '.join(unreadable)}); fix them, or pass --skip-unreadable to build from "
            "the rest"
        )
    for text in unreadable:
        logger.warning("left out, cannot be read: %s", text)
    _warn_skipped_lines(records.skips.skipped)
    groups = [g for g in records.groups if wanted is None or g.task in wanted]
    library_tasks = []
    targets: dict[str, int] = {}
    for done, group in enumerate(groups, start=1):
        valid = _timed_as_built(group, [r for r in group.records if not r.failed])
        valid.sort(key=lambda r: r.mean_secs)
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
            library_tasks.append(LibraryTask(group.task, kind, features, schedules, best))
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
