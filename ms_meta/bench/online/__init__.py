"""The online benchmark: the best latency ``ms.tune_tir`` reaches with each cost model at several
trial budgets, re-measured side by side in one process.

**Budgets are prefixes of one run.** Each (task, cost model) pair is tuned once, at its largest
budget; the point for a smaller budget B is read from the first B trials of that run, in the
order the database recorded them. This is exact, because MetaSchedule's search reads its budget
only to stop and to clip the last batch (apache/tvm ``src/s_tir/meta_schedule/``):

* ``EvolutionarySearchNode::State::GenerateMeasureCandidates`` (``search_strategy/
  evolutionary_search.cc``) returns nothing once ``st >= max_trials`` and otherwise only shrinks
  the batch to ``max_trials - st``. Sampling, evolution, the random states and the picks never
  read the budget; ``NotifyRunnerResults`` only advances ``st``/``ed``.
* ``TaskSchedulerNode::Tune`` (``task_scheduler/task_scheduler.cc``) hands ``max_trials_global``
  (with one task, also the per-task limit) to the search and uses it as its loop bound only.
  With one task, the gradient scheduler (``gradient_based.cc``) always picks it, and joins each
  batch (database commit, cost-model update) before the next batch is generated.
* The cost models (``XGBModel``, ``MetaCostModel``) never see the budget.

So, given the same measurements, the first B trials of a longer run are the trials of a B-trial
run. One caveat, checked by :func:`prefix_is_exact`: a clipped batch of ``k`` picks takes
``int(k * eps_greedy)`` random candidates, where a full batch takes its random ones last; with
MetaSchedule's ``eps_greedy = 0.05`` that changes nothing while ``k < 20``, so any budget is an
exact prefix when ``num_trials_per_iter <= 20``.

The best schedule of every point (and every improvement along each run, for the convergence
curves) is re-measured at the end, all in this process, in interleaved rounds, so that the
ratios compare latencies measured under the same conditions rather than tuning-time
``run_secs`` taken minutes or hours apart.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import logging
import math
import os
import re
import shutil
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ms_meta.errors import MsMetaError

logger = logging.getLogger(__name__)

#: Held-out tasks of ``tuning_records/llvm-rocketlake-2c/split.json``, one per operator kind:
#: a ResNet-18 strided 3x3 conv2d, a BERT feed-forward dense, MobileNetV2's first depthwise
#: conv2d and a BERT-style attention batch_matmul.
DEFAULT_TASKS = (
    "conv2d_nchw_1_128_28_28_256_3_3_2_1",
    "dense_128_3072_768",
    "depthwise_conv2d_1_32_112_112_3_3_1_1",
    "batch_matmul_16_256_256_64",
)
DEFAULT_BUDGETS = (16, 32, 64)
DEFAULT_XGB_BUDGET = 256
#: The cost models, in table order. ``xgb`` is the reference and must be among those run.
MODELS = ("xgb", "xgb-pretrained", "meta", "one-shot")
REFERENCE_MODEL = "xgb"
#: EvolutionarySearch's default share of random picks per batch (not settable from Python).
EPS_GREEDY = 0.05
RESULT_FORMAT = 1
#: The models that run once per weights set; a named run is labelled ``meta:NAME``.
WEIGHTED_MODELS = ("meta", "one-shot")
#: Names of weights sets: they become labels (``meta:NAME``) and folder names (``meta.NAME``).
WEIGHTS_NAME = re.compile(r"[A-Za-z0-9_-]+")
RUN_FILE = "run.json"
RESULT_FILE = "online.json"
PLOT_FILE = "convergence.png"


# --------------------------------------------------------------------------------------------
# Configuration and plan
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OnlineConfig:
    """What the online benchmark runs and how it re-measures.

    Parameters
    ----------
    tasks : sequence of str
        Workload specs, named tasks or task directory names.
    budgets : sequence of int
        Trial budgets of every cost model.
    xgb_budget : int
        The stock XGBModel's extra (reference) budget; its point is the ``xgb@N`` reference.
    models : sequence of str
        Subset of :data:`MODELS`; ``xgb`` is required (the ratios refer to it).
    xgb_pretrained : path, optional
        A file written by ``XGBModel.save``; without it the ``xgb-pretrained`` row is skipped.
    weights : "default" or path
        MetaCostModel / One-Shot weights of an unnamed run (labels ``meta``, ``one-shot``).
    named_weights : sequence of (name, "default" or path)
        Several weights sets compared in one benchmark: ``meta`` and ``one-shot`` run once per
        set, labelled ``meta:NAME`` and ``one-shot:NAME``; replaces ``weights`` when given.
    allow_other_cpu : bool
        Accept weights trained for another ``mcpu`` (``MetaCostModel(allow_other_cpu=True)``).
    num_trials_per_iter : int
        Batch size of the search (at most 20 keeps every budget an exact prefix).
    population_size : int
        EvolutionarySearch population (512 is MetaSchedule's default).
    seed : int
        The same seed for every run (One-Shot's k-th search: ``seed + k - 1``).
    one_shot_searches : int
        One-Shot searches per weights set, each with its own seed. A single search's pick is
        close to a lottery (see the README); variants are compared over many picks.
    one_shot_library : path, optional
        The schedule library One-Shot picks from (``ms-meta library build``). ``None``: One-Shot
        searches every task. Never the shipped library here: it holds the held-out tasks'
        own schedules; build one from the training tasks (``--split``).
    rounds, repeat, min_repeat_ms : int
        Re-measurement: interleaved rounds over all schedules; per round ``time_evaluator``
        takes ``repeat`` timings of at least ``min_repeat_ms`` each (see :func:`remeasure`).
    match_tolerance : float
        "Equal to xgb@N" means a re-measured latency within this fraction of xgb@N's.
    """

    tasks: tuple[str, ...] = DEFAULT_TASKS
    budgets: tuple[int, ...] = DEFAULT_BUDGETS
    xgb_budget: int = DEFAULT_XGB_BUDGET
    models: tuple[str, ...] = MODELS
    xgb_pretrained: Path | None = None
    weights: str | Path = "default"
    named_weights: tuple[tuple[str, str | Path], ...] = ()
    allow_other_cpu: bool = False
    num_trials_per_iter: int = 16
    population_size: int = 512
    seed: int = 0
    one_shot_searches: int = 1
    one_shot_library: Path | None = None
    rounds: int = 5
    repeat: int = 5
    min_repeat_ms: int = 50
    match_tolerance: float = 0.05

    def checked(self) -> OnlineConfig:
        """A normalized copy (sorted unique budgets); raises MsMetaError on bad values."""
        budgets = tuple(sorted(set(int(b) for b in self.budgets)))
        if not budgets or budgets[0] < 1:
            raise MsMetaError(f"budgets must be positive trial counts, got {list(self.budgets)}")
        if self.xgb_budget < 1:
            raise MsMetaError(f"the xgb budget must be positive, got {self.xgb_budget}")
        unknown = [m for m in self.models if m not in MODELS]
        if unknown:
            raise MsMetaError(f"unknown model(s) {unknown}; expected some of {', '.join(MODELS)}")
        if REFERENCE_MODEL not in self.models:
            raise MsMetaError(f"'{REFERENCE_MODEL}' must be among the models: it is the reference")
        if not self.tasks:
            raise MsMetaError("no tasks to benchmark")
        from ms_meta.workloads import resolve_one

        for task in self.tasks:
            resolve_one(task)  # a bad name fails here, before hours of tuning
        if self.num_trials_per_iter < 1 or self.population_size < 2:
            raise MsMetaError("num_trials_per_iter must be >= 1 and population_size >= 2")
        if self.one_shot_searches < 1:
            raise MsMetaError(f"one_shot_searches must be >= 1, got {self.one_shot_searches}")
        if self.rounds < 1 or self.repeat < 1 or self.min_repeat_ms < 0:
            raise MsMetaError("rounds and repeat must be >= 1, min_repeat_ms >= 0")
        if self.one_shot_library is not None:
            from ms_meta.one_shot.library import load_library

            load_library(self.one_shot_library)  # a bad file fails here, not after the XGB runs
        if self.xgb_pretrained is not None and not Path(self.xgb_pretrained).is_file():
            raise MsMetaError(f"--xgb-pretrained file not found: {self.xgb_pretrained}")
        named = tuple((str(name), path) for name, path in self.named_weights)
        if named and str(self.weights) != "default":
            raise MsMetaError("give either unnamed weights or named weights, not both")
        for name, _ in named:
            if not WEIGHTS_NAME.fullmatch(name):
                raise MsMetaError(f"weights name {name!r} must be letters, digits, '_' or '-'")
        _check_unique_weights_names([name for name, _ in named])
        for name, path in named or ((None, self.weights),):
            if str(path) != "default" and not Path(path).is_file():
                which = f" ({name})" if name else ""
                raise MsMetaError(f"weights file not found{which}: {path}")
        models = tuple(m for m in MODELS if m in self.models)
        return replace(self, budgets=budgets, models=models, named_weights=named)

    def weight_sets(self) -> tuple[tuple[str | None, str | Path], ...]:
        """``(name, weights)`` of each run of ``meta`` and ``one-shot``; the name is ``None``
        for the unnamed weights."""
        return self.named_weights or ((None, self.weights),)


def parse_weights(values: Sequence[str]) -> tuple[tuple[str | None, str], ...]:
    """``--weights`` values as ``(name, path)``: ``PATH`` or ``default`` (unnamed, allowed only
    alone) or ``NAME=PATH`` / ``NAME=default``. No values means the unnamed default weights.

    Raises
    ------
    MsMetaError
        On an empty path, a bad or repeated name, or an unnamed value beside others.
    """
    if not values:
        return ((None, "default"),)
    parsed: list[tuple[str | None, str]] = []
    for value in values:
        name, sep, path = value.partition("=")
        if not sep:
            parsed.append((None, value))
            continue
        if not WEIGHTS_NAME.fullmatch(name):
            raise MsMetaError(
                f"{value!r}: the name before '=' must be letters, digits, '_' or '-' "
                "(NAME=PATH or NAME=default)"
            )
        if not path:
            raise MsMetaError(f"{value!r}: no path after '=' (NAME=PATH or NAME=default)")
        parsed.append((name, path))
    if len(parsed) > 1 and any(name is None for name, _ in parsed):
        unnamed = next(path for name, path in parsed if name is None)
        raise MsMetaError(
            f"{unnamed!r} has no name: to compare several weights, name each one "
            "(--weights ft=a.pt --weights rl=b.pt)"
        )
    _check_unique_weights_names([name for name, _ in parsed])
    return tuple(parsed)


def _check_unique_weights_names(names: Sequence[str | None]) -> None:
    repeated = sorted({n for n in names if n is not None and names.count(n) > 1})
    if repeated:
        raise MsMetaError(f"weights names must be unique; {', '.join(repeated)} given twice")


@dataclass(frozen=True)
class RunPlan:
    """One ``tune_tir`` run of a cost model per task, and the budgets read from its prefixes."""

    model: str
    max_trials: int
    budgets: tuple[int, ...]
    #: MetaCostModel / One-Shot weights ("default" or a path); ``None`` for the xgb models.
    weights: str | Path | None = None
    #: The weights set's name; ``None`` for an unnamed one (and the xgb models).
    weights_name: str | None = None
    #: Which of a weights set's repeated One-Shot searches (0 for the first; seed + search).
    search: int = 0

    @property
    def weights_label(self) -> str:
        """``meta`` or ``meta:NAME``: the label shared by the repeated searches of one model
        and weights set."""
        return self.model if self.weights_name is None else f"{self.model}:{self.weights_name}"

    @property
    def label(self) -> str:
        """The run's name in tables and JSON: ``meta``, or ``meta:NAME`` for named weights;
        a repeated One-Shot search adds ``#k`` (``one-shot:NAME#2``)."""
        return self.weights_label + (f"#{self.search + 1}" if self.search else "")

    @property
    def dir_name(self) -> str:
        """The run's folder under ``runs/<task>/``: ``meta``, or ``meta.NAME`` (a sibling, never
        inside ``meta``, whose folder :func:`ensure_run` may delete); a repeated search adds
        ``.searchK`` (names cannot hold a dot, so no weights name collides with it)."""
        base = self.model if self.weights_name is None else f"{self.model}.{self.weights_name}"
        return base + (f".search{self.search + 1}" if self.search else "")

    def describe(self) -> str:
        if self.max_trials == 0:
            which = f", search {self.search + 1} (seed + {self.search})" if self.search else ""
            return f"{self.label}: zero trials (one run{which})"
        points = ", ".join(f"{self.label}@{b}" for b in self.budgets)
        return (
            f"{points}: the first {'/'.join(map(str, self.budgets))} trials of one "
            f"{self.max_trials}-trial run per task"
        )


def prefix_is_exact(budget: int, num_trials_per_iter: int, eps_greedy: float = EPS_GREEDY) -> bool:
    """Whether a ``budget``-trial run makes exactly the first ``budget`` trials of a longer run.

    Only the last, clipped batch of ``k = budget % num_trials_per_iter`` picks can differ
    (``PickWithEpsGreedy``): it takes its ``k - int(k * eps_greedy)`` best candidates, then
    ``int(k * eps_greedy)`` random ones, while the first ``k`` picks of a full batch are its
    best ones up to ``num_trials_per_iter - int(num_trials_per_iter * eps_greedy)``, then random
    ones. Both rank the same candidates and draw the same random ones.
    """
    k = budget % num_trials_per_iter
    if k == 0:
        return True
    full_bests = num_trials_per_iter - int(num_trials_per_iter * eps_greedy)
    return int(k * eps_greedy) == max(0, k - full_bests)


def one_shot_available() -> tuple[bool, str]:
    """Whether ``ms_meta.one_shot.tune_tir`` can be imported, and why not."""
    try:
        module = importlib.import_module("ms_meta.one_shot")
    except ImportError as err:
        return False, f"ms_meta.one_shot does not import ({err})"
    if not callable(getattr(module, "tune_tir", None)):
        return False, "ms_meta.one_shot has no tune_tir"
    return True, ""


def plan_runs(config: OnlineConfig) -> tuple[list[RunPlan], list[dict[str, str]]]:
    """The runs per task (``meta`` and ``one-shot`` once per weights set), and the models
    skipped with the reason."""
    plans, skipped = [], []
    for model in config.models:
        if model == REFERENCE_MODEL:
            budgets = tuple(sorted({*config.budgets, config.xgb_budget}))
            plans.append(RunPlan(model, max(budgets), budgets))
        elif model == "xgb-pretrained" and config.xgb_pretrained is None:
            skipped.append({"model": model, "reason": "no --xgb-pretrained file given"})
        elif model not in WEIGHTED_MODELS:
            plans.append(RunPlan(model, max(config.budgets), config.budgets))
        else:
            if model == "one-shot":
                ok, why = one_shot_available()
                if not ok:
                    skipped.append({"model": model, "reason": why})
                    continue
                max_trials, budgets, searches = 0, (0,), config.one_shot_searches
            else:
                max_trials, budgets, searches = max(config.budgets), config.budgets, 1
            plans += [
                RunPlan(model, max_trials, budgets, weights, name, search)
                for name, weights in config.weight_sets()
                for search in range(searches)
            ]
    return plans, skipped


# --------------------------------------------------------------------------------------------
# Tuning runs (resumable)
# --------------------------------------------------------------------------------------------


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
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=1) + "\n")
    os.replace(tmp, path)


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
        # no run file (interrupted) or another configuration: this directory is ours, start over
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    load = _load_average()  # a busy machine slows tuning and skews its run_secs
    facts = _tune_run(workload, plan, run_dir, target, config)
    run = {"fingerprint": fingerprint, "max_trials": plan.max_trials, "load_average": load, **facts}
    _write_json_atomic(run_dir / RUN_FILE, run)
    return run, False


