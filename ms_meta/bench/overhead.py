"""Benchmarks of the cost model's overhead: extraction, prediction and whole tuning runs.

``ms-meta bench`` times MetaCostModel against MetaSchedule's stock XGBModel on the same sampled
candidates, every model with the same warm-up and the same timed repeats, so that the
throughput ratio compares like with like; and it runs ``ms.tune_tir`` with each model at the
same trial count to show what the model's time weighs in a whole search.
"""

from __future__ import annotations

import logging
import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass

import numpy as np
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms
from tvm.s_tir.meta_schedule.cost_model import PyCostModel

from ms_meta.model.factory import make_cost_model
from ms_meta.tuning.intrin import import_tensor_intrinsics
from ms_meta.tuning.measured_tuning import tune_workload
from ms_meta.workloads import resolve_one

__all__ = [
    "THROUGHPUT_REPEATS",
    "THROUGHPUT_ROWS",
    "THROUGHPUT_WARMUP",
    "CpuStealMeter",
    "Rate",
    "ThroughputResult",
    "TimedCostModel",
    "TuneTiming",
    "as_dict",
    "load_average",
    "measure_throughput",
    "measure_tuning",
    "sample_candidates",
]

logger = logging.getLogger(__name__)


@derived_object
class TimedCostModel(PyCostModel):
    """Delegates to another cost model and adds up the seconds spent in it."""

    def __init__(self, inner) -> None:
        super().__init__()
        self.inner = inner
        self.predict_seconds = 0.0
        self.update_seconds = 0.0
        self.predicted = 0

    def load(self, path: str) -> None:
        self.inner.load(path)

    def save(self, path: str) -> None:
        self.inner.save(path)

    def update(self, context, candidates, results) -> None:
        start = time.perf_counter()
        self.inner.update(context, candidates, results)
        self.update_seconds += time.perf_counter() - start

    def predict(self, context, candidates) -> np.ndarray:
        start = time.perf_counter()
        scores = self.inner.predict(context, candidates)
        self.predict_seconds += time.perf_counter() - start
        self.predicted += len(candidates)
        return scores

    @property
    def summary(self):
        return getattr(self.inner, "summary", None)


def sample_candidates(spec: str, count: int, target, seed: int = 1):
    """``count`` random schedules (postprocessed) from the workload's design space."""
    import_tensor_intrinsics(target.kind.name)
    workload = resolve_one(spec)
    context = ms.TuneContext(
        mod=workload.build(), target=target, space_generator="post-order-apply",
        search_strategy=ms.search_strategy.ReplayTrace(), task_name=workload.name,
        rand_state=seed, num_threads="physical",
    )  # fmt: skip
    context.pre_tuning(
        max_trials=count, num_trials_per_iter=count,
        design_spaces=context.generate_design_space(),
        database=ms.database.MemoryDatabase(), cost_model=None,
    )  # fmt: skip
    return context, list(context.generate_measure_candidates())


class CpuStealMeter:
    """Share of CPU time the hypervisor gave to other guests while the block ran (Linux).

    On a shared virtual machine, steal time depresses every absolute rate measured here, while
    ratios between models measured side by side hold; the benchmark prints it so that figures
    from different runs are compared knowingly. ``fraction`` is None where /proc/stat is absent.
    """

    def __init__(self) -> None:
        self.fraction: float | None = None

    @staticmethod
    def _read() -> tuple[int, int] | None:
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        steal = fields[7] if len(fields) > 7 else 0
        return sum(fields[:8]), steal

    def __enter__(self) -> CpuStealMeter:
        self._start = self._read()
        return self

    def __exit__(self, *exc) -> None:
        end = self._read()
        if self._start is None or end is None or end[0] <= self._start[0]:
            return
        self.fraction = (end[1] - self._start[1]) / (end[0] - self._start[0])


#: Every model's throughput: one untimed warm-up call, then this many timed calls.
THROUGHPUT_WARMUP = 1
THROUGHPUT_REPEATS = 3


@dataclass
class Rate:
    """Items per second over timed repeats of one call: the median, and the best (min time).

    The best is the least disturbed run (other processes only slow a call down); the median
    shows what a typical call got. Both come from the same ``repeats`` calls.
    """

    median_per_s: float
    best_per_s: float
    repeats: int
    warmup: int


def _rate(
    fn, count: int, repeats: int = THROUGHPUT_REPEATS, warmup: int = THROUGHPUT_WARMUP
) -> Rate:
    """``count`` items per call of ``fn``: ``warmup`` untimed calls, then ``repeats`` timed."""
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return Rate(
        median_per_s=count / statistics.median(seconds),
        best_per_s=count / min(seconds),
        repeats=repeats,
        warmup=warmup,
    )


#: The throughput rows, in table order: (field of ThroughputResult, row name).
THROUGHPUT_ROWS = (
    ("graph_extract", "GraphFeatureExtractor (extract)"),
    ("meta_predict", "MetaCostModel.predict (extract + GNN)"),
    ("per_store_extract", "PerStoreFeature (extract)"),
    ("xgb_predict", "XGBModel.predict (extract + booster)"),
)


