"""The machinery of one One-Shot run, shared by the TIR and Relax front ends.

A run loads the cost model (warning when it is untrained or trained on another CPU), resolves the
schedule library, searches each task (library schedules first, MetaSchedule's evolutionary search
where the library has none that fit; see :mod:`ms_meta.one_shot.search`), commits the
best-ranked schedule of every task to the predicted database, optionally measures the top
finalists (``verify``; ``verify_uncertain``: only of the tasks far from the library, see
:func:`~ms_meta.one_shot.search.library_confidence`), and writes the summary. It learns from
the record store (:mod:`ms_meta.store`; ``store=None`` leaves it alone): a task the store
measured for the target compiles from its fastest record with no search, the store's schedules
of other tasks join the library, and the measurements are recorded into it. Records are stored as
described in :mod:`ms_meta.one_shot.store`: predicted ones apart from measured ones, under names
nothing else reads as measurements. The front ends are :mod:`ms_meta.one_shot.tir` (PrimFuncs) and
:mod:`ms_meta.one_shot.relax` (Relax models).
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import tvm
from tvm.s_tir import meta_schedule as ms
from tvm.s_tir.meta_schedule.utils import fork_seed

from ms_meta.errors import MsMetaError, TargetError
from ms_meta.labels import cpu_label
from ms_meta.one_shot import store as one_shot_files
from ms_meta.one_shot.library import (
    DEFAULT_NEIGHBOURS,
    ScheduleLibrary,
    default_library_path,
    load_library,
)
from ms_meta.one_shot.result import Measurement, OneShotResult, TaskConfidence, TaskOutcome
from ms_meta.one_shot.search import TaskSearch, library_search, search_task
from ms_meta.one_shot.settings import PREDICTED_RUN_SECS, SearchSettings
from ms_meta.run_secs import FAILED_RUN_SECS
from ms_meta.store.access import Store, open_store, resolve_store_path
from ms_meta.store.feed import feed_json_databases
from ms_meta.tuning.intrin import import_tensor_intrinsics
from ms_meta.tuning.measure import (
    MeasureSettings,
    make_local_runner,
    measure,
    run_secs_of,
)
from ms_meta.tuning.target import parse_target, target_summary

logger = logging.getLogger(__name__)

__all__ = [
    "MODEL_WARNING_ATTR",
    "DynamicShapeError",
    "Library",
    "NothingToTuneError",
    "OneShotError",
    "OneShotRun",
    "Task",
    "Weights",
    "check_static",
    "check_target",
    "first_line",
    "other_cpu_warning",
    "symbolic_dims",
    "untrained_warning",
]

Weights = str | os.PathLike | Literal["default"] | None
Library = ScheduleLibrary | str | os.PathLike | Literal["default"] | None

# Set on the log record of the untrained-model warning.
MODEL_WARNING_ATTR = "ms_meta_model_warning"


class OneShotError(MsMetaError):
    """A one-shot run that cannot start or produced nothing."""


class NothingToTuneError(OneShotError, ValueError):
    """The module holds no function that one-shot tuning can schedule."""


class DynamicShapeError(OneShotError, ValueError):
    """A task whose tensor shapes are not all constants: One-Shot scores and replays schedules
    of concrete loop extents only."""


def symbolic_dims(func: tvm.tirx.PrimFunc | tvm.IRModule) -> list[str]:
    """The non-constant dimensions of the tensor parameters of ``func`` (or of every PrimFunc
    of a module): ``n``, ``m * 2``, ..."""
    funcs = [func] if isinstance(func, tvm.tirx.PrimFunc) else list(func.functions.values())
    params = [p for f in funcs if isinstance(f, tvm.tirx.PrimFunc) for p in f.params]
    found: list[str] = []
    for param in params:
        shape = getattr(param, "shape", None) or ()  # a scalar parameter has none
        for dim in shape:
            if not isinstance(dim, tvm.tirx.IntImm) and str(dim) not in found:
                found.append(str(dim))
    return found


def check_static(task_name: str, func: tvm.tirx.PrimFunc | tvm.IRModule) -> None:
    """:class:`DynamicShapeError` (one line) when ``func`` has a symbolic tensor dimension."""
    dims = symbolic_dims(func)
    if dims:
        raise DynamicShapeError(
            f"task {task_name} has dynamic shapes ({', '.join(dims)}): One-Shot tunes static "
            "shapes only; bind them to constants first (PrimFunc.specialize, or a Relax module "
            "with concrete input shapes)"
        )


def untrained_warning(weights: Weights) -> str:
    """The message for a one-shot run without pre-trained weights."""
    why = ("ms-meta has no shipped weights for this target" if weights == "default"
           else "weights=None was given")  # fmt: skip
    return (
        f"one-shot tuning with an UNTRAINED cost model ({why}): its picks are no better than "
        "random samples of the design space; pass weights trained with `ms-meta pretrain`, or "
        "use --verify / the measured mode"
    )


def other_cpu_warning(trained_for: str, target: tvm.target.Target) -> str:
    """The message for a one-shot run with the shipped weights of another CPU."""
    cpu = cpu_label(target_summary(target)) or target.kind.name
    return (
        f"one-shot tuning for {cpu} with weights trained on {trained_for}: with no measurement "
        f"to adapt them, their picks reflect {trained_for}; use --verify K, or train weights "
        "for this CPU (README: Other CPUs)"
    )


@dataclass
class _Model:
    cost_model: Any
    pretrained: bool
    weights: str | None
    warning: str | None
    startup_seconds: float


def _load_model(
    weights: Weights,
    target: tvm.target.Target,
    seed: int,
    cost_model,
    allow_other_cpu: bool,
    store: Store = "default",
) -> _Model:
    started = time.perf_counter()
    import_tensor_intrinsics(target.kind.name)  # TuneContext would import every backend's
    if cost_model is None:
        from ms_meta.model.cost_model import MetaCostModel

        cost_model = MetaCostModel(
            weights=weights, target=target, seed=seed, allow_other_cpu=allow_other_cpu,
            store=store,
        )  # fmt: skip
        source = cost_model.weights_source
    else:
        source = getattr(cost_model, "weights_source", None) or type(cost_model).__name__
    pretrained = bool(getattr(cost_model, "pretrained", False))
    other_cpu = getattr(cost_model, "checkpoint_meta", {}).get("other_cpu")
    warning = (
        untrained_warning(weights)
        if not pretrained
        else other_cpu_warning(other_cpu, target)
        if other_cpu
        else None
    )
    if warning:
        # marked, so that a front end that shows the warning itself can drop the log line
        logger.warning("%s", warning, extra={MODEL_WARNING_ATTR: True})
    return _Model(cost_model, pretrained, source, warning, time.perf_counter() - started)


def _resolve_library(library: Library, target: tvm.target.Target, model: _Model, record_store):
    """(library or None, what to report as its source): the library asked for, with the
    record store's schedules for ``target`` added
    (:func:`~ms_meta.one_shot.store.merge_libraries`) unless ``library`` is None."""
    if library is None:
        return None, None
    shipped, source = _given_library(library, target, model)
    own = None
    if record_store is not None:
        try:
            own = one_shot_files.store_library(record_store, target)
        except MsMetaError as err:  # the store is an aid: the shipped library still serves
            logger.warning("the record store's schedules are left out: %s", err)
    if own is None:
        return shipped, source
    merged = one_shot_files.merge_libraries(shipped, own)
    label = f"record store {record_store.path} ({len(own.tasks)} tasks)"
    return merged, label if source is None else f"{source} + {label}"


def _given_library(library: Library, target: tvm.target.Target, model: _Model):
    """(the library asked for, or None, what to report as its source)."""
    if isinstance(library, ScheduleLibrary):
        source = None if library is None else library.meta.get("path", "in memory")
        return library, source
    summary = target_summary(target)
    path = library
    if isinstance(library, str) and library == "default":
        path = default_library_path(summary, model.weights)
        if path is None:
            logger.info("no shipped schedule library for this target: every task is searched")
            return None, None
    loaded = load_library(path, check_instructions=True)
    loaded.meta["path"] = str(path)
    measured_on = cpu_label(loaded.meta.get("target") or {})
    wanted = cpu_label(summary)
    if measured_on and wanted and measured_on != wanted:
        # tile sizes tuned for one CPU's vector width and caches carry over to another in part
        logger.warning(
            "the schedule library %s was measured on %s, the target is %s: its schedules are "
            "fast there; use --verify K, or build a library from this CPU's records",
            path, measured_on, wanted,
        )  # fmt: skip
    return loaded, str(path)


def check_target(target) -> tvm.target.Target:
    target = parse_target(target)
    if int(target.attrs.get("num-cores", 0) or 0) < 1:
        raise TargetError(
            f"the target {target} has no num-cores; MetaSchedule's CPU rules need it, e.g. "
            f'{{"kind": "{target.kind.name}", "mcpu": "...", "num-cores": 2}}'
        )
    return target


def _work_dir(work_dir: str | os.PathLike | None) -> Path:
    path = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="ms-meta-one-shot-"))
    if path.exists() and not path.is_dir():
        raise OneShotError(f"work_dir {path} exists and is not a directory")
    path.mkdir(parents=True, exist_ok=True)
    return path


def first_line(err: BaseException) -> str:
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[-1] if lines else ''}".strip()


@dataclass
class Task:
    name: str
    mod: tvm.IRModule | tvm.tirx.PrimFunc
    weight: float = 1.0


class OneShotRun:
    """One run: searches each task, commits its pick, optionally verifies, writes the summary."""

    def __init__(
        self, *, target, work_dir, weights, verify, seed, settings, cost_model, builder, runner,
        measure_settings, library="default", neighbours=DEFAULT_NEIGHBOURS, allow_other_cpu=False,
        store: Store = "default",
    ) -> None:  # fmt: skip
        if verify < 0:
            raise OneShotError(f"verify must be >= 0, got {verify}")
        self.target = check_target(target)
        self.work_dir = _work_dir(work_dir)
        self.verify = int(verify)
        self.seed = int(seed)
        self.settings = settings or SearchSettings()
        self.store_path = resolve_store_path(store)
        self.model = _load_model(
            weights, self.target, self.seed, cost_model, allow_other_cpu, self.store_path
        )
        self.record_store = open_store(self.store_path, target=self.target)
        self.library, self.library_source = _resolve_library(
            library, self.target, self.model, self.record_store
        )
        self.neighbours = int(neighbours)
        self.predicted_db = one_shot_files.fresh_predicted_database(self.work_dir)
        # verify measures every task; verify_uncertain only those far from the library
        self.measures = bool(self.verify or self.settings.verify_uncertain)
        self.measured_db = (
            one_shot_files.measured_database(self.work_dir) if self.measures else None
        )
        self._builder, self._runner = builder, runner
        # verify picks what runs fastest inside a model, where weights come from memory
        self.measure_settings = measure_settings or MeasureSettings().with_cold_caches()

    # The builder and runner are made on first use only: one-shot without verify never builds
    # or runs anything (and saves their 2-3 s start-up each).
    def _builder_runner(self):
        if self._builder is None:
            from ms_meta.tuning.builder import make_builder

            self._builder = make_builder()
        if self._runner is None:
            self._runner = make_local_runner(self.measure_settings)
        return self._builder, self._runner

    def run(self, tasks: list[Task], kind: str) -> OneShotResult:
        rand_states = fork_seed(self.seed, n=len(tasks))
        outcomes = []
        try:
            for task, rand_state in zip(tasks, rand_states, strict=True):
                outcomes.append(self._tune_task(task, rand_state))
        finally:
            if self.record_store is not None:
                self.record_store.close()
        store_report = None
        if (
            self.measures
            and self.store_path is not None
            and (self.work_dir / one_shot_files.MEASURED_RECORD_FILE).is_file()
        ):
            # verify's measurements; One-Shot's predicted records never go in
            store_report = feed_json_databases(self.work_dir, store_path=self.store_path)
        database = self.predicted_db
        if self.measured_db is not None:
            # measured records first; a task whose measurements all failed keeps its prediction
            database = ms.database.OrderedUnionDatabase(self.measured_db, self.predicted_db)
        result = OneShotResult(
            database=database,
            work_dir=self.work_dir,
            tasks=outcomes,
            startup_seconds=self.model.startup_seconds,
            pretrained=self.model.pretrained,
            weights=self.model.weights,
            model_warning=self.model.warning,
            target=target_summary(self.target),
            settings=self.settings,
            verify=self.verify,
            seed=self.seed,
            library=self.library_source,
            store_report=store_report,
        )
        summary = result.to_dict()
        summary.update(
            kind=kind,
            created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            predicted_database={
                "workload": one_shot_files.PREDICTED_WORKLOAD_FILE,
                "tuning_record": one_shot_files.PREDICTED_RECORD_FILE,
            },
            library_damaged=None if self.library is None else self.library.meta.get("damaged"),
            measured_database=None
            if self.measured_db is None
            else {
                "workload": one_shot_files.MEASURED_WORKLOAD_FILE,
                "tuning_record": one_shot_files.MEASURED_RECORD_FILE,
            },
        )
        result.summary_path = one_shot_files.write_summary(self.work_dir, summary)
        if not any(t.status in ("predicted", "measured") for t in outcomes):
            details = "; ".join(f"{t.task_name}: {t.error or t.status}" for t in outcomes)
            raise OneShotError(f"one-shot tuning found no schedule for any task ({details})")
        return result

    def _search(self, task: Task, rand_state: int) -> TaskSearch:
        """The library's schedules when it has some that fit the task, else the search."""
        finalists = max(self.settings.finalists, self.verify, self.settings.verify_uncertain)
        library_notes: list[str] = []
        confidence = TaskConfidence("none", note="no schedule library")
        if self.library is not None:
            try:
                found = library_search(
                    task.mod, self.target, self.model.cost_model, self.library,
                    task_name=task.name, rand_state=rand_state, settings=self.settings,
                    neighbours=self.neighbours, finalists=finalists,
                )  # fmt: skip
            except Exception as err:  # the library is an aid: the search can still serve
                logger.warning("library schedules for %s failed: %s; searching instead",
                               task.name, first_line(err))  # fmt: skip
                library_notes = [f"library: failed ({first_line(err)}); searched instead"]
                confidence = TaskConfidence("none", note="the library failed; searched")
            else:
                if found.finalists:
                    return found
                library_notes = [f"library: {note}; searched instead" for note in found.notes]
                # the neighbours stay on record; the pick is the search's
                confidence = replace(
                    found.confidence,
                    label="none",
                    note=found.confidence.note or "no library schedule fits; searched",
                )
        found = search_task(
            task.mod, self.target, self.model.cost_model, task_name=task.name,
            rand_state=rand_state, settings=self.settings, finalists=finalists,
        )  # fmt: skip
        found.notes[:0] = library_notes
        found.confidence = confidence
        return found

    def _from_store(self, task: Task) -> TaskOutcome | None:
        """The task's outcome when the record store measured this very task for the target: its
        fastest record is committed as the pick, with no search and no measurement."""
        started = time.perf_counter()
        record = one_shot_files.stored_record(self.record_store, task.mod, self.target)
        if record is None:
            return None
        mod = one_shot_files.task_module(task.mod)
        run_secs = [float(s) for s in record.run_secs]
        workload = self.predicted_db.commit_workload(mod)
        self.predicted_db.commit_tuning_record(
            ms.database.TuningRecord(
                record.trace, workload, run_secs, self.target, record.args_info
            )
        )
        seconds = Measurement(1, 0.0, run_secs).median_seconds
        confidence = TaskConfidence(
            "exact", distance=0.0, neighbour="record store", same_kind=True,
            same_main_block=True,
        )  # fmt: skip
        logger.info("%s: the record store's fastest measurement (%.4g s), no search; "
                    "confidence %s", task.name, seconds, confidence.describe())  # fmt: skip
        return TaskOutcome(
            task_name=task.name,
            status="measured",
            weight=task.weight,
            search_seconds=time.perf_counter() - started,
            measured_seconds=seconds,
            source="store",
            origin="store",
            own_measurement=True,
            confidence=confidence,
        )

    def _tune_task(self, task: Task, rand_state: int) -> TaskOutcome:
        try:
            stored = self._from_store(task)
        except Exception as err:  # the store is an aid: the search can still serve
            logger.warning("the record store's record of %s failed: %s; searching instead",
                           task.name, first_line(err))  # fmt: skip
            stored = None
        if stored is not None:
            return stored
        try:
            found = self._search(task, rand_state)
        except Exception as err:  # one broken task must not cost the whole model its tuning
            logger.warning("one-shot search of %s failed: %s", task.name, first_line(err))
            return TaskOutcome(task.name, "failed", weight=task.weight, error=first_line(err))
        outcome = TaskOutcome(
            task_name=task.name,
            status="no-schedule",
            weight=task.weight,
            finalists=len(found.finalists),
            scored=found.scored,
            score_median=found.score_median,
            search_seconds=found.search_seconds,
            predict_seconds=found.predict_seconds,
            cpu_seconds=found.cpu_seconds,
            error="; ".join(found.notes) or None,
            source=found.source,
            neighbours=found.neighbours,
            confidence=found.confidence,
        )
        best = found.best
        if best is None:
            logger.info("%s: no schedule; confidence %s", task.name,
                        found.confidence.describe())  # fmt: skip
            return outcome
        workload = self.predicted_db.commit_workload(found.mod)
        self.predicted_db.commit_tuning_record(
            ms.database.TuningRecord(
                best.trace, workload, [PREDICTED_RUN_SECS], self.target, best.candidate.args_info
            )
        )
        outcome.status, outcome.score, outcome.predicted_rank = "predicted", best.score, 1
        outcome.origin, outcome.own_measurement = best.origin, best.own_measurement
        count = self._verify_count(found.confidence)
        if count:
            self._verify(found, outcome, count)
        logger.info(
            "%s: %s, score %.4g (rank %d of %d finalists), %d scored in %.2f s; confidence %s",
            task.name, outcome.status, outcome.score, outcome.predicted_rank, outcome.finalists,
            outcome.scored, outcome.search_seconds, found.confidence.describe(),
        )  # fmt: skip
        return outcome

    def _verify_count(self, confidence: TaskConfidence) -> int:
        """How many finalists of a task of this confidence to measure: ``verify`` for every
        task, at least ``verify_uncertain`` for the uncertain ones."""
        uncertain = self.settings.verify_uncertain if confidence.uncertain else 0
        return max(self.verify, uncertain)

    def _verify(self, found: TaskSearch, outcome: TaskOutcome, count: int) -> None:
        """Measure the top ``count`` finalists; commit every measurement (real records) and
        mark the fastest as the task's pick."""
        started = time.perf_counter()
        picks = found.finalists[:count]
        builder, runner = self._builder_runner()
        results = measure(builder, runner, self.target, [f.candidate for f in picks])
        workload = self.measured_db.commit_workload(found.mod)
        for finalist, result in zip(picks, results, strict=True):
            secs = run_secs_of(result)
            outcome.verified.append(
                Measurement(finalist.rank, finalist.score, secs, result.error_msg)
            )
            self.measured_db.commit_tuning_record(
                ms.database.TuningRecord(
                    finalist.trace,
                    workload,
                    secs or [FAILED_RUN_SECS],
                    self.target,
                    finalist.candidate.args_info,
                )
            )
        outcome.verify_seconds = time.perf_counter() - started
        valid = [m for m in outcome.verified if m.median_seconds is not None]
        if not valid:
            logger.warning(
                "%s: all %d verified finalists failed to build or run; keeping the predicted "
                "record (first error: %s)", found.task_name, len(picks),
                outcome.verified[0].error if outcome.verified else "none",
            )  # fmt: skip
            return
        # the database applies the record with the lowest mean run_secs; pick by the same rule
        # so the reported schedule is the one a later compile uses (medians can disagree)
        fastest = min(valid, key=lambda m: m.mean_seconds)
        outcome.status = "measured"
        outcome.score, outcome.predicted_rank = fastest.score, fastest.rank
        picked = found.finalists[fastest.rank - 1]
        outcome.origin, outcome.own_measurement = picked.origin, picked.own_measurement
        outcome.measured_seconds = fastest.median_seconds
