"""One-shot tuning: tuned kernels from the pre-trained cost model, with no hardware measurement.

Each task's candidates are the measured schedules of its nearest tasks in a schedule library
(:mod:`ms_meta.one_shot.library`), replayed on it, or, where the library has none that fit,
those of MetaSchedule's evolutionary search; :class:`~ms_meta.MetaCostModel` alone scores them
(see :mod:`ms_meta.one_shot.search`), and the best-ranked schedule of every task is committed to
a database that ``compile_tir``/``compile_relax`` apply.
Records are stored as described in :mod:`ms_meta.one_shot.store`: predicted ones apart from
measured ones, under names nothing else reads as measurements.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import tvm
from tvm.s_tir import meta_schedule as ms
from tvm.s_tir.meta_schedule.utils import fork_seed

from ms_meta.data.records import cpu_label
from ms_meta.errors import MsMetaError, TargetError
from ms_meta.one_shot import store
from ms_meta.one_shot.library import (
    DEFAULT_NEIGHBOURS,
    ScheduleLibrary,
    default_library_path,
    load_library,
)
from ms_meta.one_shot.result import Measurement, OneShotResult, TaskOutcome
from ms_meta.one_shot.search import TaskSearch, library_search, search_task
from ms_meta.one_shot.settings import PREDICTED_RUN_SECS, SearchSettings
from ms_meta.run_secs import FAILED_RUN_SECS
from ms_meta.tuning.intrin import import_tensor_intrinsics
from ms_meta.tuning.measure import (
    MeasureSettings,
    make_local_runner,
    measure,
    run_secs_of,
)
from ms_meta.tuning.target import parse_target, target_summary

logger = logging.getLogger(__name__)

Weights = str | os.PathLike | Literal["default"] | None
Library = ScheduleLibrary | str | os.PathLike | Literal["default"] | None

# Set on the log record of the untrained-model warning.
MODEL_WARNING_ATTR = "ms_meta_model_warning"


class OneShotError(MsMetaError):
    """A one-shot run that cannot start or produced nothing."""


class NothingToTuneError(OneShotError, ValueError):
    """The module holds no function that one-shot tuning can schedule."""


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


def _load_model(weights: Weights, target: tvm.target.Target, seed: int, cost_model) -> _Model:
    started = time.perf_counter()
    import_tensor_intrinsics(target.kind.name)  # TuneContext would import every backend's
    if cost_model is None:
        from ms_meta.model.cost_model import MetaCostModel

        cost_model = MetaCostModel(weights=weights, target=target, seed=seed)
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


def _resolve_library(library: Library, target: tvm.target.Target, model: _Model):
    """(library or None, what to report as its source)."""
    if library is None or isinstance(library, ScheduleLibrary):
        source = None if library is None else library.meta.get("path", "in memory")
        return library, source
    summary = target_summary(target)
    path = library
    if isinstance(library, str) and library == "default":
        path = default_library_path(summary, model.weights)
        if path is None:
            logger.info("no shipped schedule library for this target: every task is searched")
            return None, None
    loaded = load_library(path)
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


def _check_target(target) -> tvm.target.Target:
    target = parse_target(target)
    if target.kind.name in ("llvm", "c") and int(target.attrs.get("num-cores", 0) or 0) < 1:
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


def _first_line(err: BaseException) -> str:
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[-1] if lines else ''}".strip()


@dataclass
class _Task:
    name: str
    mod: tvm.IRModule | tvm.tirx.PrimFunc
    weight: float = 1.0


class _Run:
    """One run: searches each task, commits its pick, optionally verifies, writes the summary."""

    def __init__(
        self, *, target, work_dir, weights, verify, seed, settings, cost_model, builder, runner,
        measure_settings, library="default", neighbours=DEFAULT_NEIGHBOURS,
    ) -> None:  # fmt: skip
        if verify < 0:
            raise OneShotError(f"verify must be >= 0, got {verify}")
        self.target = _check_target(target)
        self.work_dir = _work_dir(work_dir)
        self.verify = int(verify)
        self.seed = int(seed)
        self.settings = settings or SearchSettings()
        self.model = _load_model(weights, self.target, self.seed, cost_model)
        self.library, self.library_source = _resolve_library(library, self.target, self.model)
        self.neighbours = int(neighbours)
        self.predicted_db = store.fresh_predicted_database(self.work_dir)
        self.measured_db = store.measured_database(self.work_dir) if self.verify else None
        self._builder, self._runner = builder, runner
        self.measure_settings = measure_settings or MeasureSettings()

    # The builder and runner are made on first use only: one-shot without verify never builds
    # or runs anything (and saves their 2-3 s start-up each).
    def _builder_runner(self):
        if self._builder is None:
            from ms_meta.tuning.builder import make_builder

            self._builder = make_builder()
        if self._runner is None:
            self._runner = make_local_runner(self.measure_settings)
        return self._builder, self._runner

    def run(self, tasks: list[_Task], kind: str) -> OneShotResult:
        rand_states = fork_seed(self.seed, n=len(tasks))
        outcomes = []
        for task, rand_state in zip(tasks, rand_states, strict=True):
            outcomes.append(self._tune_task(task, rand_state))
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
        )
        summary = result.to_dict()
        summary.update(
            kind=kind,
            created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            predicted_database={
                "workload": store.PREDICTED_WORKLOAD_FILE,
                "tuning_record": store.PREDICTED_RECORD_FILE,
            },
            measured_database=None
            if self.measured_db is None
            else {
                "workload": store.MEASURED_WORKLOAD_FILE,
                "tuning_record": store.MEASURED_RECORD_FILE,
            },
        )
        result.summary_path = store.write_summary(self.work_dir, summary)
        if not any(t.status in ("predicted", "measured") for t in outcomes):
            details = "; ".join(f"{t.task_name}: {t.error or t.status}" for t in outcomes)
            raise OneShotError(f"one-shot tuning found no schedule for any task ({details})")
        return result

    def _search(self, task: _Task, rand_state: int) -> TaskSearch:
        """The library's schedules when it has some that fit the task, else the search."""
        finalists = max(self.settings.finalists, self.verify)
        library_notes: list[str] = []
        if self.library is not None:
            try:
                found = library_search(
                    task.mod, self.target, self.model.cost_model, self.library,
                    task_name=task.name, rand_state=rand_state, settings=self.settings,
                    neighbours=self.neighbours, finalists=finalists,
                )  # fmt: skip
            except Exception as err:  # the library is an aid: the search can still serve
                logger.warning("library schedules for %s failed: %s; searching instead",
                               task.name, _first_line(err))  # fmt: skip
                library_notes = [f"library: failed ({_first_line(err)}); searched instead"]
            else:
                if found.finalists:
                    return found
                library_notes = [f"library: {note}; searched instead" for note in found.notes]
        found = search_task(
            task.mod, self.target, self.model.cost_model, task_name=task.name,
            rand_state=rand_state, settings=self.settings, finalists=finalists,
        )  # fmt: skip
        found.notes[:0] = library_notes
        return found

    def _tune_task(self, task: _Task, rand_state: int) -> TaskOutcome:
        try:
            found = self._search(task, rand_state)
        except Exception as err:  # one broken task must not cost the whole model its tuning
            logger.warning("one-shot search of %s failed: %s", task.name, _first_line(err))
            return TaskOutcome(task.name, "failed", weight=task.weight, error=_first_line(err))
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
        )
        best = found.best
        if best is None:
            return outcome
        workload = self.predicted_db.commit_workload(found.mod)
        self.predicted_db.commit_tuning_record(
            ms.database.TuningRecord(
                best.trace, workload, [PREDICTED_RUN_SECS], self.target, best.candidate.args_info
            )
        )
        outcome.status, outcome.score, outcome.predicted_rank = "predicted", best.score, 1
        outcome.origin, outcome.own_measurement = best.origin, best.own_measurement
        if self.verify:
            self._verify(found, outcome)
        logger.info(
            "%s: %s, score %.4g (rank %d of %d finalists), %d scored in %.2f s",
            task.name, outcome.status, outcome.score, outcome.predicted_rank, outcome.finalists,
            outcome.scored, outcome.search_seconds,
        )  # fmt: skip
        return outcome

    def _verify(self, found: TaskSearch, outcome: TaskOutcome) -> None:
        """Measure the top ``verify`` finalists; commit every measurement (real records) and
        mark the fastest as the task's pick."""
        started = time.perf_counter()
        picks = found.finalists[: self.verify]
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


