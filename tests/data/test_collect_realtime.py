"""collect --realtime: candidates are timed by SCHED_FIFO runner workers, and meta.json says
so; a process that may not use SCHED_FIFO is refused in one line before measuring."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from ms_meta.tuning.measure import RealtimeUnavailableError, check_realtime


def _may_use_fifo() -> bool:
    try:
        check_realtime()
    except RealtimeUnavailableError:
        return False
    return True


def _collect(out, *extra, prefix=()):
    cmd = [*prefix, sys.executable, "-m", "ms_meta", "collect", "dense:16,16,16",
           "--out", str(out), "--trials-per-task", "2", "--batch-size", "2",
           "--population-size", "4", "--cost-model", "random", "--realtime", *extra]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(not _may_use_fifo(), reason="this process may not use SCHED_FIFO")
def test_realtime_collection_records_valid_measurements_and_says_so(tmp_path):
    proc = _collect(tmp_path)
    assert proc.returncode == 0, proc.stderr
    (meta_path,) = tmp_path.glob("*/*/meta.json")
    meta = json.loads(meta_path.read_text())
    assert meta["collector"]["realtime"] is True
    lines = (meta_path.parent / "database_tuning_record.json").read_text().splitlines()
    assert len(lines) == 2
    for line in lines:
        run_secs = json.loads(line)[1][1]
        assert run_secs and all(0 < s < 1 for s in run_secs)


@pytest.mark.skipif(not shutil.which("setpriv"), reason="needs setpriv to drop the privilege")
def test_realtime_collection_without_the_privilege_is_one_line_and_measures_nothing(tmp_path):
    drop = ("setpriv", "--bounding-set", "-sys_nice", "--inh-caps", "-sys_nice")
    proc = _collect(tmp_path, prefix=drop)
    assert proc.returncode != 0
    assert "realtime measurement needs SCHED_FIFO" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("*/*/database_tuning_record.json"))
