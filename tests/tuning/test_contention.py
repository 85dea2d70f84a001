"""The contention guard: CPU taken by other processes is seen, the own children's is not."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time

import pytest

from ms_meta.tuning.contention import ContentionGuard, ForeignLoadMeter

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

_BUSY = "import time; end = time.time() + {secs}\nwhile time.time() < end: pass"


def _start_foreign_busy_loop(secs: float) -> int:
    """Start a busy loop that is not a descendant of this process (a shell starts it in the
    background and exits at once, so it is re-parented away); returns its pid."""
    code = _BUSY.format(secs=secs)
    shell = subprocess.run(
        ["sh", "-c", 'python_code="$1"; "$0" -c "$python_code" >/dev/null 2>&1 & echo $!',
         sys.executable, code],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    time.sleep(0.3)  # let it start
    return int(shell.stdout.strip())


def _foreign_load_over(seconds: float) -> float:
    with ForeignLoadMeter() as meter:
        time.sleep(seconds)
    assert meter.load is not None
    return meter.load.other_processes


def test_own_children_are_not_foreign_load():
    before = _foreign_load_over(1.0)  # whatever else runs on this machine
    started = resource.getrusage(resource.RUSAGE_CHILDREN)
    with ForeignLoadMeter() as meter:
        subprocess.run([sys.executable, "-c", _BUSY.format(secs=1.0)], check=True)
    ended = resource.getrusage(resource.RUSAGE_CHILDREN)
    child_cpu = (ended.ru_utime - started.ru_utime) + (ended.ru_stime - started.ru_stime)
    assert meter.load is not None
    # the child's CPU time (as much as a loaded machine gave it) is counted as own ...
    assert child_cpu > 0.2, child_cpu
    assert meter.load.own * meter.load.seconds > 0.8 * child_cpu, (meter.load, child_cpu)
    assert meter.load.other_processes < before + 0.4, meter.load  # ... and none of it is foreign


def test_a_foreign_busy_process_is_seen():
    pid = _start_foreign_busy_loop(secs=2.5)
    try:
        during = _foreign_load_over(1.0)
    finally:
        os.kill(pid, signal.SIGKILL)
    # the loop alone keeps one of the cores busy (whatever else runs only adds to it)
    assert during > 0.6, during


def test_guarded_measure_re_times_a_disturbed_batch(target, sample_candidates):
    from ms_meta.tuning.builder import make_builder
    from ms_meta.tuning.measure import ContentionReport, make_local_runner, measure

    _, candidates = sample_candidates("dense:16,32,32", 2)
    builder, runner = make_builder(max_workers=1), make_local_runner()
    # Warm the runner's worker, so that its start-up is not inside the measured window.
    measure(builder, runner, target, candidates[:1])
    guard = ContentionGuard(max_foreign_cores=0.25, max_reruns=1, wait_seconds=0.0)
    report = ContentionReport()
    pid = _start_foreign_busy_loop(secs=60.0)
    try:
        results = measure(builder, runner, target, candidates, guard, report)
    finally:
        os.kill(pid, signal.SIGKILL)
    assert [r.error_msg for r in results] == [None, None]
    assert report.batches == 1
    assert report.reruns == 1  # disturbed on the first attempt, so timed once more
    assert report.disturbed == 1  # and still disturbed: the least disturbed attempt is kept
    assert report.worst_kept_cores > 0.25