def _tir_tasks(mod) -> list[_Task]:
    if isinstance(mod, tvm.tirx.PrimFunc):
        return [_Task("main", mod)]
    if not isinstance(mod, tvm.IRModule):
        raise NothingToTuneError(
            f"expected a TIR PrimFunc or an IRModule of PrimFuncs, got {type(mod).__name__}"
        )
    tasks = [
        _Task(gv.name_hint, func)
        for gv, func in mod.functions_items()
        if isinstance(func, tvm.tirx.PrimFunc)
    ]
    if not tasks:
        held = ", ".join(f"{type(f).__name__} {gv.name_hint}" for gv, f in mod.functions_items())
        raise NothingToTuneError(
            f"the module has no TIR PrimFunc to tune (it holds: {held or 'nothing'}); "
            "for a Relax model use ms_meta.one_shot.tune_relax"
        )
    return sorted(tasks, key=lambda t: t.name)  # the order ms.tune_tir uses


def run_tir(
    mod: tvm.IRModule | tvm.tirx.PrimFunc,
    target=None,
    work_dir: str | os.PathLike | None = None,
    *,
    weights: Weights = "default",
    library: Library = "default",
    neighbours: int = DEFAULT_NEIGHBOURS,
    verify: int = 0,
    seed: int = 0,
    settings: SearchSettings | None = None,
    cost_model=None,
    builder: ms.builder.Builder | None = None,
    runner: ms.runner.Runner | None = None,
    measure_settings: MeasureSettings | None = None,
) -> OneShotResult:
    """:func:`tune_tir`, returning the full :class:`~ms_meta.one_shot.result.OneShotResult`
    (per-task scores and timings) instead of the database only."""
    tasks = _tir_tasks(mod)  # bad input fails before the model loads
    return _Run(
        target=target, work_dir=work_dir, weights=weights, library=library,
        neighbours=neighbours, verify=verify, seed=seed,
        settings=settings, cost_model=cost_model, builder=builder, runner=runner,
        measure_settings=measure_settings,
    ).run(tasks, "tir")  # fmt: skip


