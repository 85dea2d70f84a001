"""Faults and bad input driven through the real CLI: ``ms-meta collect`` and ``ms-meta db``.

Each case runs the installed command in a subprocess on real files, with real signals and a
real lock held by another process, and checks that no user data is lost or rewritten and that
the answer is a clear one-line message or the correct result.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ms_meta.data import layout
from tests.cli.runner import copy_seed, ms_meta, ms_meta_command
from tests.conftest import tree_hash

FAILED_SECS = 1e9  # run_secs at or above this mark a failed build or run
COLLECT_SPEC = "dense:64,64,64"
COLLECT_TASK = "dense_64_64_64"


def record_file(root: Path) -> Path:
    (task_dir,) = root.glob(f"*/{COLLECT_TASK}")
    return task_dir / layout.RECORD_FILE


def records(path: Path) -> list[list]:
    """``[workload_index, [trace, run_secs, target, args_info]]`` of every line."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def traces(path: Path) -> list[str]:
    return [json.dumps(rec[1][0], sort_keys=True) for rec in records(path)]


def failed_runs(path: Path) -> int:
    return sum(any(float(s) >= FAILED_SECS for s in rec[1][1]) for rec in records(path))


def collect_args(root: Path, trials: int = 8) -> list[str]:
    # Random samples only: they are a function of the seed, and need no model training.
    return [
        "collect", COLLECT_SPEC, "--out", str(root), "--trials-per-task", str(trials),
        "--batch-size", "2", "--population-size", "16", "--random-fraction", "1",
    ]  # fmt: skip


