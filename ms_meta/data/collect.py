"""Collect measured schedules into standard MetaSchedule JSON databases, resumably.

For each task, a share of the trials are uniform random samples of the design space
(``ReplayTrace``) and the rest come from cost-model-guided evolutionary search, which
concentrates samples on fast code (One-Shot Tuner's finding: a data set for a good predictor
needs many near-optimal programs, which random sampling rarely yields).

Layout: ``<root>/<target-key>/<task-name>/{database_workload.json,
database_tuning_record.json, meta.json}`` (:mod:`ms_meta.data.layout`). Records are appended
after every measured batch; a kill loses at most the batch in flight, and a re-run continues
where it stopped. A stop request (Ctrl-C, SIGTERM) that arrives while a batch is measured drops
that batch, and the next run measures as many schedules in its place: its timings may come from
worker processes the interrupt reached, and a schedule must never be recorded as failed for
that.

The same seed samples the same random schedules: candidate generation of the random phase runs
on one thread, since MetaSchedule hands its per-thread random states to whichever thread is
free. (The guided phase depends on the measured latencies, so it repeats only as far as they
do.)

Candidates are built here and timed either by a local runner or, with
:class:`~ms_meta.tuning.rpc.RPCSettings`, by TVM's ``RPCRunner`` on every device registered
under one key at an RPC tracker (:mod:`ms_meta.tuning.rpc`).

The learned models a collection may use (the meta-learned cost model, One-Shot searches) live
in packages built on top of this one, so callers pass them in as :class:`LearnedModels`
(:func:`ms_meta.cli.collect.learned_models` gives the shipped ones).
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ms_meta.data.layout import META_FILE, RECORD_FILE, WORKLOAD_FILE
from ms_meta.data.stop import StopRequest, run_without_sigint, writing
from ms_meta.data.task_files import (
    TaskLockedError,
    count_lines,
    existing_trace_keys,
    repaired_count,
    task_lock,
    trace_key,
)
from ms_meta.data.task_meta import (
    ONE_SHOT_PHASE,
    CollectConfig,
    CollectSummary,
    ProgressCallback,
    TaskProgress,
    local_machine,
    looks_exhausted,
    note_source,
    one_shot_records,
    read_meta_json,
    records_wanted,
    skips_as_exhausted,
    update_meta,
)
from ms_meta.errors import MsMetaError
from ms_meta.tuning.rpc import (
    RPCError,
    RPCSettings,
    check_rpc_results,
    count_rpc_devices,
    make_rpc_runner,
    query_rpc_cpu,
)
from ms_meta.workloads import Workload

__all__ = [
    "META_FILE",
    "RECORD_FILE",
    "WORKLOAD_FILE",
    "CollectConfig",
    "CollectSummary",
    "LearnedModels",
    "Measurer",
    "OneShotSearch",
    "RPCError",
    "RPCSettings",
    "StopRequest",
    "TaskLockedError",
    "TaskProgress",
    "collect",
    "collect_task",
    "commit_measured",
    "count_lines",
    "count_rpc_devices",
    "local_machine",
    "make_measurer",
    "note_source",
    "one_shot_records",
    "query_rpc_cpu",
    "records_wanted",
    "task_lock",
]

logger = logging.getLogger(__name__)

# A phase that ends short (its samples were already on disk) is re-run with a new seed this
# many times before the collector accepts fewer records for the task.
MAX_PHASE_ATTEMPTS = 3


class OneShotSearch(Protocol):
    """One-Shot searches whose best-scored finalists a collection measures."""

    label: str  # meta.json's cost_model of the records, e.g. "one-shot:shipped"

    def finalists(self, mod, task_name: str, rand_state: int) -> list[tuple[Any, Any]]:
        """``(trace, MeasureCandidate)`` of one seeded search, best-scored first."""


@dataclass(frozen=True)
class LearnedModels:
    """Factories of the learned models a collection may use.

    Attributes
    ----------
    meta_cost_model : callable, optional
        ``(target, seed) -> CostModel`` for ``CollectConfig.cost_model == "meta"``.
    one_shot_search : callable, optional
        ``(config, target) -> OneShotSearch`` for ``CollectConfig.one_shot_picks``.
    """

    meta_cost_model: Callable[[Any, int], Any] | None = None
    one_shot_search: Callable[[CollectConfig, Any], OneShotSearch] | None = None


@dataclass(frozen=True)
class Measurer:
    """Builder and runner of a collection, and what meta.json says about the runner."""

    builder: object
    runner: object
    runner_name: str = "local"  # "local" or "rpc <key>@<host:port>"
    cpu: str | None = None  # the measuring device's CPU; None: this machine's
    threads: int | None = None  # runtime threads per candidate; None: the remote's default
    cache_flush: bool = False  # caches flushed before each timed run


def make_measurer(target, config: CollectConfig) -> Measurer:
    """The builder (always local) and the runner (local, or RPC per ``config.rpc``)."""
    from ms_meta.tuning.builder import make_builder
    from ms_meta.tuning.measure import MeasureSettings, make_local_runner

    cores = target.attrs.get("num-cores")
    settings = MeasureSettings(
        number=config.number,
        repeat=config.repeat,
        min_repeat_ms=config.min_repeat_ms,
        realtime=config.realtime and config.rpc is None,
        threads=int(cores) if cores else None,  # as many as the code was built for
    )
    builder = make_builder(max_workers=config.max_workers)
    if config.rpc is None:
        if config.cache_flush:
            settings = settings.with_cold_caches()
        return Measurer(
            builder,
            make_local_runner(settings),
            threads=settings.runtime_threads(),
            cache_flush=config.cache_flush,
        )
    runner, cpu = make_rpc_runner(config.rpc, target, settings.evaluator_config())
    return Measurer(builder, runner, runner_name=config.rpc.describe(), cpu=cpu)


def _make_cost_model(kind: str, seed: int, target, models: LearnedModels):
    from tvm.s_tir import meta_schedule as ms

    if kind == "xgb":
        # Warm-up of 16 samples instead of 100: the random phase provides them.
        return ms.cost_model.XGBModel(num_warmup_samples=16, adaptive_training=True)
    if kind == "random":
        return ms.cost_model.RandomModel(seed=seed)
    if kind == "meta":
        if models.meta_cost_model is None:
            raise MsMetaError(
                "the 'meta' cost model needs LearnedModels(meta_cost_model=...); "
                "ms_meta.cli.collect.learned_models() gives the shipped one"
            )
        return models.meta_cost_model(target, seed)
    raise ValueError(f"unknown cost model {kind!r}; expected xgb, meta or random")


def _warm_start(model, context, database, db_workload) -> None:
    """Train the guiding model on what is already measured for this task."""
    from tvm.s_tir import Schedule
    from tvm.s_tir import meta_schedule as ms

    from ms_meta.run_secs import is_failed

    records = database.get_top_k(db_workload, 4096)
    if not records:
        return
    candidates, results = [], []
    for rec in records:
        try:
            sch = Schedule(rec.workload.mod)
            rec.trace.apply_to_schedule(sch, remove_postproc=False)
        except Exception:  # a record whose trace no longer applies is not usable here
            continue
        if is_failed(rec.run_secs):
            continue
        secs = [float(s) for s in rec.run_secs]
        candidates.append(ms.MeasureCandidate(sch, rec.args_info))
        results.append(ms.runner.RunnerResult(secs, None))
    if candidates:
        model.update(context, candidates, results)


def commit_measured(database, db_workload, target, candidate, secs: list[float] | None) -> None:
    """Append ``candidate``'s measurement to ``database`` as a tuning record; a failed build
    or run (``secs`` None) is stored with :data:`ms_meta.run_secs.FAILED_RUN_SECS`, as
    MetaSchedule's own tuning stores it."""
    from tvm.s_tir import meta_schedule as ms

    from ms_meta.run_secs import FAILED_RUN_SECS

    database.commit_tuning_record(
        ms.database.TuningRecord(
            candidate.sch.trace,
            db_workload,
            secs if secs is not None else [FAILED_RUN_SECS],
            target,
            candidate.args_info,
        )
    )