def tune_tir(
    mod: tvm.IRModule | tvm.tirx.PrimFunc,
    target=None,
    work_dir: str | os.PathLike | None = None,
    *,
    weights: Weights = "default",
    library: Library = "default",
    neighbours: int = DEFAULT_NEIGHBOURS,
    verify: int = 0,
    seed: int = 0,
    settings: SearchSettings | None = None,
    cost_model=None,
    builder: ms.builder.Builder | None = None,
    runner: ms.runner.Runner | None = None,
    measure_settings: MeasureSettings | None = None,
) -> ms.database.Database:
    """Tune TIR with the cost model alone: no builder, no runner, no model update.

    Each PrimFunc of ``mod`` is a task (as in ``ms.tune_tir``). Apply the result with
    ``ms.tir_integration.compile_tir(database, mod, target)``.

    Parameters
    ----------
    mod : IRModule or PrimFunc
        The TIR to tune.
    target : Target, dict, JSON string or None
        Default: this machine's CPU. A CPU target needs ``num-cores``.
    work_dir : path, optional
        Where the records and ``one_shot_summary.json`` go (see :mod:`ms_meta.one_shot.store`);
        default: a new temporary directory.
    weights : "default", path or None
        The :class:`~ms_meta.MetaCostModel` weights. ``"default"`` takes the weights shipped for
        the target's CPU; for a CPU without its own, another CPU's shipped weights with a
        warning (kept in the result); with none at all, an untrained model with a loud
        warning (one-shot picks of an untrained model are no better than random).
    library : "default", path, ScheduleLibrary or None
        Measured schedules of other tasks (:mod:`ms_meta.one_shot.library`, built with
        ``ms-meta library build``). For a task of an operator kind the library holds, the
        schedules of its ``neighbours`` nearest library tasks are replayed on it and the model
        picks among them; other tasks, and tasks none of those schedules fits, are searched.
        ``"default"``: the library shipped for the target's CPU (or beside the weights used),
        if any. ``None``: search every task.
    neighbours : int
        How many library tasks lend their schedules to a task.
    verify : int
        Measure the ``verify`` best-scored schedules of each task (``make_builder`` and
        ``make_local_runner``) and keep the fastest: its record is then a real measurement.
        0 (default) measures nothing.
    seed : int
        Seeds the search (and an untrained model's initialization).
    settings : SearchSettings, optional
        Population, generations and number of finalists of the search.
    cost_model : CostModel, optional
        A ready cost model (e.g. a loaded MetaCostModel reused across calls); ``weights`` is
        then ignored. Only its ``predict`` is called.
    builder, runner : optional
        Used by ``verify`` only (default: ``make_builder()``, ``make_local_runner()``).
    measure_settings : MeasureSettings, optional
        How ``verify`` times candidates.

    Returns
    -------
    Database
        One record per task: predicted (``run_secs`` = ``PREDICTED_RUN_SECS``) or, with
        ``verify``, measured.

    Raises
    ------
    NothingToTuneError
        ``mod`` holds no PrimFunc.
    WeightsError
        Missing, corrupt or mismatched weights.
    OneShotError
        No task got a schedule.
    """
    return run_tir(
        mod, target, work_dir, weights=weights, library=library, neighbours=neighbours,
        verify=verify, seed=seed, settings=settings,
        cost_model=cost_model, builder=builder, runner=runner, measure_settings=measure_settings,
    ).database  # fmt: skip


