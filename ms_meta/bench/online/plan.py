"""What the online benchmark runs: its configuration, the ``--weights`` parser, and the plan of
one ``tune_tir`` run per (task, cost model) whose prefixes serve every trial budget.

Kept apart from the tuning and re-measuring code so that bad options are checked, and the plan
is shown, before anything heavy is imported or tuned.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ms_meta.errors import MsMetaError

__all__ = [
    "DEFAULT_BUDGETS",
    "DEFAULT_TASKS",
    "DEFAULT_XGB_BUDGET",
    "EPS_GREEDY",
    "MODELS",
    "PLOT_FILE",
    "REFERENCE_MODEL",
    "RESULT_FILE",
    "RESULT_FORMAT",
    "RUN_FILE",
    "WEIGHTED_MODELS",
    "WEIGHTS_NAME",
    "OnlineConfig",
    "RunPlan",
    "one_shot_available",
    "parse_weights",
    "plan_runs",
    "prefix_is_exact",
    "prefix_notes",
]

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
        close to a lottery; variants are compared over many picks.
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
