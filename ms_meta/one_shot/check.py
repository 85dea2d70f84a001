"""A post-hoc check: measure the schedule a database gives a workload, once, after the search.

This is not part of one-shot tuning (which measures nothing); it tells how fast the pick is,
with the same builder and runner as the measured mode, so the two modes compare fairly.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from tvm.s_tir import meta_schedule as ms

from ms_meta.tuning.builder import make_builder
from ms_meta.tuning.measure import MeasureSettings, make_local_runner, measure, run_secs_of

__all__ = [
    "PostHocCheck",
    "measure_applied",
]


@dataclass(frozen=True)
class PostHocCheck:
    """Seconds per repeat of the applied schedule, or the build/run error."""

    run_secs: list[float] | None
    error: str | None

    @property
    def median_seconds(self) -> float | None:
        return statistics.median(self.run_secs) if self.run_secs else None


def measure_applied(
    database: ms.database.Database,
    mod,
    target,
    settings: MeasureSettings | None = None,
) -> PostHocCheck | None:
    """Apply ``database`` to ``mod`` with ``compile_tir``, then build and run the result once.

    Returns ``None`` when the database has no record for ``mod``.
    """
    sch = ms.tir_integration.compile_tir(database, mod, target)
    if sch is None:
        return None
    candidate = ms.MeasureCandidate(
        sch, ms.arg_info.ArgInfo.from_entry_func(sch.mod, remove_preproc=True)
    )
    (result,) = measure(
        make_builder(), make_local_runner(settings or MeasureSettings()), target, [candidate]
    )
    return PostHocCheck(run_secs_of(result), result.error_msg)
