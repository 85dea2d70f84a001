"""Trial histories of the online benchmark's runs: the records in trial order, the best-so-far
curve and the improvements (steps) whose schedules are re-measured.

A budget's point is the last step within its first B trials, which is what makes every budget
a prefix of one run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ms_meta.errors import MsMetaError

__all__ = ["Step", "best_so_far", "read_history", "staircase", "step_at"]


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