# --------------------------------------------------------------------------------------------
# Trial histories
# --------------------------------------------------------------------------------------------


@dataclass
class Step:
    """An improvement of a run's best-so-far (by the database's mean ``run_secs``)."""

    trial: int  # 1-based trial number; 0 for a zero-trial (One-Shot) run
    db_secs: float
    record: Any = field(repr=False)  # ms_meta.data.records.Record
    key: str = ""  # identity of the schedule among the re-measured ones


def read_history(run_dir: Path, max_trials: int):
    """The run's workload group and its first ``max_trials`` records in trial order.

    A zero-trial (One-Shot) run keeps its chosen schedules in the predicted-records files of
    :mod:`ms_meta.one_shot.store` (run time ``PREDICTED_RUN_SECS``: a prediction, not a
    measurement); all its records are returned.

    Raises
    ------
    MsMetaError
        When the run directory holds no database with exactly one workload.
    """
    from ms_meta.data.records import load_database

    if max_trials == 0:
        from ms_meta.one_shot.store import PREDICTED_RECORD_FILE, PREDICTED_WORKLOAD_FILE

        recordset = load_database(
            (run_dir / PREDICTED_WORKLOAD_FILE, run_dir / PREDICTED_RECORD_FILE)
        )
    else:
        recordset = load_database(run_dir)
    groups = [g for g in recordset.groups if g.records]
    if len(groups) != 1:
        raise MsMetaError(f"{run_dir}: expected one tuned workload, found {len(groups)}")
    group = groups[0]
    records = sorted(group.records, key=lambda r: r.line)
    return group, records if max_trials == 0 else records[:max_trials]


