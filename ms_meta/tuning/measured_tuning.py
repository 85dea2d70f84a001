"""Measured tuning of one workload: ``ms.tune_tir`` with a builder and runner that work on small
machines and a given cost model (``ms-meta tune --mode measured``); what it measures goes into
the record store (:mod:`ms_meta.store`)."""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tvm
from tvm.s_tir import meta_schedule as ms

from ms_meta.run_secs import is_failed
from ms_meta.store.feed import feed_json_databases
from ms_meta.tuning.builder import make_builder
from ms_meta.tuning.intrin import import_tensor_intrinsics
from ms_meta.tuning.measure import MeasureSettings, make_local_runner
from ms_meta.tuning.target import parse_target

__all__ = [
    "TuneResult",
    "best_record_seconds",
    "meta_schedule_logging_compat",
    "tune_workload",
]

logger = logging.getLogger(__name__)


@dataclass
class TuneResult:
    """Outcome of one tuning run."""

    database: ms.database.Database
    work_dir: Path
    best_seconds: float | None  # median run time of the best measured schedule
    trials: int  # records in the database (valid and failed)
    valid_trials: int
    tuning_seconds: float
    cost_model: str
    # what recording the work directory's records into the record store did (an
    # ms_meta.store.ImportReport; None when the store is off or could not take them)
    store_report: Any = None

    @property
    def best_us(self) -> float | None:
        return None if self.best_seconds is None else self.best_seconds * 1e6


_MS_LOGGER = "tvm.s_tir.meta_schedule"


@contextlib.contextmanager
def meta_schedule_logging_compat():
    """Detach foreign handlers from MetaSchedule's logger while ``tune_tir`` configures it.

    ``tune_tir``/``tune_tasks`` rebuild that logger with ``logging.config.dictConfig`` and list
    the handlers already on it by name; a handler they did not create (an application's, or
    the capture handler pytest >= 9.2 adds to non-propagating loggers) makes them fail with
    "Unable to configure logger". The handlers are re-attached afterwards.
    """
    logger = logging.getLogger(_MS_LOGGER)
    foreign = [h for h in logger.handlers if not (h.get_name() or "").startswith(_MS_LOGGER)]
    for handler in foreign:
        logger.removeHandler(handler)
    try:
        yield
    finally:
        for handler in foreign:
            if handler not in logger.handlers:
                logger.addHandler(handler)


def best_record_seconds(database: ms.database.Database, mod: tvm.IRModule) -> float | None:
    if not database.has_workload(mod):
        return None
    top = database.get_top_k(database.commit_workload(mod), 1)
    if not top:
        return None
    return float(np.median([float(s) for s in top[0].run_secs]))


def tune_workload(
    mod: tvm.IRModule,
    target=None,
    work_dir: str | Path | None = None,
    *,
    max_trials: int = 64,
    num_trials_per_iter: int = 16,
    cost_model,
    seed: int = 0,
    population_size: int = 512,
    measure: MeasureSettings | None = None,
    quiet: bool = False,
    store: str | Path | None = "default",
) -> TuneResult:
    """Tune one task with MetaSchedule's evolutionary search and the given cost model.

    ``cost_model`` is a MetaSchedule CostModel (one by name:
    :func:`ms_meta.model.factory.make_cost_model`); ``quiet`` keeps
    MetaSchedule's progress tables off the console (they still go to the log files). The
    builder skips the slow ``tensor_intrin`` import and links in parallel (see
    :mod:`ms_meta.tuning.builder`), for every cost model alike, so comparisons are fair.

    The records of ``work_dir`` are then recorded into the record ``store`` (``"default"``:
    ``$MS_META_STORE``, else the user's cache file; a path; ``None``: not recorded); a store
    that cannot take them costs a logged warning, never the run.
    """
    target = parse_target(target)
    import_tensor_intrinsics(target.kind.name)
    work_dir = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="ms-meta-tune-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(cost_model, str):
        raise TypeError(
            f"tune_workload takes a CostModel; for {cost_model!r} pass "
            "ms_meta.model.factory.make_cost_model(name, target=..., seed=...)"
        )
    model = cost_model
    if quiet:
        # tune_tir derives its console level from this logger's level, and leaves it at DEBUG
        # after each run; set it again before every run.
        logging.getLogger("tvm.s_tir.meta_schedule").setLevel(logging.WARNING)
    started = time.perf_counter()
    with meta_schedule_logging_compat():
        database = ms.tune_tir(
            mod=mod,
            target=target,
            work_dir=str(work_dir),
            max_trials_global=max_trials,
            num_trials_per_iter=num_trials_per_iter,
            builder=make_builder(),
            runner=make_local_runner(measure or MeasureSettings()),
            cost_model=model,
            strategy=ms.search_strategy.EvolutionarySearch(population_size=population_size),
            seed=seed,
        )
    elapsed = time.perf_counter() - started
    records = database.get_all_tuning_records()
    valid = [r for r in records if not is_failed(r.run_secs)]
    summary = getattr(model, "summary", None)
    if summary is not None and getattr(summary, "unencodable", 0):
        logger.warning("%d candidates could not be encoded and were scored neutral",
                       summary.unencodable)  # fmt: skip
    store_report = None if store is None else feed_json_databases(work_dir, store_path=store)
    return TuneResult(
        store_report=store_report,
        database=database,
        work_dir=work_dir,
        best_seconds=best_record_seconds(database, mod),
        trials=len(records),
        valid_trials=len(valid),
        tuning_seconds=elapsed,
        cost_model=cost_model if isinstance(cost_model, str) else type(cost_model).__name__,
    )
