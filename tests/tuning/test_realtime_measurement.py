"""Realtime measurement: the runner's workers time candidates as SCHED_FIFO processes, and a
process without the privilege is told so in one line before anything is measured."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from tvm.s_tir import meta_schedule as ms

from ms_meta.tuning.builder import make_builder
from ms_meta.tuning.measure import (
    MeasureSettings,
    RealtimeUnavailableError,
    check_realtime,
    make_local_runner,
    measure,
)
from ms_meta.workloads import resolve_one


def _may_use_fifo() -> bool:
    try:
        check_realtime()
    except RealtimeUnavailableError:
        return False
    return True


def test_check_realtime_leaves_the_process_as_it_was():
    before = os.sched_getscheduler(0)
    if _may_use_fifo():
        assert os.sched_getscheduler(0) == before
    else:
        with pytest.raises(RealtimeUnavailableError, match="SCHED_FIFO"):
            make_local_runner(MeasureSettings(realtime=True))


@pytest.mark.skipif(not _may_use_fifo(), reason="this process may not use SCHED_FIFO")
def test_a_realtime_runner_measures_a_real_candidate(target):
    mod = resolve_one("dense:64,64,64").build()
    sch = ms.TuneContext(mod=mod, target=target, space_generator="post-order-apply")
    sch = sch.generate_design_space()[0]
    candidate = ms.MeasureCandidate(sch, ms.arg_info.ArgInfo.from_prim_func(mod["main"]))
    runner = make_local_runner(MeasureSettings(realtime=True, repeat=2, min_repeat_ms=5))
    (result,) = measure(make_builder(), runner, target, [candidate])
    assert result.error_msg is None
    assert len(result.run_secs) == 2 and all(0 < float(s) < 1 for s in result.run_secs)


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv"),
    reason="needs root and setpriv to drop the privilege",
)
def test_a_process_without_the_privilege_is_refused_in_one_line():
    code = (
        "from ms_meta.tuning.measure import MeasureSettings, make_local_runner\n"
        "make_local_runner(MeasureSettings(realtime=True))\n"
    )
    # the same process without CAP_SYS_NICE, which SCHED_FIFO needs
    drop = ["setpriv", "--bounding-set", "-sys_nice", "--inh-caps", "-sys_nice"]
    proc = subprocess.run(
        [*drop, sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0
    assert "RealtimeUnavailableError: realtime measurement needs SCHED_FIFO" in proc.stderr
