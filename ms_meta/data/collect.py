"""Collect measured schedules into standard MetaSchedule JSON databases, resumably.

For each task, a share of the trials are uniform random samples of the design space
(``ReplayTrace``) and the rest come from cost-model-guided evolutionary search, which
concentrates samples on fast code (One-Shot Tuner's finding: a data set for a good predictor
needs many near-optimal programs, which random sampling rarely yields).

Layout: ``<root>/<target-key>/<task-name>/{database_workload.json,
database_tuning_record.json, meta.json}``. Records are appended after every measured batch;
a kill loses at most the batch in flight, and a re-run continues where it stopped.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ms_meta.workloads import Workload

logger = logging.getLogger(__name__)

COLLECTOR_VERSION = 1
RECORD_FILE = "database_tuning_record.json"
WORKLOAD_FILE = "database_workload.json"
META_FILE = "meta.json"


@dataclass(frozen=True)
class CollectConfig:
    """Settings of one collection run (keyword-only, immutable)."""

    trials_per_task: int = 192
    random_fraction: float = 0.33  # share of uniform random samples; the rest are guided
    batch_size: int = 32
    cost_model: str = "xgb"  # guides the evolutionary phase: xgb | meta | random
    population_size: int = 256
    genetic_num_iters: int = 3
    seed: int = 0
    max_workers: int | None = None
    number: int = 1
    repeat: int = 3
    min_repeat_ms: int = 40


@dataclass
class TaskProgress:
    task: str
    existing: int
    measured: int = 0
    failed: int = 0
    duplicates: int = 0
    seconds: float = 0.0
    best_us: float | None = None


@dataclass
class CollectSummary:
    tasks: list[TaskProgress] = field(default_factory=list)

    @property
    def measured(self) -> int:
        return sum(t.measured for t in self.tasks)

    @property
    def seconds(self) -> float:
        return sum(t.seconds for t in self.tasks)


ProgressCallback = Callable[[str, int, int], None]  # (task name, records added now, failed now)


def count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


@contextlib.contextmanager
def task_lock(task_dir: Path) -> Iterator[None]:
    """Stop two collectors (say, overlapping shards) from appending to one task at once."""
    task_dir.mkdir(parents=True, exist_ok=True)
    with open(task_dir / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"{task_dir} is being collected by another process") from None
        yield


def write_json_atomic(path: Path, obj: object) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def update_meta(task_dir: Path, workload: Workload, target, config: CollectConfig, **extra):
    from ms_meta.tuning.target import host_cpu, target_summary

    path = task_dir / META_FILE
    meta = json.loads(path.read_text()) if path.exists() else {}
    meta.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    meta.update(
        task=workload.name,
        spec=workload.spec,
        op=workload.op,
        kind=workload.kind,
        aliases=list(workload.aliases),
        flops=workload.flops,
        target=target_summary(target),
        cpu=host_cpu(),
        origin=meta.get("origin", f"ms-meta collect v{COLLECTOR_VERSION}"),
        collector=asdict(config),
    )
    meta.update(extra)
    write_json_atomic(path, meta)


def _trace_key(trace) -> str:
    from ms_meta.tuning.plain import to_plain

    return json.dumps(to_plain(trace.as_json(remove_postproc=False)), sort_keys=True)


def _existing_trace_keys(path: Path) -> set[str]:
    keys: set[str] = set()
    if not path.exists():
        return keys
    with open(path) as f:
        for line in f:
            try:
                keys.add(json.dumps(json.loads(line)[1][0], sort_keys=True))
            except (ValueError, IndexError, TypeError):
                continue  # a torn last line from a killed run; it is skipped on load too
    return keys


def _make_cost_model(kind: str, seed: int):
    from tvm.s_tir import meta_schedule as ms

    if kind == "xgb":
        # Warm-up of 16 samples instead of 100: the random phase provides them.
        return ms.cost_model.XGBModel(num_warmup_samples=16, adaptive_training=True)
    if kind == "random":
        return ms.cost_model.RandomModel(seed=seed)
    if kind == "meta":
        from ms_meta.model.cost_model import MetaCostModel

        return MetaCostModel(seed=seed)
    raise ValueError(f"unknown cost model {kind!r}; expected xgb, meta or random")


def collect_task(
    workload: Workload,
    root: Path,
    target,
    config: CollectConfig,
    builder,
    runner,
    on_progress: ProgressCallback | None = None,
) -> TaskProgress:
    """Measure ``config.trials_per_task`` schedules of one workload (minus those on disk)."""
    from tvm.s_tir import meta_schedule as ms

    from ms_meta.tuning.measure import FAILED_RUN_SECS, measure, run_secs_of
    from ms_meta.tuning.target import target_key

    task_dir = root / target_key(target) / workload.name
    with task_lock(task_dir):
        record_path = task_dir / RECORD_FILE
        existing = count_lines(record_path)
        progress = TaskProgress(workload.name, existing)
        if existing >= config.trials_per_task:
            return progress
        update_meta(task_dir, workload, target, config)
        mod = workload.build()
        database = ms.database.JSONDatabase(work_dir=str(task_dir))
        db_workload = database.commit_workload(mod)
        seen = _existing_trace_keys(record_path)
        n_random_target = round(config.trials_per_task * config.random_fraction)
        started = time.perf_counter()
        phases = [
            ("random", max(0, n_random_target - existing)),
            ("guided", config.trials_per_task - max(existing, n_random_target)),
        ]
        model = None
        for phase, n_trials in phases:
            if n_trials <= 0:
                continue
            if phase == "random":
                strategy = ms.search_strategy.ReplayTrace(max_fail_count=100)
                model = None
            else:
                strategy = ms.search_strategy.EvolutionarySearch(
                    population_size=config.population_size,
                    genetic_num_iters=config.genetic_num_iters,
                )
                model = _make_cost_model(config.cost_model, config.seed)
            context = ms.TuneContext(
                mod=mod,
                target=target,
                space_generator="post-order-apply",
                search_strategy=strategy,
                task_name=workload.name,
                rand_state=config.seed + existing + 1,
                num_threads="physical",
            )
            if model is not None:
                _warm_start(model, context, database, db_workload)
            context.pre_tuning(
                max_trials=n_trials,
                num_trials_per_iter=config.batch_size,
                design_spaces=context.generate_design_space(),
                database=database,
                cost_model=model,
            )
            while (candidates := context.generate_measure_candidates()) is not None:
                fresh, keys = [], []
                for cand in candidates:
                    key = _trace_key(cand.sch.trace)
                    if key in seen:
                        progress.duplicates += 1
                        continue
                    seen.add(key)
                    fresh.append(cand)
                    keys.append(key)
                results = measure(builder, runner, target, fresh)
                failed_now = 0
                for cand, result in zip(fresh, results, strict=True):
                    secs = run_secs_of(result)
                    if secs is None:
                        failed_now += 1
                        logger.debug("%s: %s", workload.name, result.error_msg)
                    else:
                        best = 1e6 * sorted(secs)[len(secs) // 2]
                        progress.best_us = min(progress.best_us or best, best)
                    database.commit_tuning_record(
                        ms.database.TuningRecord(
                            cand.sch.trace,
                            db_workload,
                            secs if secs is not None else [FAILED_RUN_SECS],
                            target,
                            cand.args_info,
                        )
                    )
                progress.measured += len(fresh)
                progress.failed += failed_now
                if model is not None and fresh:
                    model.update(context, fresh, results)
                # Duplicates get a neutral "not run" result so the search's trial count moves on.
                by_key = dict(zip(keys, results, strict=True))
                context.notify_runner_results(
                    candidates,
                    [
                        by_key.get(_trace_key(c.sch.trace), ms.runner.RunnerResult(None, "dup"))
                        for c in candidates
                    ],
                )
                if on_progress is not None:
                    on_progress(workload.name, len(fresh), failed_now)
                if not fresh and progress.duplicates > 4 * config.trials_per_task:
                    break  # a tiny design space: nothing new left to sample
            context.post_tuning()
        progress.seconds = time.perf_counter() - started
        meta = json.loads((task_dir / META_FILE).read_text())
        update_meta(
            task_dir,
            workload,
            target,
            config,
            collect_seconds=meta.get("collect_seconds", 0.0) + progress.seconds,
            records=count_lines(record_path),
        )
        return progress


def _warm_start(model, context, database, db_workload) -> None:
    """Train the guiding model on what is already measured for this task."""
    from tvm.s_tir import Schedule
    from tvm.s_tir import meta_schedule as ms

    from ms_meta.tuning.measure import FAILED_RUN_SECS

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
        secs = [float(s) for s in rec.run_secs]
        if min(secs) >= FAILED_RUN_SECS:
            continue
        candidates.append(ms.MeasureCandidate(sch, rec.args_info))
        results.append(ms.runner.RunnerResult(secs, None))
    if candidates:
        model.update(context, candidates, results)


def collect(
    workloads: Sequence[Workload],
    root: Path,
    target,
    config: CollectConfig = CollectConfig(),
    on_progress: ProgressCallback | None = None,
    on_task_done: Callable[[TaskProgress], None] | None = None,
) -> CollectSummary:
    """Collect every workload in turn; see :func:`collect_task`."""
    from ms_meta.tuning.builder import make_builder
    from ms_meta.tuning.intrin import import_tensor_intrinsics
    from ms_meta.tuning.measure import MeasureSettings, make_local_runner

    import_tensor_intrinsics(target.kind.name)
    builder = make_builder(max_workers=config.max_workers)
    runner = make_local_runner(
        MeasureSettings(
            number=config.number, repeat=config.repeat, min_repeat_ms=config.min_repeat_ms
        )
    )
    summary = CollectSummary()
    for workload in workloads:
        try:
            progress = collect_task(workload, root, target, config, builder, runner, on_progress)
        except RuntimeError as err:  # locked by another collector: leave it to that one
            logger.warning("%s", err)
            continue
        summary.tasks.append(progress)
        if on_task_done is not None:
            on_task_done(progress)
    return summary