def prepare_relax(mod, params, target: tvm.target.Target) -> tvm.IRModule:
    """Bind ``params`` and legalize + fuse ``mod`` exactly as ``compile_relax`` does before it
    applies a database, so that the tasks found here are the functions it looks up."""
    from tvm import relax
    from tvm.relax import pipeline as relax_pipeline

    if isinstance(mod, relax.Function):
        mod = tvm.IRModule({"main": mod})
    if not isinstance(mod, tvm.IRModule):
        raise NothingToTuneError(
            f"expected a Relax IRModule or relax.Function, got {type(mod).__name__}"
        )
    if params and "main" not in [gv.name_hint for gv in mod.get_global_vars()]:
        raise NothingToTuneError("params are given, but the module has no 'main' function")
    try:
        if params:
            mod = relax.transform.BindParams("main", params)(mod)
        try:
            dispatch = list(relax_pipeline.library_dispatch_passes(target))
        except (ValueError, AttributeError):  # targets without a registered pipeline
            dispatch = []
        return tvm.transform.Sequential([
            *dispatch,
            relax.transform.LegalizeOps(),
            relax.transform.AnnotateTIROpPattern(),
            relax.transform.FoldConstant(),
            relax.transform.FuseOps(),
            relax.transform.FuseTIR(),
        ])(mod)  # fmt: skip
    except MsMetaError:
        raise
    except Exception as err:  # TVM's errors carry a C++ backtrace; keep the message
        raise OneShotError(
            f"could not legalize and fuse the Relax module: {_first_line(err)}"
        ) from None