def best_so_far(records: Sequence) -> list[float | None]:
    """Best mean ``run_secs`` after each trial (``None`` before the first valid one)."""
    curve, best = [], None
    for record in records:
        secs = record.mean_secs
        if secs is not None and (best is None or secs < best):
            best = secs
        curve.append(best)
    return curve


def staircase(records: Sequence, zero_trials: bool = False) -> list[Step]:
    """The records that improved the best-so-far, in trial order. For a zero-trial run, the one
    record MetaSchedule would deploy (lowest mean ``run_secs``), at trial 0."""
    steps: list[Step] = []
    if zero_trials:
        valid = [r for r in records if r.mean_secs is not None]
        if valid:
            best = min(valid, key=lambda r: r.mean_secs)
            steps.append(Step(0, best.mean_secs, best))
        return steps
    for trial, record in enumerate(records, start=1):
        secs = record.mean_secs
        if secs is not None and (not steps or secs < steps[-1].db_secs):
            steps.append(Step(trial, secs, record))
    return steps


def step_at(steps: Sequence[dict | Step], budget: int):
    """The last step within the first ``budget`` trials, or ``None``."""
    found = None
    for step in steps:
        trial = step["trial"] if isinstance(step, dict) else step.trial
        if trial <= budget:
            found = step
    return found