class LockHolder:
    """Another process holding a task folder's lock (the one every collector takes)."""

    def __init__(self, task_dir: Path, seconds: float = 120.0) -> None:
        code = (
            "import sys, time; from pathlib import Path;"
            "from ms_meta.data.task_files import task_lock;"
            f"ctx = task_lock(Path({str(task_dir)!r})); ctx.__enter__();"
            "print('locked', flush=True);"
            f"time.sleep({seconds})"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout.readline().strip() == "locked"

    def release(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)


# ---- collect: Ctrl-C ----------------------------------------------------------------------


def _start_collect_in_its_own_group(root: Path, trials: int) -> subprocess.Popen:
    """``setsid ms-meta collect ...``: a process group of its own, as a terminal job has."""
    return subprocess.Popen(
        ms_meta_command(*collect_args(root, trials)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _wait_for_lines(root: Path, proc: subprocess.Popen, lines: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(root.glob(f"*/{COLLECT_TASK}/{layout.RECORD_FILE}"))
        if found and len(records(found[0])) >= lines:
            return
        if proc.poll() is not None:
            pytest.fail(f"collect ended early with status {proc.returncode}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"no {lines} records within {timeout} s")


class StderrReader:
    """Collects a process's stderr in a thread, so a test can wait for a line."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.text = ""
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for chunk in iter(lambda: proc.stderr.read(1), ""):
            self.text += chunk

    def wait_for(self, needle: str, timeout: float = 60) -> bool:
        deadline = time.monotonic() + timeout
        while needle not in self.text and time.monotonic() < deadline:
            time.sleep(0.02)
        return needle in self.text

    def close(self) -> str:
        self._thread.join(timeout=30)
        return self.text


@pytest.mark.parametrize("presses", [1, 2], ids=["ctrl-c", "ctrl-c-twice"])
def test_ctrl_c_to_the_process_group_records_no_failed_run_and_resume_completes(
    tmp_path: Path, presses: int
) -> None:
    """SIGINT to the whole process group (a terminal's Ctrl-C) while a batch is measured:
    the batch is dropped, never written as failed runs; a second Ctrl-C aborts without a
    traceback; the same command then measures the rest."""
    root = tmp_path / "coll"
    proc = _start_collect_in_its_own_group(root, trials=8)
    stderr = StderrReader(proc)
    _wait_for_lines(root, proc, 2)
    os.killpg(proc.pid, signal.SIGINT)
    assert stderr.wait_for("stopping after the batch in flight"), stderr.text
    if presses == 2 and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=300)
    text = stderr.close()
    assert proc.returncode == 130, text
    assert "Traceback" not in text and "RuntimeError" not in text, text
    path = record_file(root)
    kept = records(path)
    assert kept and failed_runs(path) == 0, "an interrupted batch was written as failed runs"
    assert len(kept) % 2 == 0, "a batch was written in part"
    meta = json.loads((path.parent / layout.META_FILE).read_text())
    assert meta["sources"][-1]["lines"][1] == len(kept), "meta.json lost track of the records"

    resumed = ms_meta(*collect_args(root, trials=8))
    assert resumed.returncode == 0, resumed.stderr
    assert len(records(path)) == 8 and failed_runs(path) == 0
    assert len(set(traces(path))) == 8, "a schedule was measured twice"
    assert traces(path)[: len(kept)] == [json.dumps(r[1][0], sort_keys=True) for r in kept]


# ---- collect: reproducible samples and a locked task ----------------------------------------


def test_the_same_seed_samples_the_same_schedules(tmp_path: Path) -> None:
    """Two runs with one seed measure the same schedules, in the same order (the latencies
    differ, as measurements do)."""
    runs = []
    for name in ("a", "b"):
        root = tmp_path / name
        result = ms_meta(*collect_args(root, trials=6), "--seed", "5")
        assert result.returncode == 0, result.stderr
        runs.append(traces(record_file(root)))
    assert len(runs[0]) == 6 and runs[0] == runs[1]


def test_a_task_locked_by_another_collector_is_named_in_the_summary(tmp_path: Path) -> None:
    from ms_meta.tuning.target import parse_target, target_key

    root = tmp_path / "coll"
    task_dir = root / target_key(parse_target(None)) / COLLECT_TASK
    holder = LockHolder(task_dir)
    try:
        result = ms_meta(*collect_args(root, trials=2))
    finally:
        holder.release()
    assert result.returncode == 0, result.stderr
    assert "1 task(s) skipped: locked by another collector" in result.stdout
    assert not (task_dir / layout.RECORD_FILE).exists()


# ---- db merge: the collector's lock, empty sources ------------------------------------------


def test_merge_append_refuses_a_folder_a_collector_is_writing(tmp_path: Path) -> None:
    out = copy_seed(tmp_path, "mm_512", "out")
    source = copy_seed(tmp_path, "mm_1024")
    before = tree_hash(out)
    holder = LockHolder(out)
    try:
        result = ms_meta("db", "merge", source, "--out", out, "--append")
    finally:
        holder.release()
    assert result.returncode == 1
    assert "another process (a collector) is writing it" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    after = tree_hash(out)
    after.pop(layout.LOCK_FILE, None)
    assert after == before


def test_merge_append_waits_for_a_collector_that_finishes(tmp_path: Path) -> None:
    out = copy_seed(tmp_path, "mm_512", "out")
    source = copy_seed(tmp_path, "mm_1024")
    records_before = len(records(out / layout.RECORD_FILE))
    holder = LockHolder(out, seconds=1.5)
    try:
        result = ms_meta("db", "merge", source, "--out", out, "--append")
    finally:
        holder.release()
    assert result.returncode == 0, result.stderr
    assert len(records(out / layout.RECORD_FILE)) > records_before


def _empty_database(tmp_path: Path) -> Path:
    empty = copy_seed(tmp_path, "mm_512", "empty")
    (empty / layout.RECORD_FILE).write_text("")
    return empty


def test_merging_an_empty_source_fails_and_writes_nothing(tmp_path: Path) -> None:
    empty = _empty_database(tmp_path)
    out = tmp_path / "merged"
    result = ms_meta("db", "merge", empty, "--out", out)
    assert result.returncode == 1
    assert "nothing to merge" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()

    existing = copy_seed(tmp_path, "mm_1024", "existing")
    before = tree_hash(existing)
    result = ms_meta("db", "merge", empty, "--out", existing, "--append")
    assert result.returncode == 1 and "nothing to merge" in result.stderr
    assert tree_hash(existing) == before


# ---- unreadable folders ---------------------------------------------------------------------


def _tree_with_unreadable_folders(tmp_path: Path) -> tuple[Path, list[str]]:
    """A good database, a folder whose record file is a directory, and one whose record file
    is a dangling symbolic link (the folders a reader cannot read, whoever runs it)."""
    tree = tmp_path / "tree"
    copy_seed(tree, "mm_512", "good")
    as_dir = copy_seed(tree, "mm_1024", "record_file_is_a_directory")
    (as_dir / layout.RECORD_FILE).unlink()
    (as_dir / layout.RECORD_FILE).mkdir()
    dangling = copy_seed(tree, "mm_1024", "record_file_is_a_dangling_link")
    (dangling / layout.RECORD_FILE).unlink()
    (dangling / layout.RECORD_FILE).symlink_to(tmp_path / "gone.json")
    return tree, [as_dir.name, dangling.name]


def test_validate_fails_naming_unreadable_folders(tmp_path: Path) -> None:
    tree, bad = _tree_with_unreadable_folders(tmp_path)
    result = ms_meta("db", "validate", tree)
    assert result.returncode == 1, result.stdout
    for name in bad:
        assert name in result.stdout
    assert "unreadable folder" in result.stdout


def test_stats_reports_unreadable_folders(tmp_path: Path) -> None:
    tree, bad = _tree_with_unreadable_folders(tmp_path)
    result = ms_meta("db", "stats", tree)
    assert result.returncode == 0
    for name in bad:
        assert f"unreadable folder left out: {tree / name}" in result.stderr
    as_json = json.loads(ms_meta("db", "stats", tree, "--json").stdout)
    assert sorted(Path(u["path"]).name for u in as_json["unreadable"]) == sorted(bad)
    assert as_json["totals"]["unreadable_folders"] == 2


def test_merge_refuses_unreadable_folders_unless_told_to_skip_them(tmp_path: Path) -> None:
    tree, bad = _tree_with_unreadable_folders(tmp_path)
    out = tmp_path / "merged"
    refused = ms_meta("db", "merge", tree, "--out", out)
    assert refused.returncode == 1
    assert len(refused.stderr.strip().splitlines()) == 1
    assert all(name in refused.stderr for name in bad) and "--skip-unreadable" in refused.stderr
    assert not out.exists()

    merged = ms_meta("db", "merge", tree, "--out", out, "--skip-unreadable")
    assert merged.returncode == 0, merged.stderr
    good = records(tree / "good" / layout.RECORD_FILE)
    assert len(records(out / layout.RECORD_FILE)) == len(good)


@pytest.mark.skipif(os.geteuid() == 0, reason="permissions do not stop root from reading")
def test_a_folder_without_read_permission_is_reported(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    copy_seed(tree, "mm_512", "good")
    locked = copy_seed(tree, "mm_1024", "no_permission")
    locked.chmod(0)
    try:
        result = ms_meta("db", "validate", tree)
    finally:
        locked.chmod(0o755)
    assert result.returncode == 1 and "no_permission" in result.stdout