def collect_task(
    workload: Workload,
    root: Path,
    target,
    config: CollectConfig,
    builder,
    runner,
    on_progress: ProgressCallback | None = None,
    *,
    runner_name: str = "local",
    cpu: str | None = None,
    models: LearnedModels = LearnedModels(),
    stop: threading.Event | None = None,
) -> TaskProgress:
    """Measure ``config.trials_per_task`` schedules of one workload (minus those on disk).

    Raises :class:`TaskLockedError` if another process is collecting the same task.
    """
    from ms_meta.tuning.target import target_key

    task_dir = root / target_key(target) / workload.name
    with task_lock(task_dir):
        measurer = Measurer(builder, runner, runner_name=runner_name, cpu=cpu)
        return _collect_locked(
            workload, task_dir, target, config, measurer, on_progress, stop, models
        )


def _collect_locked(
    workload: Workload,
    task_dir: Path,
    target,
    config: CollectConfig,
    measurer: Measurer,
    on_progress: ProgressCallback | None,
    stop: threading.Event | None = None,
    models: LearnedModels = LearnedModels(),
) -> TaskProgress:
    from tvm.s_tir import meta_schedule as ms

    from ms_meta.tuning.contention import ContentionGuard
    from ms_meta.tuning.measure import ContentionReport, measure, run_secs_of
    from ms_meta.tuning.target import host_cpu

    record_path = task_dir / RECORD_FILE
    existing = repaired_count(task_dir)
    progress = TaskProgress(workload.name, existing)
    if records_wanted(task_dir, existing, config) == 0:
        return progress
    meta = read_meta_json(task_dir)
    seconds_before = float(meta.get("collect_seconds", 0.0))
    reruns_before = int(meta.get("timing_reruns", 0))
    disturbed_before = int(meta.get("disturbed_batches", 0))
    # [first, last] record lines of batches kept although every timing was disturbed; the
    # dataset builder leaves them out (ms_meta.data.dataset.disturbed_line_mask)
    disturbed_lines: list = list(meta.get("disturbed_lines") or [])
    # Which record lines came from random sampling and which from a guided search with which
    # cost model: the records a model-guided search meets are a different (harder) ranking
    # job than random samples, and evaluations want to tell them apart.
    sources: list = list(meta.get("sources") or [])
    run_started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    device = {"runner": measurer.runner_name, "cpu": measurer.cpu or host_cpu()}
    machine = measurer.runner_name if config.rpc is not None else local_machine()
    # Timings on a remote device are not disturbed by what runs here.
    guard = ContentionGuard() if config.contention_guard and config.rpc is None else None
    contention = ContentionReport()
    started = time.perf_counter()

    def save_meta(**extra) -> None:
        # After every batch, so that a killed run still accounts for its time.
        progress.seconds = time.perf_counter() - started
        progress.timing_reruns = contention.reruns
        progress.disturbed_batches = contention.disturbed
        if progress.measured:  # a run that added nothing keeps the last real rate
            extra["records_per_second"] = round(progress.records_per_second, 4)
        extra["sources"] = sources
        if guard is not None:
            extra["timing_reruns"] = reruns_before + contention.reruns
            extra["disturbed_batches"] = disturbed_before + contention.disturbed
            extra["disturbed_lines"] = disturbed_lines
        update_meta(
            task_dir,
            workload,
            target,
            config,
            **device,
            collect_seconds=seconds_before + progress.seconds,
            records=count_lines(record_path),
            **extra,
        )

    update_meta(task_dir, workload, target, config, **device)
    mod = workload.build()
    database = ms.database.JSONDatabase(work_dir=str(task_dir))
    db_workload = database.commit_workload(mod)
    seen = existing_trace_keys(record_path)

    def measure_and_commit(fresh: list, phase: str, source_model: str | None) -> list | None:
        """Time ``fresh``, append their records and account for them; returns the results, or
        None when a stop was requested meanwhile (the batch is dropped, never recorded)."""
        disturbed_so_far = contention.disturbed
        results = run_without_sigint(
            lambda: measure(measurer.builder, measurer.runner, target, fresh, guard, contention)
        )
        with writing(stop):  # an abort waits until the records and meta.json agree
            if stop is not None and stop.is_set():
                seen.difference_update(trace_key(cand.sch.trace) for cand in fresh)
                progress.stopped = True
                logger.info(
                    "%s: stop requested; %d schedules left unmeasured", workload.name, len(fresh)
                )
                return None
            first = existing + progress.measured + 1  # the batch's first record line
            if contention.disturbed > disturbed_so_far and fresh:
                disturbed_lines.append([first, first + len(fresh) - 1])
            if fresh:
                note_source(
                    sources, phase, source_model, run_started, first, len(fresh),
                    machine=machine, threads=measurer.threads, cache_flush=measurer.cache_flush,
                )  # fmt: skip
            check_rpc_results(results, config.rpc)
            failed_now = 0
            for cand, result in zip(fresh, results, strict=True):
                secs = run_secs_of(result)
                if secs is None:
                    failed_now += 1
                    logger.debug("%s: %s", workload.name, result.error_msg)
                else:
                    best = 1e6 * sorted(secs)[len(secs) // 2]
                    progress.best_us = min(progress.best_us or best, best)
                commit_measured(database, db_workload, target, cand, secs)
            progress.measured += len(fresh)
            progress.failed += failed_now
            save_meta()
            if on_progress is not None:
                on_progress(workload.name, len(fresh), failed_now)
            return results

    n_random_target = round(config.trials_per_task * config.random_fraction)
    phases = [("random", n_random_target), ("guided", config.trials_per_task)]
    if skips_as_exhausted(task_dir, existing, config):
        phases = []  # only One-Shot picks are wanted: the mark is about the other searches
    for phase, phase_target in phases:
        if progress.stopped:
            break
        for attempt in range(MAX_PHASE_ATTEMPTS):
            have = existing + progress.measured
            n_trials = phase_target - have
            if n_trials <= 0:
                break
            if phase == "random":
                strategy = ms.search_strategy.ReplayTrace(max_fail_count=100)
                model = None
            else:
                strategy = ms.search_strategy.EvolutionarySearch(
                    population_size=config.population_size,
                    genetic_num_iters=config.genetic_num_iters,
                )
                model = _make_cost_model(config.cost_model, config.seed, target, models)
            context = ms.TuneContext(
                mod=mod,
                target=target,
                space_generator="post-order-apply",
                search_strategy=strategy,
                task_name=workload.name,
                rand_state=config.seed + have + 1 + 7919 * attempt,
                # One thread makes the random samples a function of the seed (see above).
                num_threads=1 if phase == "random" else "physical",
            )
            if model is not None:
                _warm_start(model, context, database, db_workload)
            context.pre_tuning(
                max_trials=n_trials,
                num_trials_per_iter=min(config.batch_size, n_trials),
                design_spaces=context.generate_design_space(),
                database=database,
                cost_model=model,
            )
            measured_before = progress.measured
            while (candidates := context.generate_measure_candidates()) is not None:
                fresh, keys = [], []
                for cand in candidates:
                    key = trace_key(cand.sch.trace)
                    if key in seen:
                        progress.duplicates += 1
                        continue
                    if have + len(fresh) >= phase_target:
                        continue  # never more records than asked for
                    seen.add(key)
                    fresh.append(cand)
                    keys.append(key)
                results = measure_and_commit(fresh, phase, config.cost_model)
                if results is None:
                    break
                have += len(fresh)
                if model is not None and fresh:
                    model.update(context, fresh, results)
                # Duplicates get a neutral "not run" result so the search's trial count moves on.
                by_key = dict(zip(keys, results, strict=True))
                context.notify_runner_results(
                    candidates,
                    [
                        by_key.get(trace_key(c.sch.trace), ms.runner.RunnerResult(None, "dup"))
                        for c in candidates
                    ],
                )
                if not fresh and progress.duplicates > 4 * config.trials_per_task:
                    break  # a tiny design space: nothing new left to sample
                if stop is not None and stop.is_set():
                    break
            context.post_tuning()
            if progress.stopped or (stop is not None and stop.is_set()):
                progress.stopped = True
                break
            if progress.measured == measured_before:
                progress.exhausted = True
                break  # the search found nothing new; another seed will not either
            progress.exhausted = False  # only the last attempt's outcome counts
    if not progress.stopped and config.one_shot_picks:
        _measure_one_shot_picks(
            mod, workload.name, target, config, seen, measure_and_commit, progress, stop,
            already=one_shot_records(sources), models=models,
        )  # fmt: skip
    # Remember an exhausted design space, so that later runs do not spend minutes re-sampling
    # it; the mark holds only while the record count is the one it was made at.
    done = existing + progress.measured
    progress.exhausted = looks_exhausted(progress)
    save_meta(exhausted_at=done if progress.exhausted and done < config.trials_per_task else None)
    return progress


def _measure_one_shot_picks(
    mod, task_name, target, config, seen, measure_and_commit, progress, stop, *, already, models
) -> None:
    """Measure the best-scored unmeasured finalists of One-Shot searches until the task has
    ``config.one_shot_picks`` such records; each search has its own seed and contributes at
    most ``config.one_shot_per_search``."""
    need = config.one_shot_picks - already
    if need <= 0:
        return
    if models.one_shot_search is None:
        raise MsMetaError(
            "One-Shot picks need LearnedModels(one_shot_search=...); "
            "ms_meta.cli.collect.learned_models() gives the shipped one"
        )
    searcher = models.one_shot_search(config, target)
    searches_without_news = 0
    search = already  # seeds continue where an earlier run stopped
    while need > 0 and searches_without_news < MAX_PHASE_ATTEMPTS:
        finalists = searcher.finalists(mod, task_name, config.seed + 1 + 7919 * search)
        search += 1
        fresh = []
        for trace, candidate in finalists:
            key = trace_key(trace)
            if key in seen:
                progress.duplicates += 1
                continue
            if len(fresh) < min(need, config.one_shot_per_search):
                seen.add(key)
                fresh.append(candidate)
        if not fresh:
            searches_without_news += 1
            continue
        searches_without_news = 0
        if measure_and_commit(fresh, ONE_SHOT_PHASE, searcher.label) is None:
            return
        need -= len(fresh)
        if stop is not None and stop.is_set():
            progress.stopped = True
            return


def collect(
    workloads: Sequence[Workload],
    root: Path,
    target,
    config: CollectConfig | None = None,
    on_progress: ProgressCallback | None = None,
    on_task_done: Callable[[TaskProgress], None] | None = None,
    stop: threading.Event | None = None,
    models: LearnedModels = LearnedModels(),
) -> CollectSummary:
    """Collect every workload in turn; see :func:`collect_task`.

    Setting ``stop`` (say, from a SIGINT handler) ends the run after the batch in flight,
    which is dropped (the next run measures it), so no interrupt lands inside TVM's C++ code
    and no schedule is recorded as failed because of it.

    The builder and runner start only once a task needs measuring; a task that another
    collector holds is skipped (``TaskProgress.skipped`` says why, ``TaskProgress.locked``
    is set, and ``CollectSummary.locked`` lists them).

    Raises
    ------
    RPCError
        With ``config.rpc``: the tracker is unreachable or has no device under the key.
    """
    from ms_meta.tuning.intrin import import_tensor_intrinsics
    from ms_meta.tuning.target import target_key

    config = config or CollectConfig()
    if config.rpc is not None:
        count_rpc_devices(config.rpc)  # fail before touching the record tree
    import_tensor_intrinsics(target.kind.name)
    measurer: Measurer | None = None
    summary = CollectSummary()
    for workload in workloads:
        if stop is not None and stop.is_set():
            break
        task_dir = root / target_key(target) / workload.name
        try:
            with task_lock(task_dir):
                existing = repaired_count(task_dir)
                wanted = records_wanted(task_dir, existing, config)
                if wanted == 0 and existing >= config.trials_per_task:
                    progress = TaskProgress(workload.name, existing)
                elif wanted == 0:  # only the other searches were wanted, and the mark stops them
                    progress = TaskProgress(workload.name, existing, exhausted=True)
                    progress.skipped = (
                        f"design space exhausted at {existing} records by an earlier run"
                    )
                else:
                    if measurer is None:
                        measurer = make_measurer(target, config)
                    progress = _collect_locked(
                        workload, task_dir, target, config, measurer, on_progress, stop, models
                    )
        except TaskLockedError as err:  # leave the task to the collector that holds it
            logger.warning("%s", err)
            progress = TaskProgress(workload.name, count_lines(task_dir / RECORD_FILE))
            progress.skipped = "being collected by another process"
            progress.locked = True
        summary.tasks.append(progress)
        if on_task_done is not None:
            on_task_done(progress)
    return summary