@dataclass
class ThroughputResult:
    """Candidates per second of each model on the same candidates, each timed the same way
    (``THROUGHPUT_WARMUP`` untimed calls, then ``THROUGHPUT_REPEATS`` timed ones)."""

    workload: str
    candidates: int
    graph_extract: Rate
    meta_predict: Rate
    per_store_extract: Rate
    xgb_predict: Rate
    cpu_steal_fraction: float | None = None  # see CpuStealMeter
    gnn_in_child_process: bool = False  # MetaCostModel scored in a child process
    load_average: tuple[float, float, float] | None = None  # 1/5/15 min, before the timing

    def speedup(self, statistic: str = "median") -> float:
        """MetaCostModel.predict over XGBModel.predict, by ``statistic`` (median or best)."""
        meta, xgb = self.meta_predict, self.xgb_predict
        if statistic == "best":
            return meta.best_per_s / xgb.best_per_s
        return meta.median_per_s / xgb.median_per_s


def load_average() -> tuple[float, float, float] | None:
    """The 1, 5 and 15-minute load averages, where the OS has them (other processes slow every
    rate measured here)."""
    try:
        return tuple(round(v, 2) for v in os.getloadavg())
    except (AttributeError, OSError):
        return None


def measure_throughput(
    spec: str,
    count: int,
    target,
    seed: int = 1,
    repeats: int = THROUGHPUT_REPEATS,
    warmup: int = THROUGHPUT_WARMUP,
) -> ThroughputResult:
    """Candidates per second: graph extraction, MetaCostModel.predict (extraction + GNN),
    PerStoreFeature extraction and XGBModel.predict (extraction + booster), same candidates,
    each model with ``warmup`` untimed calls and ``repeats`` timed ones."""
    from ms_meta.feature.extractor import GraphFeatureExtractor
    from ms_meta.model.cost_model import SCORING_PROCESS_MIN_CANDIDATES, MetaCostModel

    context, candidates = sample_candidates(spec, count, target, seed)
    extractor = GraphFeatureExtractor()
    extractor.encode(context, candidates[:4])  # fill the per-task cache, as in a search
    meta = MetaCostModel(target=target)
    meta.predict(context, candidates[:4])
    # its start-up (2-3 s, once per model) is not part of the rate
    meta_child = meta.start_scoring_process(wait=True)
    per_store = ms.feature_extractor.PerStoreFeature()
    xgb = ms.cost_model.XGBModel(num_warmup_samples=0)
    # a fitted booster, so that predict runs the trees instead of returning random scores
    rng = np.random.default_rng(0)
    fit_cands = candidates[:64]
    xgb.update(
        context,
        fit_cands,
        [ms.runner.RunnerResult([float(v)], None) for v in rng.uniform(1e-3, 2e-3, len(fit_cands))],
    )
    count = len(candidates)
    calls = {
        "graph_extract": lambda: extractor.encode(context, candidates),
        "meta_predict": lambda: meta.predict(context, candidates),
        "per_store_extract": lambda: per_store.extract_from(context, candidates),
        "xgb_predict": lambda: xgb.predict(context, candidates),
    }
    load = load_average()
    with CpuStealMeter() as steal:
        rates = {name: _rate(fn, count, repeats, warmup) for name, fn in calls.items()}
    return ThroughputResult(
        workload=spec,
        candidates=count,
        **rates,
        cpu_steal_fraction=steal.fraction,
        gnn_in_child_process=meta_child and count >= SCORING_PROCESS_MIN_CANDIDATES,
        load_average=load,
    )


@dataclass
class TuneTiming:
    cost_model: str
    trials: int
    valid_trials: int
    wall_seconds: float
    model_seconds: float  # predict + update, inside the tuning loop
    predicted: int
    best_us: float | None


def measure_tuning(spec: str, trials: int, target, cost_models=("meta", "xgb"), seed: int = 0,
                   num_trials_per_iter: int = 16) -> list[TuneTiming]:  # fmt: skip
    """``ms.tune_tir`` on one workload with each cost model, same trials, same builder/runner."""
    out = []
    mod = resolve_one(spec).build()
    for name in cost_models:
        timed = TimedCostModel(make_cost_model(name, target=target, seed=seed))
        with tempfile.TemporaryDirectory(prefix=f"ms-meta-bench-{name}-") as work_dir:
            result = tune_workload(
                mod, target, work_dir, max_trials=trials,
                num_trials_per_iter=min(num_trials_per_iter, trials), cost_model=timed, seed=seed,
                quiet=True,
            )  # fmt: skip
        out.append(
            TuneTiming(
                cost_model=name,
                trials=result.trials,
                valid_trials=result.valid_trials,
                wall_seconds=result.tuning_seconds,
                model_seconds=timed.predict_seconds + timed.update_seconds,
                predicted=timed.predicted,
                best_us=result.best_us,
            )
        )
    return out


def as_dict(items) -> list[dict]:
    return [asdict(i) for i in items]
