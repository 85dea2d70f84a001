"""Several real processes writing one store at once, and a process killed mid-import."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from ms_meta.store import SqlStore
from ms_meta.store.msjson import join_record_line
from tests.conftest import REPO_ROOT, SEED_RECORDS
from tests.store.conftest import seed_records, with_decisions, write_database

_WRITER = textwrap.dedent(
    """
    import os, sys, time
    from ms_meta.store import SqlStore
    from tests.store.conftest import seed_records, with_decisions
    path, go, worker, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    store = SqlStore(path)
    workload = store.add_workload("123", "bW9kdWxl", "mm_512")
    base = seed_records()
    while not os.path.exists(go):
        time.sleep(0.005)
    for i in range(n):  # one transaction per record, as MetaSchedule commits them
        store.add_records([(workload, with_decisions(base[i % len(base)], worker * 100000 + i))])
    """
)


def _python(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen([sys.executable, *args], cwd=REPO_ROOT, env=env, **kwargs)


def test_three_processes_committing_at_once_lose_nothing(tmp_path):
    path, go = tmp_path / "s.sqlite", tmp_path / "go"
    n = 150
    workers = [_python("-c", _WRITER, str(path), str(go), str(w), str(n)) for w in range(3)]
    time.sleep(1.0)  # let all three open the store and wait
    go.touch()
    for worker in workers:
        assert worker.wait(timeout=120) == 0
    with SqlStore(path) as store:
        assert store.count() == 3 * n
        assert len(store.workloads()) == 1
        assert store.integrity_check() == "ok"


def _big_database(tmp_path, n: int):
    workload_line = (SEED_RECORDS / "mm_512" / "database_workload.json").read_text().strip()
    base = seed_records()
    lines = [join_record_line(0, with_decisions(base[i % len(base)], i)) for i in range(n)]
    return write_database(tmp_path / "big", workload_line, lines)


def test_kill_9_mid_import_keeps_committed_batches_and_the_import_resumes(tmp_path):
    n, batch = 20_000, 500
    database = _big_database(tmp_path, n)
    path = tmp_path / "s.sqlite"
    args = ["-m", "ms_meta", "store", "import", str(database), "--store", str(path)]
    process = _python(*args, "--batch", str(batch), stderr=subprocess.DEVNULL)
    seen = 0
    deadline = time.time() + 120
    while seen == 0 and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
        if path.exists():
            try:
                seen = sqlite3.connect(path).execute("SELECT count(*) FROM records").fetchone()[0]
            except sqlite3.OperationalError:  # the schema is being created
                seen = 0
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 0 < seen < n, "the import was not caught mid-way"
    with SqlStore(path) as store:
        assert store.integrity_check() == "ok"
        kept = store.count()
        assert kept % batch == 0 and kept < n  # whole batches only
        resumed = _python(*args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        out, _ = resumed.communicate(timeout=300)
        assert resumed.returncode == 0
        assert store.count() == n
        assert f"{n - kept} added, 0 already stored" in out
        assert f"{kept} imported before" in out


@pytest.mark.slow
def test_two_processes_tuning_records_into_one_record_store(tmp_path):
    script = textwrap.dedent(
        """
        import os, sys, time
        from tvm.s_tir import meta_schedule as ms
        from ms_meta.store import RecordStore
        path, go, task = sys.argv[1], sys.argv[2], sys.argv[3]
        source = ms.database.JSONDatabase(work_dir=task)
        store = RecordStore(path)
        while not os.path.exists(go):
            time.sleep(0.01)
        for record in source.get_all_tuning_records():
            store.commit_tuning_record(record)
        """
    )
    path, go = tmp_path / "s.sqlite", tmp_path / "go"
    tasks = [SEED_RECORDS / "mm_512", SEED_RECORDS / "bmm_16_256"]
    workers = [_python("-c", script, str(path), str(go), str(t)) for t in tasks]
    time.sleep(15)  # TVM imports
    go.touch()
    for worker in workers:
        assert worker.wait(timeout=300) == 0
    with SqlStore(path) as store:
        assert store.count() == 64 + 52 and len(store.workloads()) == 2
        assert store.integrity_check() == "ok"