# --------------------------------------------------------------------------------------------
# Re-measurement, side by side
# --------------------------------------------------------------------------------------------


@dataclass
class _Compiled:
    key: str
    task: str
    run: Callable[[], list[float]] | None
    error: str | None = None
    rounds: list[list[float]] = field(default_factory=list)  # the repeats of each round


def _random_args(args_info: Sequence, rng: np.random.Generator, device):
    import tvm

    arrays = []
    for kind, dtype, shape in args_info:
        if kind != "TENSOR":
            raise MsMetaError(f"cannot allocate an argument of kind {kind!r}")
        if str(dtype).startswith("float"):
            data = rng.uniform(-1.0, 1.0, size=shape).astype(dtype)
        else:
            data = rng.integers(0, 8, size=shape).astype(dtype)
        arrays.append(tvm.runtime.tensor(data, device))
    return arrays


def _compile(group, record, target, rng, settings: dict[str, int]):
    """A zero-argument function timing the record's schedule: ``repeat`` seconds per call."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    from ms_meta.tuning.builder import fast_build

    tuning_record = ms.database.TuningRecord.from_json(record.as_json(), group.workload())
    sch = tvm.s_tir.Schedule(group.workload().mod)
    tuning_record.trace.apply_to_schedule(sch, remove_postproc=False)
    # the same build as the tuning runs' builder, so the same code is timed
    rt_mod = fast_build(sch.mod, target, None)
    device = tvm.cpu()
    args = _random_args(record.args_info, rng, device)
    evaluator = rt_mod.time_evaluator(
        rt_mod.entry_name or "main",
        device,
        number=1,
        repeat=settings["repeat"],
        min_repeat_ms=settings["min_repeat_ms"],
    )
    return lambda: [float(s) for s in evaluator(*args).results]


def schedule_key(task: str, record) -> str:
    """An identity for a measured schedule: task plus the trace with its decisions."""
    from ms_meta.data.records import canonical_json

    digest = hashlib.sha256(canonical_json(record.trace).encode()).hexdigest()[:16]
    return f"{task}:{digest}"


def remeasure(
    items: Sequence[tuple[str, Any, Any]],
    target,
    *,
    rounds: int,
    repeat: int,
    min_repeat_ms: int,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Compile each distinct schedule once, then time all of them in ``rounds`` interleaved
    rounds (rotating the order each round so that none always runs first).

    A schedule's latency is the median over the rounds of each round's fastest repeat: other
    processes only ever slow a kernel down, so the fastest repeat is the least disturbed one,
    and the median over rounds keeps one lucky round from deciding.

    Parameters
    ----------
    items : sequence of (task, workload group, record)
        The schedules; duplicates (same task and trace) are measured once.

    Returns
    -------
    dict
        key -> ``{"task", "secs", "round_secs" (each round's fastest repeat), "spread" ((max -
        min) / secs over the rounds), "round_repeats" (all timings), "error"}``.
    """
    rng = np.random.default_rng(seed)
    settings = {"repeat": repeat, "min_repeat_ms": min_repeat_ms}
    compiled: dict[str, _Compiled] = {}
    for task, group, record in items:
        key = schedule_key(task, record)
        if key in compiled:
            continue
        try:
            compiled[key] = _Compiled(key, task, _compile(group, record, target, rng, settings))
        except Exception as err:  # a schedule that no longer builds is reported, not fatal
            first = (str(err).strip().splitlines() or [type(err).__name__])[-1]
            compiled[key] = _Compiled(key, task, None, error=f"build failed: {first}")
    order = [c for c in compiled.values() if c.run is not None]
    if progress:
        progress(f"re-measuring {len(order)} distinct schedules, {rounds} interleaved rounds")
    for round_index in range(rounds):
        shift = round_index % max(1, len(order))
        for item in order[shift:] + order[:shift]:
            if item.error is not None:
                continue
            try:
                item.rounds.append(item.run())
            except Exception as err:  # a crash at run time fails only this schedule
                item.error = f"run failed: {(str(err).strip().splitlines() or ['?'])[-1]}"
    out = {}
    for key, item in compiled.items():
        fastest = [min(r) for r in item.rounds if r]
        secs = statistics.median(fastest) if fastest and not item.error else None
        out[key] = {
            "task": item.task,
            "secs": secs,
            "round_secs": fastest,
            "spread": (max(fastest) - min(fastest)) / secs if secs else None,
            "round_repeats": item.rounds,
            "error": item.error,
        }
    return out


