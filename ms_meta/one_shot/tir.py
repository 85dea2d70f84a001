"""One-Shot tuning of TIR: tuned kernels from the pre-trained cost model, with no measurement.

Each PrimFunc of the module is a task (as in ``ms.tune_tir``). Each task's candidates are the
measured schedules of its nearest tasks in a schedule library (:mod:`ms_meta.one_shot.library`),
replayed on it, or, where the library has none that fit, those of MetaSchedule's evolutionary
search; :class:`~ms_meta.MetaCostModel` alone scores them, and the best-ranked schedule of every
task is committed to a database that ``compile_tir`` applies (see :mod:`ms_meta.one_shot.run`).
A task the record store already measured for the target takes the store's fastest record.
"""

from __future__ import annotations

import os

import tvm
from tvm.s_tir import meta_schedule as ms

from ms_meta.one_shot.library import DEFAULT_NEIGHBOURS
from ms_meta.one_shot.result import OneShotResult
from ms_meta.one_shot.run import (
    Library,
    NothingToTuneError,
    OneShotRun,
    Task,
    Weights,
    check_static,
)
from ms_meta.one_shot.settings import SearchSettings
from ms_meta.store.access import Store
from ms_meta.tuning.measure import MeasureSettings

__all__ = ["run_tir", "tune_tir"]


def _tir_tasks(mod) -> list[Task]:
    if isinstance(mod, tvm.tirx.PrimFunc):
        check_static("main", mod)
        return [Task("main", mod)]
    if not isinstance(mod, tvm.IRModule):
        raise NothingToTuneError(
            f"expected a TIR PrimFunc or an IRModule of PrimFuncs, got {type(mod).__name__}"
        )
    tasks = [
        Task(gv.name_hint, func)
        for gv, func in mod.functions_items()
        if isinstance(func, tvm.tirx.PrimFunc)
    ]
    if not tasks:
        held = ", ".join(f"{type(f).__name__} {gv.name_hint}" for gv, f in mod.functions_items())
        raise NothingToTuneError(
            f"the module has no TIR PrimFunc to tune (it holds: {held or 'nothing'}); "
            "for a Relax model use ms_meta.one_shot.tune_relax"
        )
    for task in tasks:
        check_static(task.name, task.mod)
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
    allow_other_cpu: bool = False,
    builder: ms.builder.Builder | None = None,
    runner: ms.runner.Runner | None = None,
    measure_settings: MeasureSettings | None = None,
    store: Store = "default",
) -> OneShotResult:
    """:func:`tune_tir`, returning the full :class:`~ms_meta.one_shot.result.OneShotResult`
    (per-task scores and timings) instead of the database only."""
    tasks = _tir_tasks(mod)  # bad input fails before the model loads
    return OneShotRun(
        target=target, work_dir=work_dir, weights=weights, library=library,
        neighbours=neighbours, verify=verify, seed=seed,
        settings=settings, cost_model=cost_model, allow_other_cpu=allow_other_cpu,
        builder=builder, runner=runner,
        measure_settings=measure_settings, store=store,
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
    allow_other_cpu: bool = False,
    builder: ms.builder.Builder | None = None,
    runner: ms.runner.Runner | None = None,
    measure_settings: MeasureSettings | None = None,
    store: Store = "default",
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
        Population, generations and number of finalists of the search; its
        ``verify_uncertain=K`` measures the K best-ranked schedules of only the tasks whose
        confidence is ``far`` or ``none`` (the result's ``TaskOutcome.confidence``: how far
        the task is from the library's measured schedules).
    cost_model : CostModel, optional
        A ready cost model (e.g. a loaded MetaCostModel reused across calls); ``weights`` is
        then ignored. Only its ``predict`` is called.
    allow_other_cpu : bool
        Accept ``weights`` trained for another CPU of the same target kind (with a warning);
        without it they are refused (:class:`~ms_meta.errors.WeightsError`).
    builder, runner : optional
        Used by ``verify`` only (default: ``make_builder()``, ``make_local_runner()``).
    measure_settings : MeasureSettings, optional
        How ``verify`` times candidates.
    store : "default", path or None
        The record store (:mod:`ms_meta.store`; ``"default"``: ``$MS_META_STORE``, else the
        user's cache file). A task it holds a valid measurement of for ``target`` compiles
        from its fastest record with no search (origin ``"store"``); its fastest schedules of
        other tasks measured for ``target`` join ``library``, replacing the library's own for
        the same task; ``verify``'s measurements are recorded into it (a task taken from the
        store is not measured again). ``None``: none of this.

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
        cost_model=cost_model, allow_other_cpu=allow_other_cpu, builder=builder, runner=runner,
        measure_settings=measure_settings, store=store,
    ).database  # fmt: skip
