"""How tuning records mark failed measurements: one convention for the whole package.

MetaSchedule writes ``run_secs = [1e10]`` for a candidate whose build or run failed (see its
``AddToDatabase``); ms-meta writes the same, and reads any latency of 1e9 s or more, or a missing,
empty or non-finite ``run_secs``, as a failure, so that records from other tools with other
sentinels are read the same way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

FAILED_RUN_SECS = 1e10  # what is written for a failed build or run
FAILURE_THRESHOLD_SECS = 1e9  # a latency at least this large is a failure, not a measurement


def is_failed(run_secs: Iterable[float] | None) -> bool:
    """Whether ``run_secs`` (one record's repeats, floats or TVM FloatImms) mark a failure."""
    if run_secs is None:
        return True
    values = [float(s) for s in run_secs]
    return not values or any(not math.isfinite(s) or s >= FAILURE_THRESHOLD_SECS for s in values)