# --------------------------------------------------------------------------------------------
# Summary: points, ratios, trials to match
# --------------------------------------------------------------------------------------------


def geomean(values: Sequence[float]) -> float | None:
    values = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """Points, ratios and trials-to-match from ``result["runs"]`` and ``result["latency"]``.

    Every latency here is a re-measured one; the tuning-time database value of each point is
    kept beside it as ``db_secs``. Fills ``result["points"]`` and ``result["summary"]`` and
    returns ``result``.
    """
    latency = result["latency"]
    ref_budget = result["config"]["xgb_budget"]
    tolerance = result["config"]["match_tolerance"]
    points = []
    for run in result["runs"]:
        for budget in run["budgets"]:
            step = step_at(run["staircase"], budget)
            measured = latency.get(step["key"], {}) if step else {}
            points.append(
                {
                    "task": run["task"],
                    "model": run["model"],
                    "budget": budget,
                    "run_trials": run["max_trials"],
                    "trials_available": run["trials"],
                    "best_trial": step["trial"] if step else None,
                    "db_secs": step["db_secs"] if step else None,
                    "secs": measured.get("secs"),
                    "key": step["key"] if step else None,
                    "wall_seconds": wall_at(run, budget),
                }
            )
    by_point = {(p["task"], p["model"], p["budget"]): p for p in points}
    for p in points:
        same = by_point.get((p["task"], REFERENCE_MODEL, p["budget"]))
        ref = by_point.get((p["task"], REFERENCE_MODEL, ref_budget))
        p["ratio_vs_xgb"] = _ratio(p["secs"], same["secs"]) if same else None
        p["ratio_vs_xgb_ref"] = _ratio(p["secs"], ref["secs"]) if ref else None
    tasks = list(dict.fromkeys(r["task"] for r in result["runs"]))
    summary: dict[str, Any] = {
        "geomean_vs_xgb": {},
        "geomean_vs_xgb_ref": {},
        "trials_to_match": {},
        "trials_to_match_db": {},
    }
    for model in dict.fromkeys(p["model"] for p in points):
        for budget in sorted({p["budget"] for p in points if p["model"] == model}):
            rows = [by_point.get((t, model, budget)) for t in tasks]
            rows = [r for r in rows if r is not None]
            label = f"{model}@{budget}"
            summary["geomean_vs_xgb"][label] = _geo_entry([r["ratio_vs_xgb"] for r in rows])
            summary["geomean_vs_xgb_ref"][label] = _geo_entry([r["ratio_vs_xgb_ref"] for r in rows])
    for run in result["runs"]:
        ref = by_point.get((run["task"], REFERENCE_MODEL, ref_budget))
        match = _trials_to_match(run, latency, ref, tolerance)
        summary["trials_to_match"].setdefault(run["model"], {})[run["task"]] = match[0]
        summary["trials_to_match_db"].setdefault(run["model"], {})[run["task"]] = match[1]
    summary["one_shot_searches"] = _one_shot_searches(result["runs"], by_point, ref_budget)
    result["points"] = points
    result["summary"] = summary
    return result


