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

The package: :mod:`~ms_meta.bench.online.plan` (configuration and run plan),
:mod:`~ms_meta.bench.online.run` (resumable tuning runs and the benchmark),
:mod:`~ms_meta.bench.online.history` (trial histories), :mod:`~ms_meta.bench.online.remeasure`
(side-by-side timing) and :mod:`~ms_meta.bench.online.report` (summary and tables).
"""

from ms_meta.bench.online.history import Step, best_so_far, read_history, staircase, step_at
from ms_meta.bench.online.plan import (
    DEFAULT_BUDGETS,
    DEFAULT_TASKS,
    DEFAULT_XGB_BUDGET,
    EPS_GREEDY,
    MODELS,
    PLOT_FILE,
    REFERENCE_MODEL,
    RESULT_FILE,
    RESULT_FORMAT,
    RUN_FILE,
    WEIGHTED_MODELS,
    WEIGHTS_NAME,
    OnlineConfig,
    RunPlan,
    one_shot_available,
    parse_weights,
    plan_runs,
    prefix_is_exact,
    prefix_notes,
)
from ms_meta.bench.online.remeasure import remeasure, schedule_key
from ms_meta.bench.online.report import format_tables, geomean, summarize, wall_at
from ms_meta.bench.online.run import ensure_run, run_online_benchmark

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
    "Step",
    "best_so_far",
    "ensure_run",
    "format_tables",
    "geomean",
    "one_shot_available",
    "parse_weights",
    "plan_runs",
    "prefix_is_exact",
    "prefix_notes",
    "read_history",
    "remeasure",
    "run_online_benchmark",
    "schedule_key",
    "staircase",
    "step_at",
    "summarize",
    "wall_at",
]
