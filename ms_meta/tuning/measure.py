"""Build and run candidates with MetaSchedule's builder/runner, outside the task scheduler."""

from __future__ import annotations

import functools
import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms
from tvm.target import Target

from ms_meta.errors import MsMetaError
from ms_meta.tuning.contention import ContentionGuard, ForeignLoadMeter
from ms_meta.tuning.lock import measurement_lock

__all__ = [
    "ContentionReport",
    "ExclusiveRunner",
    "MeasureSettings",
    "RealtimeUnavailableError",
    "check_realtime",
    "device_type",
    "enter_realtime",
    "init_runner_worker",
    "make_local_runner",
    "measure",
    "run_secs_of",
]

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
    # run each candidate in a SCHED_FIFO process (:func:`enter_realtime`), so that other
    # processes on a shared machine cannot preempt it mid-measurement
    realtime: bool = False
    # threads of the TVM runtime that runs each candidate; None: this machine's physical cores.
    # TVM's own default halves the logical CPUs on x86 (it assumes hyper-threading), so on a
    # 2-vCPU guest it would time every parallel schedule on one thread.
    threads: int | None = None

    def with_cold_caches(self) -> MeasureSettings:
        """These settings with the CPU caches flushed before every timed run (all arguments
        but the first, MetaSchedule's ``enable_cpu_cache_flush``): one run per repeat, at least
        10 repeats. Inside a model the weights of a layer arrive from memory while its input
        is still in cache; timed warm, a 3x3 convolution of 512 channels ran in 0.65-0.80 ms
        where it took 1.04-1.06 ms inside ResNet-18, and 1.05-1.29 ms timed this way."""
        return replace(
            self,
            number=1,
            repeat=max(self.repeat, 10),
            min_repeat_ms=0,
            enable_cpu_cache_flush=True,
        )

    def runtime_threads(self) -> int:
        """The thread count each candidate runs with."""
        from ms_meta.tuning.target import physical_cores

        return self.threads or physical_cores()

    def evaluator_config(self) -> ms.runner.EvaluatorConfig:
        return ms.runner.EvaluatorConfig(
            number=self.number,
            repeat=self.repeat,
            min_repeat_ms=self.min_repeat_ms,
            enable_cpu_cache_flush=self.enable_cpu_cache_flush,
        )


# SCHED_FIFO priority of realtime measurement: above every ordinary process, below the
# kernel's own realtime threads (50 and up)
REALTIME_PRIORITY = 10


class RealtimeUnavailableError(MsMetaError):
    """Realtime scheduling was asked for where this process may not use it."""