def _one_shot_searches(runs, by_point, ref_budget: int) -> dict[str, Any]:
    """Per One-Shot weights label with more than one search: the geomean ratio to xgb@N over
    every pick (all tasks and searches), each search's geomean over the tasks, and each
    task's geomean over the searches."""
    tasks = list(dict.fromkeys(r["task"] for r in runs))
    if not any(by_point.get((t, REFERENCE_MODEL, ref_budget)) for t in tasks):
        return {}  # no xgb@N point: no ratio to summarize
    searches: dict[str, list[str]] = {}
    for run in runs:
        if run["max_trials"] == 0:
            base = run["model"].partition("#")[0]
            searches.setdefault(base, [])
            if run["model"] not in searches[base]:
                searches[base].append(run["model"])
    out = {}
    for base, labels in searches.items():
        if len(labels) < 2:
            continue
        ratio = {
            (task, label): (by_point.get((task, label, 0)) or {}).get("ratio_vs_xgb_ref")
            for task in tasks
            for label in labels
        }
        picks = [r for r in ratio.values() if r is not None]
        out[base] = {
            "searches": len(labels),
            "picks": len(picks),
            "geomean": geomean(picks),
            "per_search": {
                label: geomean([r for t in tasks if (r := ratio[t, label]) is not None])
                for label in labels
            },
            "per_task": {
                task: geomean([r for lab in labels if (r := ratio[task, lab]) is not None])
                for task in tasks
            },
        }
    return out


def _geo_entry(ratios: Sequence[float | None]) -> dict[str, Any]:
    present = [r for r in ratios if r is not None]
    return {"geomean": geomean(present), "tasks": len(present)}


