"""The machine-wide measurement lock: a second measuring process waits for the first one's
batch, a killed holder frees the lock, and the lock can be turned off."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from tvm.s_tir import meta_schedule as ms

from ms_meta.tuning.builder import make_builder
from ms_meta.tuning.lock import LOCK_ENV, lock_path, measurement_lock
from ms_meta.tuning.measure import MeasureSettings, make_local_runner, measure
from ms_meta.workloads import resolve_one

HOLDER = (
    "import sys, time\n"
    "from ms_meta.tuning.lock import measurement_lock\n"
    "with measurement_lock():\n"
    "    print('held', flush=True)\n"
    "    time.sleep(float(sys.argv[1]))\n"
)


@pytest.fixture
def lock_file(tmp_path, monkeypatch):
    path = tmp_path / "measure.lock"
    monkeypatch.setenv(LOCK_ENV, str(path))
    return path


def _holder(seconds: float) -> subprocess.Popen:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_second_process_waits_for_the_holders_batch(lock_file):
    child = _holder(1.5)
    try:
        with measurement_lock() as waited:
            pass
        assert waited >= 1.0
    finally:
        child.wait()


def test_a_killed_holder_frees_the_lock(lock_file):
    child = _holder(600)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    with measurement_lock() as waited:
        assert waited < 5
    assert lock_file.exists()


def test_the_lock_can_be_turned_off(monkeypatch):
    monkeypatch.setenv(LOCK_ENV, "none")
    assert lock_path() is None
    with measurement_lock() as waited:
        assert waited == 0.0


def test_the_local_runner_times_a_real_candidate_after_the_holder(lock_file, target):
    mod = resolve_one("dense:64,64,64").build()
    sch = ms.TuneContext(mod=mod, target=target, space_generator="post-order-apply")
    sch = sch.generate_design_space()[0]
    candidate = ms.MeasureCandidate(sch, ms.arg_info.ArgInfo.from_prim_func(mod["main"]))
    runner = make_local_runner(MeasureSettings(repeat=2, min_repeat_ms=5))
    child = _holder(8.0)  # longer than building the candidate takes
    try:
        (result,) = measure(make_builder(), runner, target, [candidate])
    finally:
        child.wait()
    assert result.error_msg is None and len(result.run_secs) == 2
    assert runner.waited_seconds > 0.0
