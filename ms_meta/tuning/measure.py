"""Build and run candidates with MetaSchedule's builder/runner, outside the task scheduler."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass

from tvm.s_tir import meta_schedule as ms
from tvm.target import Target

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MeasureSettings:
    """How each candidate is timed. ``repeat`` medians damp noise from other processes; all
    repeats are stored, as MetaSchedule's own runner does."""

    number: int = 1
    repeat: int = 3
    min_repeat_ms: int = 40
    enable_cpu_cache_flush: bool = False
    run_timeout_sec: float = 30.0

    def evaluator_config(self) -> ms.runner.EvaluatorConfig:
        return ms.runner.EvaluatorConfig(
            number=self.number,
            repeat=self.repeat,
            min_repeat_ms=self.min_repeat_ms,
            enable_cpu_cache_flush=self.enable_cpu_cache_flush,
        )


def make_local_runner(settings: MeasureSettings = MeasureSettings()) -> ms.runner.LocalRunner:
    return ms.runner.LocalRunner(
        timeout_sec=settings.run_timeout_sec, evaluator_config=settings.evaluator_config()
    )


def device_type(target: Target) -> str:
    return "cuda" if target.kind.name == "cuda" else "cpu"


def measure(
    builder: ms.builder.Builder,
    runner: ms.runner.Runner,
    target: Target,
    candidates: Sequence[ms.MeasureCandidate],
) -> list[ms.runner.RunnerResult]:
    """Build all candidates (in parallel, in the builder's pool), then run them one by one.

    Builds and runs never overlap, so compilation does not disturb the timings.
    Failures come back as ``RunnerResult(None, error)``.
    """
    if not candidates:
        return []
    built = builder.build([ms.builder.BuilderInput(c.sch.mod, target) for c in candidates])
    results: list[ms.runner.RunnerResult | None] = [None] * len(candidates)
    run_inputs, run_index = [], []
    for i, (cand, b) in enumerate(zip(candidates, built, strict=True)):
        if b.error_msg is not None or b.artifact_path is None:
            results[i] = ms.runner.RunnerResult(None, f"build error: {b.error_msg}")
            continue
        run_inputs.append(
            ms.runner.RunnerInput(b.artifact_path, device_type(target), cand.args_info)
        )
        run_index.append(i)
    try:
        if run_inputs:
            futures = runner.run(run_inputs)
            for i, fut in zip(run_index, futures, strict=True):
                results[i] = fut.result()
    finally:
        for b in built:
            if b.artifact_path:
                shutil.rmtree(os.path.dirname(b.artifact_path), ignore_errors=True)
    return [r for r in results if r is not None]


def run_secs_of(result: ms.runner.RunnerResult) -> list[float] | None:
    """Seconds per repeat, or None for a failed build/run."""
    if result.error_msg is not None or result.run_secs is None:
        return None
    return [float(s) for s in result.run_secs]