def wall_at(run: dict[str, Any], budget: int) -> float | None:
    """Tuning seconds until the batch that completed ``budget`` trials (the whole run when it
    ended earlier; the run's wall time for a zero-trial run)."""
    if run["max_trials"] == 0 or not run.get("batches"):
        return run.get("wall_seconds")
    for done, seconds in run["batches"]:
        if done >= budget:
            return seconds
    return run["batches"][-1][1]


def _trials_to_match(run, latency, ref, tolerance) -> tuple[int | None, int | None]:
    """First trial whose best schedule is within ``tolerance`` of xgb@N: by re-measured latency,
    and by the database's ``run_secs`` (whose values come from different times of the run)."""
    if ref is None or ref["secs"] is None:
        return None, None
    measured = next(
        (
            s["trial"]
            for s in run["staircase"]
            if (lat := latency.get(s["key"], {}).get("secs")) is not None
            and lat <= ref["secs"] * (1 + tolerance)
        ),
        None,
    )
    by_db = None
    if ref["db_secs"] is not None:
        by_db = next(
            (
                s["trial"]
                for s in run["staircase"]
                if s["db_secs"] <= ref["db_secs"] * (1 + tolerance)
            ),
            None,
        )
    return measured, by_db


# --------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------


def prefix_notes(plans: Sequence[RunPlan], config: OnlineConfig) -> list[str]:
    """Which budget points come from which run, and whether each prefix is exact."""
    notes = [plan.describe() for plan in plans]
    inexact = sorted(
        {
            b
            for p in plans
            for b in p.budgets
            if b and not prefix_is_exact(b, config.num_trials_per_iter)
        }
    )
    if inexact:
        notes.append(
            f"budgets {inexact} clip a batch of more than 19 picks (num_trials_per_iter "
            f"{config.num_trials_per_iter}): their random picks differ from a run of that "
            "length, so those points are close to, not exactly, separate runs"
        )
    else:
        notes.append(
            "every budget is an exact prefix: MetaSchedule's search reads the budget only to "
            "stop and to clip the last batch (see ms_meta.bench.online)"
        )
    return notes


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


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def _load_average() -> float | None:
    """The 1-minute load average (other processes disturb timings), where the OS has one."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _us(secs: float | None) -> str:
    return "-" if secs is None else f"{secs * 1e6:,.1f}"


def _x(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.3f}"


def format_tables(result: dict[str, Any]) -> str:
    """The benchmark's tables as plain text (what ``ms-meta bench --online`` prints)."""
    ref = result["reference"]
    tasks = list(dict.fromkeys(r["task"] for r in result["runs"]))
    points = {(p["task"], p["model"], p["budget"]): p for p in result["points"]}
    labels = list(dict.fromkeys(f"{p['model']}@{p['budget']}" for p in result["points"]))
    width = max([len(t) for t in tasks] + [24])
    # model labels grow with weights names (one-shot:NAME@0)
    lw = max([len(label) for label in labels] + [len(r["model"]) for r in result["runs"]] + [16])
    lines = ["Which run each point comes from:"]
    lines += [f"  {note}" for note in result["notes"]]
    for item in result.get("skipped", []):
        lines.append(f"  skipped {item['model']}: {item['reason']}")
    lines += [f"  {line}" for line in _model_lines(result)]
    library = result["config"].get("one_shot_library")
    if library:
        lines.append(f"  one-shot picks among the transferred schedules of {library['path']} "
                     f"(sha256 {library['sha256']})")  # fmt: skip
    lines.append("")
    remeasured = result.get("remeasure", {})
    lines.append(
        f"Re-measured best latency (us; one process, {remeasured.get('rounds', '?')} "
        f"interleaved rounds, per round the fastest of {remeasured.get('repeat', '?')} "
        "repeats, median over rounds):"
    )
    cw = {label: max(16, len(label)) for label in labels}
    lines.append(f"  {'task':{width}s} " + " ".join(f"{lab:>{cw[lab]}s}" for lab in labels))
    for task in tasks:
        cells = []
        for label in labels:
            model, budget = label.rsplit("@", 1)
            p = points.get((task, model, int(budget)))
            cells.append(f"{_us(p['secs'] if p else None):>{cw[label]}s}")
        lines.append(f"  {task:{width}s} " + " ".join(cells))
    for title, column, key in (
        (
            "Latency ratio to stock xgb at the same budget (< 1: faster than xgb)",
            "ratio_vs_xgb",
            "geomean_vs_xgb",
        ),
        (
            f"Latency ratio to {ref} (< 1: faster than {ref})",
            "ratio_vs_xgb_ref",
            "geomean_vs_xgb_ref",
        ),
    ):
        lines += ["", f"{title}:"]
        lines.append(
            f"  {'model@budget':{lw}s} "
            + " ".join(f"{t[:14]:>14s}" for t in tasks)
            + f" {'geomean':>9s}"
        )
        for label in labels:
            model, budget = label.rsplit("@", 1)
            cells = [
                _x(points[(t, model, int(budget))][column])
                if (t, model, int(budget)) in points
                else "-"
                for t in tasks
            ]
            geo = result["summary"][key].get(label, {})
            lines.append(
                f"  {label:{lw}s} "
                + " ".join(f"{c:>14s}" for c in cells)
                + f" {_x(geo.get('geomean')):>9s}"
            )
    repeated = result["summary"].get("one_shot_searches") or {}
    if repeated:
        lines += [
            "",
            f"One-Shot over repeated searches (seeds seed, seed + 1, ...): latency ratio to {ref}, "
            "geomean over every pick; each search's geomean over the tasks; each task's geomean "
            "over the searches:",
        ]
        for base, entry in repeated.items():
            per_search = [v for v in entry["per_search"].values() if v is not None]
            span = f"{min(per_search):.3f}-{max(per_search):.3f}" if per_search else "-"
            lines.append(
                f"  {base:{lw}s} {_x(entry['geomean'])} over {entry['picks']} picks "
                f"({entry['searches']} searches); single searches {span}"
            )
            lines.append(
                f"  {'':{lw}s} per task: "
                + ", ".join(f"{t[:20]} {_x(v)}" for t, v in entry["per_task"].items())
            )
    tolerance = result["config"]["match_tolerance"]
    lines += [
        "",
        f"Trials needed to reach {ref} (re-measured best within {tolerance:.0%}; "
        "in brackets the same from tuning-time run_secs; '-' = not within the run):",
    ]
    lines.append(f"  {'model':{lw}s} " + " ".join(f"{t[:14]:>14s}" for t in tasks))
    for model, per_task in result["summary"]["trials_to_match"].items():
        db = result["summary"]["trials_to_match_db"].get(model, {})
        cells = [f"{_n(per_task.get(t))} [{_n(db.get(t))}]" for t in tasks]
        lines.append(f"  {model:{lw}s} " + " ".join(f"{c:>14s}" for c in cells))
    lines += [
        "",
        "Tuning wall time (s) until the batch holding each budget's last trial completed; "
        "in brackets the seconds spent inside the cost model over the whole run:",
    ]
    lines.append(
        f"  {'task':{width}s} {'model':{lw}s} "
        + " ".join(f"{b:>8d}" for b in sorted({p["budget"] for p in result["points"]}))
    )
    all_budgets = sorted({p["budget"] for p in result["points"]})
    for run in result["runs"]:
        cells = [
            f"{wall_at(run, b):8.0f}" if b in run["budgets"] else f"{'':8s}" for b in all_budgets
        ]
        inside = run.get("model_seconds")
        extra = f" [{inside:.1f}]" if inside is not None else ""
        reused = " (reused)" if run.get("reused") else ""
        lines.append(
            f"  {run['task']:{width}s} {run['model']:{lw}s} " + " ".join(cells) + extra + reused
        )
    spreads = [v["spread"] for v in result["latency"].values() if v.get("spread") is not None]
    errors = [k for k, v in result["latency"].items() if v.get("error")]
    if spreads:
        load = [x for x in remeasured.get("load_average", []) if x is not None]
        lines += [
            "",
            f"Re-measurement: {len(result['latency'])} schedules, median round-to-"
            f"round spread {statistics.median(spreads):.1%}, worst {max(spreads):.1%}"
            + (f"; {len(errors)} failed to build/run" if errors else "")
            + (
                f"; load average {max(load):.1f} on {remeasured.get('cores')} logical cores"
                if load
                else ""
            ),
        ]
    return "\n".join(lines)


def _model_lines(result: dict[str, Any]) -> list[str]:
    """What each learned model started from, once per model label (``meta:NAME``)."""
    named = result["config"].get("named_weights") or {}
    lines = {}
    for run in result["runs"]:
        info = run.get("model_info") or {}
        label = run["model"]
        model, _, name = label.partition(":")
        if model == "meta" and "pretrained" in info:
            lines[label] = (
                f"{label}: MetaCostModel with weights {info.get('weights_source')}"
                if info["pretrained"]
                else f"{label}: MetaCostModel WITHOUT pre-trained weights (none shipped or given)"
            )
        elif model == "one-shot" and name in named:
            lines[label] = f"{label}: One-Shot with weights {(named[name] or {}).get('path')}"
        elif run["model"] == "xgb-pretrained" and "pretrained_samples" in info:
            lines["xgb-pretrained"] = (
                f"xgb-pretrained: XGBModel.load({result['config']['xgb_pretrained']}), "
                f"{info['pretrained_samples']} pre-training samples"
            )
    return list(lines.values())


def _n(value: int | None) -> str:
    return "-" if value is None else str(value)
