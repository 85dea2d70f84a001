"""Side-by-side re-measurement of the online benchmark's schedules, in one process.

Tuning-time ``run_secs`` are taken minutes or hours apart on a busy machine and misorder
schedules by up to 2x; every schedule the tables compare is therefore compiled once and timed
in interleaved rounds here, so that the ratios compare latencies measured under the same
conditions.
"""

from __future__ import annotations

import hashlib
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ms_meta.errors import MsMetaError

__all__ = ["remeasure", "schedule_key"]


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