def relax_tasks(mod, params, target, op_names: list[str] | None = None) -> list[_Task]:
    fused = prepare_relax(mod, params, target)
    extracted = ms.relax_integration.extract_tasks(fused, target)
    tasks = []
    for task in extracted:
        if op_names and not any(op in task.task_name for op in op_names):
            continue
        if task.mod.attrs and task.mod.attrs.get("tirx.is_scheduled", False):
            continue  # scheduled already (e.g. by a library dispatch): nothing to search
        tasks.append(_Task(task.task_name, task.dispatched[0], float(task.weight)))
    if not tasks:
        which = f" matching {op_names}" if op_names else ""
        raise NothingToTuneError(
            f"the Relax module has no TIR task to tune{which} (found {len(extracted)} tasks)"
        )
    return tasks


def run_relax(
    mod,
    params,
    target=None,
    work_dir: str | os.PathLike | None = None,
    *,
    weights: Weights = "default",
    library: Library = "default",
    neighbours: int = DEFAULT_NEIGHBOURS,
    verify: int = 0,
    seed: int = 0,
    settings: SearchSettings | None = None,
    cost_model=None,
    builder: ms.builder.Builder | None = None,
    runner: ms.runner.Runner | None = None,
    measure_settings: MeasureSettings | None = None,
    op_names: list[str] | None = None,
) -> OneShotResult:
    """:func:`tune_relax`, returning the full :class:`~ms_meta.one_shot.result.OneShotResult`
    (per-task scores and timings) instead of the database only."""
    target = _check_target(target)
    tasks = relax_tasks(mod, params, target, op_names)
    return _Run(
        target=target, work_dir=work_dir, weights=weights, library=library,
        neighbours=neighbours, verify=verify, seed=seed,
        settings=settings, cost_model=cost_model, builder=builder, runner=runner,
        measure_settings=measure_settings,
    ).run(tasks, "relax")  # fmt: skip


def tune_relax(
    mod,
    params,
    target=None,
    work_dir: str | os.PathLike | None = None,
    *,
    weights: Weights = "default",
    library: Library = "default",
    neighbours: int = DEFAULT_NEIGHBOURS,
    verify: int = 0,
    seed: int = 0,
    settings: SearchSettings | None = None,
    cost_model=None,
    builder: ms.builder.Builder | None = None,
    runner: ms.runner.Runner | None = None,
    measure_settings: MeasureSettings | None = None,
    op_names: list[str] | None = None,
) -> ms.database.Database:
    """One-shot tuning of every TIR task of a Relax model.

    Tasks are extracted with ``ms.relax_integration.extract_tasks`` after the same
    legalization and fusion ``compile_relax`` applies, searched one by one as in
    :func:`tune_tir`, and committed to one database. Apply it with
    ``ms.relax_integration.compile_relax(database, mod, target, params)`` (the *un-fused*
    ``mod``). Per-task scores and timings: :func:`run_relax`, or ``one_shot_summary.json`` in
    ``work_dir`` (:func:`~ms_meta.one_shot.store.read_summary`).

    Parameters
    ----------
    mod : IRModule or relax.Function
        The Relax model, as imported (not yet legalized or fused).
    params : dict of name to Tensor, or None
        Weights to bind to ``main``'s parameters (as ``compile_relax`` does).
    op_names : list of str, optional
        Tune only tasks whose name contains one of these.

    Other parameters are those of :func:`tune_tir`. A task whose search fails is logged and
    left untuned (``compile_relax`` then compiles it with its default schedule).
    """
    return run_relax(
        mod, params, target, work_dir, weights=weights, library=library,
        neighbours=neighbours, verify=verify, seed=seed,
        settings=settings, cost_model=cost_model, builder=builder, runner=runner,
        measure_settings=measure_settings, op_names=op_names,
    ).database  # fmt: skip