def enter_realtime(priority: int = REALTIME_PRIORITY) -> None:
    """Make the calling process (and the threads it starts from now on) SCHED_FIFO.

    On a machine shared with other work, a timed run is otherwise preempted by whatever else
    is runnable, and a 2-core machine's measurements then vary by 2x between candidates. The
    kernel still keeps 5% of each second for ordinary processes (``sched_rt_runtime_us``), so a
    runaway candidate cannot lock the machine; the runner's timeout ends it.

    Raises
    ------
    RealtimeUnavailableError
        Without the privilege (root or ``CAP_SYS_NICE``) or on a system without SCHED_FIFO.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (AttributeError, OSError) as err:
        raise RealtimeUnavailableError(
            f"realtime measurement needs SCHED_FIFO, which this process may not use ({err}); "
            "run as root or with CAP_SYS_NICE, or measure without it"
        ) from None


def check_realtime() -> None:
    """Raise :class:`RealtimeUnavailableError` unless this process may use SCHED_FIFO (tried on
    itself and undone at once)."""
    try:
        policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    except (AttributeError, OSError) as err:
        raise RealtimeUnavailableError(f"no SCHED_FIFO on this system ({err})") from None
    enter_realtime()
    os.sched_setscheduler(0, policy, param)


@derived_object
class ExclusiveRunner(ms.runner.PyRunner):
    """A runner that times each batch of ``inner`` under the machine-wide measurement lock
    (:func:`~ms_meta.tuning.lock.measurement_lock`).

    ``run`` returns only when the batch is timed, with every future already done; the search
    waits for the results right after anyway.
    """

    def __init__(self, inner: ms.runner.Runner) -> None:
        super().__init__()
        self.inner = inner
        self.waited_seconds = 0.0  # total time spent waiting for other processes

    def run(self, runner_inputs: list[ms.runner.RunnerInput]) -> list[ms.runner.RunnerFuture]:
        with measurement_lock() as waited:
            self.waited_seconds += waited
            futures = self.inner.run(runner_inputs)
            for future in futures:
                future.result()
        return futures


def init_runner_worker(threads: int, realtime: bool) -> None:
    """Set up a runner worker process before it runs anything: ``threads`` TVM runtime threads
    (``TVM_NUM_THREADS``, read when the runtime's thread pool starts) and, with ``realtime``,
    SCHED_FIFO scheduling."""
    os.environ["TVM_NUM_THREADS"] = str(threads)
    if realtime:
        enter_realtime()


def make_local_runner(settings: MeasureSettings = MeasureSettings()) -> ms.runner.Runner:
    """MetaSchedule's ``LocalRunner`` with ``settings``, timing each batch under the
    machine-wide measurement lock (:class:`ExclusiveRunner`), so that
    two measuring processes on one machine take turns. Its worker process runs each candidate
    on ``settings.runtime_threads()`` threads and, with ``settings.realtime``, SCHED_FIFO
    (:func:`enter_realtime`; checked here, before any candidate)."""
    if settings.realtime:
        check_realtime()
    return ExclusiveRunner(
        ms.runner.LocalRunner(
            timeout_sec=settings.run_timeout_sec,
            evaluator_config=settings.evaluator_config(),
            initializer=functools.partial(
                init_runner_worker, settings.runtime_threads(), settings.realtime
            ),
        )
    )


def device_type(target: Target) -> str:
    return "cuda" if target.kind.name == "cuda" else "cpu"


@dataclass
class ContentionReport:
    """What a :class:`~ms_meta.tuning.contention.ContentionGuard` did over many batches."""

    batches: int = 0  # batches timed under the guard
    reruns: int = 0  # re-runs because other processes (or the hypervisor) took CPU
    disturbed: int = 0  # batches kept although every attempt was disturbed
    worst_kept_cores: float = 0.0  # the largest foreign load among kept measurements


def _timed_runs(runner: ms.runner.Runner, inputs: list) -> list[ms.runner.RunnerResult]:
    return [future.result() for future in runner.run(inputs)]


def _guarded_runs(runner, inputs: list, guard: ContentionGuard,
                  report: ContentionReport) -> list[ms.runner.RunnerResult]:  # fmt: skip
    """Time ``inputs``; re-time them while others took more CPU than ``guard`` allows, and
    keep the least disturbed attempt."""
    report.batches += 1
    best = None  # (excess over the guard's limits, foreign cores, results)
    for attempt in range(guard.max_reruns + 1):
        if attempt:
            report.reruns += 1
            time.sleep(guard.wait_seconds)
        with ForeignLoadMeter() as meter:
            results = _timed_runs(runner, inputs)
        load = meter.load
        if load is None:  # no accounting on this system: nothing to judge by
            return results
        excess = guard.excess(load)
        if best is None or excess < best[0]:
            best = (excess, load.cores, results)
        if excess == 0.0:
            break
        logger.info("timings disturbed: other processes took %.2f cores and the hypervisor "
                    "%.2f over %.1f s (attempt %d)", load.other_processes, load.steal,
                    load.seconds, attempt + 1)  # fmt: skip
    excess, cores, results = best
    if excess > 0.0:
        report.disturbed += 1
        logger.warning(
            "kept a batch timed while others took %.2f cores (after %d re-runs)",
            cores, guard.max_reruns,
        )  # fmt: skip
    report.worst_kept_cores = max(report.worst_kept_cores, cores)
    return results


def measure(
    builder: ms.builder.Builder,
    runner: ms.runner.Runner,
    target: Target,
    candidates: Sequence[ms.MeasureCandidate],
    guard: ContentionGuard | None = None,
    report: ContentionReport | None = None,
) -> list[ms.runner.RunnerResult]:
    """Build all candidates (in parallel, in the builder's pool), then run them one by one.

    Builds and runs never overlap, so compilation does not disturb the timings. With a
    ``guard`` (for a runner on this machine), a batch timed while other processes or the
    hypervisor took CPU is timed again (see :class:`~ms_meta.tuning.contention.ContentionGuard`);
    ``report`` counts what the guard did.
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
            if guard is None:
                timed = _timed_runs(runner, run_inputs)
            else:
                timed = _guarded_runs(runner, run_inputs, guard, report or ContentionReport())
            for i, result in zip(run_index, timed, strict=True):
                results[i] = result
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
