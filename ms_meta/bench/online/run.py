"""The online benchmark's runs: one resumable ``tune_tir`` (or One-Shot) run per task and cost
model, then the re-measurement and summary of every best schedule.

A finished run is reused when its fingerprint (task, model file, search settings, target)
matches, so that an interrupted benchmark of several hours resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ms_meta.atomic import atomic_write_text
from ms_meta.bench.online.history import best_so_far, read_history, staircase
from ms_meta.bench.online.plan import (
    REFERENCE_MODEL,
    RESULT_FILE,
    RESULT_FORMAT,
    RUN_FILE,
    OnlineConfig,
    RunPlan,
    plan_runs,
    prefix_notes,
)
from ms_meta.bench.online.remeasure import remeasure, schedule_key
from ms_meta.bench.online.report import summarize
from ms_meta.errors import MsMetaError

__all__ = ["ensure_run", "run_online_benchmark"]

logger = logging.getLogger(__name__)


def _file_identity(path: str | Path | None) -> dict[str, Any] | None:
    """Path and content hash of a model file, so that a changed file invalidates old runs."""
    if path is None or str(path) == "default":
        return None if path is None else {"path": "default"}
    data = Path(path).read_bytes()
    return {"path": str(Path(path).resolve()), "sha256": hashlib.sha256(data).hexdigest()[:16]}


def _fingerprint(spec: str, plan: RunPlan, config: OnlineConfig, target) -> dict[str, Any]:
    """Everything a finished run depends on, except its length (a longer run serves shorter
    budgets as prefixes)."""
    from ms_meta.tuning.target import target_summary

    # the weights name is not part of it: the run depends on the file, not on its label
    model_file = config.xgb_pretrained if plan.model == "xgb-pretrained" else plan.weights
    fingerprint = {
        "format": RESULT_FORMAT,
        "task": spec,
        "model": plan.model,
        "num_trials_per_iter": config.num_trials_per_iter,
        "population_size": config.population_size,
        "seed": config.seed + plan.search,
        "model_file": _file_identity(model_file),
        "target": target_summary(target),
    }
    if plan.model == "one-shot" and config.one_shot_library is not None:
        # only then: the runs of every other model (and library-free ones) stay reusable
        fingerprint["library"] = _file_identity(config.one_shot_library)
    return fingerprint


def _read_run_file(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / RUN_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _write_json_atomic(path: Path, payload: Any) -> None:
    # insertion order kept (no sorted keys): the run and result files read top-down
    atomic_write_text(path, json.dumps(payload, indent=1) + "\n")


@contextlib.contextmanager
def _numpy_global_seed(seed: int) -> Iterator[None]:
    """Seed numpy's global generator for one run, then restore it: the stock XGBModel draws its
    warm-up scores (before 100 samples) from ``np.random.uniform``, so without this two xgb
    runs with the same seed search differently."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _batch_clock():
    """A measure callback that notes (trials so far, seconds since start) after every batch."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

    @derived_object
    class BatchClock(PyMeasureCallback):
        def __init__(self) -> None:
            super().__init__()
            self.started = time.perf_counter()
            self.batches: list[list[float]] = []

        def apply(
            self, task_scheduler, task_id, measure_candidates, builder_results, runner_results
        ) -> None:
            done = (self.batches[-1][0] if self.batches else 0) + len(runner_results)
            self.batches.append([done, round(time.perf_counter() - self.started, 3)])

    return BatchClock()


def _make_cost_model(plan: RunPlan, target, config: OnlineConfig):
    """The cost model of a run, and facts about it for the report."""
    from tvm.s_tir import meta_schedule as ms

    model = plan.model
    if model == "xgb":
        return ms.cost_model.XGBModel(), {}
    if model == "xgb-pretrained":
        xgb = ms.cost_model.XGBModel()
        try:
            xgb.load(str(config.xgb_pretrained))
        except Exception as err:  # a tar that is not an XGBModel.save file
            raise MsMetaError(
                f"cannot load {config.xgb_pretrained} with XGBModel.load: {err}"
            ) from None
        return xgb, {"pretrained_samples": int(xgb.data_size)}
    if model == "meta":
        meta = _meta_cost_model(config, target, plan.weights)
        return meta, {"pretrained": bool(meta.pretrained), "weights_source": meta.weights_source}
    raise MsMetaError(f"no cost model for {model!r}")


def _meta_cost_model(config: OnlineConfig, target, weights: str | Path):
    """MetaCostModel with ``weights`` (a run plan's), under ``config``'s seed and CPU check."""
    from ms_meta.model.cost_model import MetaCostModel

    return MetaCostModel(
        weights=str(weights),
        target=target,
        seed=config.seed,
        allow_other_cpu=config.allow_other_cpu,
    )


def _tune_run(workload, plan: RunPlan, run_dir: Path, target, config: OnlineConfig) -> dict:
    """One fresh ``tune_tir`` (or One-Shot) run into ``run_dir``; returns its run facts."""
    from tvm.s_tir import meta_schedule as ms

    from ms_meta.bench.overhead import TimedCostModel
    from ms_meta.tuning.builder import make_builder
    from ms_meta.tuning.intrin import import_tensor_intrinsics
    from ms_meta.tuning.measure import MeasureSettings, make_local_runner
    from ms_meta.tuning.measured_tuning import meta_schedule_logging_compat

    import_tensor_intrinsics(target.kind.name)
    mod = workload.build()
    # tune_tir leaves MetaSchedule's logger at DEBUG; keep its tables off the console each run
    logging.getLogger("tvm.s_tir.meta_schedule").setLevel(logging.WARNING)
    facts: dict[str, Any] = {}
    started = time.perf_counter()
    if plan.model == "one-shot":
        from ms_meta.one_shot import tune_tir as one_shot_tune_tir

        seed = config.seed + plan.search
        with meta_schedule_logging_compat(), _numpy_global_seed(seed):
            database = one_shot_tune_tir(
                mod,
                target,
                str(run_dir),
                weights=str(plan.weights),
                library=config.one_shot_library,
                verify=0,
                seed=seed,
                cost_model=(
                    _meta_cost_model(config, target, plan.weights)
                    if config.allow_other_cpu
                    else None
                ),
            )
        wall = time.perf_counter() - started
        if not isinstance(database, ms.database.Database):
            raise MsMetaError(f"ms_meta.one_shot.tune_tir returned {type(database).__name__}")
        return {"wall_seconds": wall, "model_seconds": None, "batches": [], **facts}
    inner, facts = _make_cost_model(plan, target, config)
    timed = TimedCostModel(inner)
    clock = _batch_clock()
    with meta_schedule_logging_compat(), _numpy_global_seed(config.seed):
        clock.started = started = time.perf_counter()
        ms.tune_tir(
            mod=mod,
            target=target,
            work_dir=str(run_dir),
            max_trials_global=plan.max_trials,
            num_trials_per_iter=config.num_trials_per_iter,
            builder=make_builder(),
            runner=make_local_runner(MeasureSettings()),
            cost_model=timed,
            measure_callbacks=[*ms.measure_callback.MeasureCallback.create("default"), clock],
            strategy=ms.search_strategy.EvolutionarySearch(population_size=config.population_size),
            seed=config.seed,
        )
        wall = time.perf_counter() - started
    return {
        "wall_seconds": wall,
        "model_seconds": timed.predict_seconds + timed.update_seconds,
        "predicted": timed.predicted,
        "batches": clock.batches,
        **facts,
    }


def ensure_run(
    workload, plan: RunPlan, run_dir: Path, target, config: OnlineConfig
) -> tuple[dict[str, Any], bool]:
    """The run facts of ``run_dir``: reused when a finished run with the same fingerprint and at
    least ``plan.max_trials`` trials is there, else tuned afresh (a partial run is discarded).

    Returns
    -------
    (dict, bool)
        The contents of the run file, and whether the run was reused.
    """
    fingerprint = _fingerprint(workload.spec, plan, config, target)
    previous = _read_run_file(run_dir)
    if (
        previous is not None
        and previous.get("fingerprint") == fingerprint
        and int(previous.get("max_trials", -1)) >= plan.max_trials
    ):
        return previous, True
    if run_dir.exists():
        # no run file (interrupted) or another configuration: the directory is the run's, start over
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    load = _load_average()  # a busy machine slows tuning and skews its run_secs
    facts = _tune_run(workload, plan, run_dir, target, config)
    run = {"fingerprint": fingerprint, "max_trials": plan.max_trials, "load_average": load, **facts}
    _write_json_atomic(run_dir / RUN_FILE, run)
    return run, False


def _load_average() -> float | None:
    """The 1-minute load average (other processes disturb timings), where the OS has one."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def run_online_benchmark(
    config: OnlineConfig,
    work_dir: str | os.PathLike,
    *,
    target=None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Tune every task with every cost model, re-measure, and summarize.

    Runs live in ``<work_dir>/runs/<task>/<model>/`` (``<model>.<name>/`` for named weights);
    a finished run is reused when the benchmark is started again with the same ``work_dir``
    (see :func:`ensure_run`). The result is also written to ``<work_dir>/online.json``.

    Returns
    -------
    dict
        JSON-serializable: ``config``, ``target``, ``notes``, ``skipped``, ``runs`` (one per
        task and model label, ``meta:NAME`` for named weights, with its best-so-far curve
        and improvement steps), ``latency`` (re-measured schedules), ``points`` (one per task,
        model label and budget, with ratios) and ``summary`` (geomean ratios, trials to match
        xgb@N).
    """
    from ms_meta.tuning.target import parse_target, target_summary
    from ms_meta.workloads import resolve_one

    config = config.checked()
    target = parse_target(target)
    workloads = [resolve_one(t) for t in config.tasks]  # bad names fail before any tuning
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda message: logger.info("%s", message))
    plans, skipped = plan_runs(config)
    for item in skipped:
        say(f"skipping {item['model']}: {item['reason']}")
    runs, items = [], []
    total, index = len(workloads) * len(plans), 0
    for workload in workloads:
        for plan in plans:
            index += 1
            run_dir = work_dir / "runs" / workload.name / plan.dir_name
            what = f"[{index}/{total}] {workload.name} {plan.label}"
            say(f"{what}: {plan.max_trials} trials")
            run, reused = ensure_run(workload, plan, run_dir, target, config)
            group, records = read_history(run_dir, plan.max_trials)
            steps = staircase(records, zero_trials=plan.max_trials == 0)
            for step in steps:
                step.key = schedule_key(workload.name, step.record)
                items.append((workload.name, group, step.record))
            curve = best_so_far(records)
            valid = sum(r.mean_secs is not None for r in records)
            say(
                f"{what}: {'reused' if reused else 'tuned'}, {valid}/{len(records)} valid, "
                f"{run['wall_seconds']:.0f} s"
            )
            runs.append(
                {
                    "task": workload.name,
                    "spec": workload.spec,
                    "model": plan.label,
                    "max_trials": plan.max_trials,
                    "budgets": list(plan.budgets),
                    "trials": len(records),
                    "valid_trials": valid,
                    "reused": reused,
                    "run_dir": str(run_dir),
                    "wall_seconds": run["wall_seconds"],
                    "model_seconds": run.get("model_seconds"),
                    "load_average": run.get("load_average"),
                    "batches": run.get("batches", []),
                    "model_info": {
                        k: run[k]
                        for k in ("pretrained", "weights_source", "pretrained_samples")
                        if k in run
                    },
                    "curve_db": curve,
                    "staircase": [
                        {"trial": s.trial, "db_secs": s.db_secs, "key": s.key} for s in steps
                    ],
                }
            )
    started, load_before = time.perf_counter(), _load_average()
    latency = remeasure(
        items,
        target,
        rounds=config.rounds,
        repeat=config.repeat,
        min_repeat_ms=config.min_repeat_ms,
        seed=config.seed,
        progress=say,
    )
    remeasured = {
        "statistic": "median over interleaved rounds of each round's fastest repeat",
        "rounds": config.rounds,
        "repeat": config.repeat,
        "min_repeat_ms": config.min_repeat_ms,
        "seconds": round(time.perf_counter() - started, 1),
        "load_average": [load_before, _load_average()],
        "cores": os.cpu_count(),
    }
    say(f"re-measured in {remeasured['seconds']:.0f} s")
    result = {
        "format": RESULT_FORMAT,
        "config": {
            **asdict(config),
            "xgb_pretrained": str(config.xgb_pretrained) if config.xgb_pretrained else None,
            "one_shot_library": _file_identity(config.one_shot_library),
            "weights": None if config.named_weights else str(config.weights),
            "named_weights": {name: _file_identity(path) for name, path in config.named_weights},
            "tasks": list(config.tasks),
            "budgets": list(config.budgets),
            "models": list(config.models),
        },
        "target": target_summary(target),
        "reference": f"{REFERENCE_MODEL}@{config.xgb_budget}",
        "notes": prefix_notes(plans, config),
        "skipped": skipped,
        "runs": runs,
        "remeasure": remeasured,
        "latency": latency,
    }
    summarize(result)
    _write_json_atomic(work_dir / RESULT_FILE, result)
    return result
