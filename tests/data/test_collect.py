"""The collector: standard databases, resume without duplicates, kill-safety, shards, the task
lock, and measurement through TVM's RPC tracker on loopback."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from ms_meta.cli.collect import learned_models
from ms_meta.cli.main import cli
from ms_meta.data.collect import (
    META_FILE,
    RECORD_FILE,
    WORKLOAD_FILE,
    CollectConfig,
    RPCError,
    RPCSettings,
    TaskLockedError,
    collect_task,
    count_lines,
    count_rpc_devices,
    local_machine,
    make_measurer,
    note_source,
    query_rpc_cpu,
    task_lock,
)

SPEC = "dense:32,32,32"
TASK = "dense_32_32_32"
# The guided phase runs EvolutionarySearch as in production, but scored by RandomModel: XGB
# training (about 7 s per batch here) would test TVM's model, not the collector.
SMALL = dict(
    random_fraction=0.5, batch_size=4, population_size=32, genetic_num_iters=2, cost_model="random"
)
# Random samples only: one batch per 4 records (the guided phase is covered in-process).
RANDOM_CLI = ["--random-fraction", "1", "--batch-size", "4"]
RPC_KEY = "ms-meta-test"
RPC_DEVICES = 2  # two servers under one key share the measurements
LOOPBACK = "127.0.0.1"


def _task_dir(root: Path, target) -> Path:
    from ms_meta.tuning.target import target_key

    return root / target_key(target) / TASK


def _lines(task_dir: Path) -> list[str]:
    return (task_dir / RECORD_FILE).read_text().splitlines()


def _trace_keys(lines: list[str]) -> list[str]:
    return [json.dumps(json.loads(line)[1][0], sort_keys=True) for line in lines]


def _load_db(task_dir: Path):
    from tvm.s_tir import meta_schedule as ms

    return ms.database.JSONDatabase(work_dir=str(task_dir))


def _assert_clean(task_dir: Path, expected: int) -> list[str]:
    """``expected`` whole records, no two with the same trace, loadable by MetaSchedule."""
    raw = (task_dir / RECORD_FILE).read_bytes()
    assert raw.endswith(b"\n"), "torn last line"
    lines = _lines(task_dir)
    assert len(lines) == expected
    for line in lines:
        json.loads(line)  # raises on a torn or glued line
    keys = _trace_keys(lines)
    assert len(set(keys)) == len(keys), "duplicate traces"
    assert len(_load_db(task_dir)) == expected
    return lines


@pytest.fixture(scope="module")
def measurer(target):
    """One LocalRunner for the in-process collections (each costs seconds to start)."""
    return make_measurer(target, CollectConfig(**SMALL))


@pytest.fixture(scope="module")
def workload():
    from ms_meta.workloads import resolve_one

    return resolve_one(SPEC)


def test_collect_then_resume(tmp_path, target, measurer, workload):
    from ms_meta.data.task_files import existing_trace_keys, trace_key
    from ms_meta.tuning.target import host_cpu, target_summary

    config = CollectConfig(trials_per_task=8, **SMALL)
    progress = collect_task(workload, tmp_path, target, config, measurer.builder, measurer.runner)
    task_dir = _task_dir(tmp_path, target)
    assert (progress.existing, progress.measured) == (0, 8)
    first = _assert_clean(task_dir, 8)
    assert count_lines(task_dir / WORKLOAD_FILE) == 1
    records = _load_db(task_dir).get_all_tuning_records()
    assert sum(float(r.run_secs[0]) < 1e9 for r in records) >= 6  # nearly all dense schedules run
    # The in-memory key of a candidate matches the key read back from its line, so a resumed
    # run recognises what is on disk (booleans are written as 0/1).
    on_disk = existing_trace_keys(task_dir / RECORD_FILE)
    assert {trace_key(r.trace) for r in records} == on_disk

    meta = json.loads((task_dir / META_FILE).read_text())
    assert meta["task"] == TASK and meta["spec"] == SPEC
    assert meta["target"] == target_summary(target)
    assert meta["cpu"] == host_cpu()
    assert meta["runner"] == "local"
    assert meta["records"] == 8
    assert meta["collect_seconds"] > 0 and meta["records_per_second"] > 0
    assert meta["collector"]["trials_per_task"] == 8 and meta["collector"]["rpc"] is None
    # 4 random samples (random_fraction 0.5), then 4 from the guided search
    run = meta["sources"][0]["run"]
    here = local_machine()  # the boot that timed them, so that the dataset keeps it apart
    assert meta["sources"] == [
        {"lines": [1, 4], "phase": "random", "cost_model": None, "run": run, "machine": here},
        {"lines": [5, 8], "phase": "guided", "cost_model": "random", "run": run, "machine": here},
    ]

    resumed = collect_task(
        workload,
        tmp_path,
        target,
        CollectConfig(trials_per_task=12, **SMALL),
        measurer.builder,
        measurer.runner,
    )
    assert (resumed.existing, resumed.measured) == (8, 4)
    lines = _assert_clean(task_dir, 12)
    assert lines[:8] == first  # append-only
    meta2 = json.loads((task_dir / META_FILE).read_text())
    assert meta2["records"] == 12 and meta2["created"] == meta["created"]
    assert meta2["collect_seconds"] > meta["collect_seconds"]
    assert meta2["sources"][:2] == meta["sources"]  # earlier runs' lines are kept
    (resumed_run,) = meta2["sources"][2:]
    assert resumed_run["lines"] == [9, 12] and resumed_run["phase"] == "guided"

    again = collect_task(
        workload,
        tmp_path,
        target,
        CollectConfig(trials_per_task=12, **SMALL),
        measurer.builder,
        measurer.runner,
    )
    assert again.measured == 0 and count_lines(task_dir / RECORD_FILE) == 12


def _wait_for_first_batch(proc, task_dir: Path, output) -> None:
    """Until the collector subprocess ``proc`` has appended its first batch (4 records);
    ``output()`` gives its log for the failure messages."""
    deadline = time.monotonic() + 150
    while count_lines(task_dir / RECORD_FILE) < 4:
        assert proc.poll() is None, output()
        assert time.monotonic() < deadline, "no batch within 150 s:\n" + output()
        time.sleep(0.1)


def test_killed_collector_resumes_without_duplicates(tmp_path, target):
    command = [
        sys.executable, "-m", "ms_meta", "collect", SPEC, "--out", str(tmp_path),
        "--trials-per-task", "8", *RANDOM_CLI,
    ]  # fmt: skip
    task_dir = _task_dir(tmp_path, target)
    log = tmp_path / "first.log"
    with open(log, "wb") as err:
        # Own session: the kill takes its builder and runner workers along.
        proc = subprocess.Popen(
            command, stdout=err, stderr=err, cwd=tmp_path, start_new_session=True
        )
        try:
            _wait_for_first_batch(proc, task_dir, log.read_text)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = count_lines(task_dir / RECORD_FILE)
    assert 4 <= killed_at <= 8
    # A kill in the middle of an append leaves half a line; the next run must cut it.
    with open(task_dir / RECORD_FILE, "a") as f:
        f.write(_lines(task_dir)[0][:700])

    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=240)
    assert done.returncode == 0, done.stderr
    _assert_clean(task_dir, 8)
    assert "dropped a torn last line" in done.stderr


def test_interrupted_collector_stops_after_the_batch_in_flight(tmp_path, target):
    """Ctrl-C ends the run cleanly between batches (exit 130), never inside TVM's C++ code."""
    command = [
        sys.executable, "-m", "ms_meta", "collect", SPEC, "--out", str(tmp_path),
        "--trials-per-task", "64", *RANDOM_CLI,
    ]  # fmt: skip
    task_dir = _task_dir(tmp_path, target)
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        # communicate() would wait for a collector that is still running
        _wait_for_first_batch(
            proc, task_dir, lambda: proc.communicate()[1] if proc.poll() is not None else ""
        )
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "stopping after the batch in flight" in err and "Segfault" not in err
    stopped_at = count_lines(task_dir / RECORD_FILE)
    assert 4 <= stopped_at < 64 and stopped_at % 4 == 0  # whole batches only
    _assert_clean(task_dir, stopped_at)
    assert json.loads((task_dir / META_FILE).read_text()).get("exhausted_at") is None


def test_shards_partition_the_task_list():
    runner = CliRunner()

    def listed(*extra: str) -> list[str]:
        result = runner.invoke(cli, ["collect", "all", "--list", *extra])
        assert result.exit_code == 0, result.output
        return [line.split("\t")[0] for line in result.output.splitlines() if line]

    everything = listed()
    first, second = listed("--shard", "0/2"), listed("--shard", "1/2")
    assert len(everything) > 2
    assert not set(first) & set(second)
    assert sorted(first + second) == sorted(everything)
    assert abs(len(first) - len(second)) <= 1
    bad = runner.invoke(cli, ["collect", "all", "--list", "--shard", "2/2"])
    assert bad.exit_code == 2 and "--shard" in bad.output


def test_second_collector_on_a_task_is_refused(tmp_path, target, workload):
    task_dir = _task_dir(tmp_path, target)
    with task_lock(task_dir):
        with pytest.raises(TaskLockedError, match="being collected by another process"):
            collect_task(workload, tmp_path, target, CollectConfig(**SMALL), None, None)
        result = CliRunner().invoke(
            cli, ["collect", SPEC, "--out", str(tmp_path), "--trials-per-task", "4"]
        )
    assert result.exit_code == 0, result.output
    assert f"{TASK}: skipped, being collected by another process" in result.output
    assert not (task_dir / RECORD_FILE).exists()


@pytest.mark.parametrize(
    ("address", "host", "port"),
    [("127.0.0.1:9190", "127.0.0.1", 9190), ("[::1]:9191", "::1", 9191), ("box:1", "box", 1)],
)
def test_rpc_tracker_address_parses(address, host, port):
    rpc = RPCSettings.parse(address, "k")
    assert (rpc.tracker_host, rpc.tracker_port) == (host, port)
    assert rpc.describe() == f"rpc k@{host}:{port}"


@pytest.mark.parametrize("address", ["nonsense", "host:", ":9190", "host:0", "host:70000", "h:x"])
def test_bad_rpc_tracker_is_a_usage_error(address):
    with pytest.raises(RPCError, match="HOST:PORT"):
        RPCSettings.parse(address, "k")
    result = CliRunner().invoke(
        cli, ["collect", SPEC, "--rpc-tracker", address, "--rpc-key", "k", "--out", "unused"]
    )
    assert result.exit_code == 2
    assert "--rpc-tracker" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rpc-tracker", "127.0.0.1:9190"], "go together"),
        (["--rpc-key", "k"], "go together"),
        (["--rpc-workers", "2"], "needs --rpc-tracker and --rpc-key"),
    ],
)
def test_rpc_options_go_together(args, message):
    result = CliRunner().invoke(cli, ["collect", SPEC, "--out", "unused", *args])
    assert result.exit_code == 2 and message in result.output


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def test_unreachable_tracker_is_a_clear_error(tmp_path):
    address = f"{LOOPBACK}:{_closed_port()}"
    result = CliRunner().invoke(
        cli, ["collect", SPEC, "--out", str(tmp_path), "--rpc-tracker", address, "--rpc-key", "k"]
    )
    assert result.exit_code == 1
    assert f"cannot reach the RPC tracker at {address}" in result.output
    assert "Traceback" not in result.output
    assert not any(tmp_path.iterdir())  # nothing written before the check


@pytest.fixture(scope="module")
def rpc_tracker():
    """A tracker and one server under ``RPC_KEY`` on loopback, as TVM's own runner tests do.

    Both run in TVM's Popen workers (separate processes); ports come from a random range so
    that parallel test runs do not collide.
    """
    pytest.importorskip("tornado", reason="TVM's RPC tracker needs tornado")
    from tvm.rpc.server import Server
    from tvm.rpc.tracker import Tracker

    base = random.Random().randrange(20000, 40000, 200)
    tracker = Tracker(LOOPBACK, port=base, port_end=base + 100, silent=True)
    servers = []
    try:
        for _ in range(RPC_DEVICES):
            server = Server(
                LOOPBACK,
                port=base + 100,
                port_end=base + 200,
                key=RPC_KEY,
                tracker_addr=(LOOPBACK, tracker.port),
                silent=True,
            )
            servers.append(server)
        settings = RPCSettings(tracker_host=LOOPBACK, tracker_port=tracker.port, key=RPC_KEY)
        deadline = time.monotonic() + 30
        # Servers register with the tracker asynchronously.
        while _registered(settings) < RPC_DEVICES:
            assert time.monotonic() < deadline, "the RPC servers did not register in 30 s"
            time.sleep(0.2)
        yield settings
    finally:
        for server in servers:
            server.terminate()
        tracker.terminate()


def _registered(settings: RPCSettings) -> int:
    try:
        return count_rpc_devices(settings, timeout_sec=5)
    except RPCError:
        return 0


def test_rpc_without_a_device_under_the_key(tmp_path, rpc_tracker):
    result = CliRunner().invoke(
        cli,
        ["collect", SPEC, "--out", str(tmp_path), "--rpc-tracker", rpc_tracker.address,
         "--rpc-key", "no-such-device"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "no device is registered under key 'no-such-device'" in result.output
    assert RPC_KEY in result.output  # lists the keys that are there
    assert "Traceback" not in result.output


def test_collect_through_rpc_tracker(tmp_path, target, rpc_tracker, caplog):
    from ms_meta.tuning.target import host_cpu

    assert query_rpc_cpu(rpc_tracker) == host_cpu()
    caplog.set_level(logging.INFO, logger="ms_meta.tuning.rpc")
    result = CliRunner().invoke(
        cli,
        ["collect", SPEC, "--out", str(tmp_path), "--trials-per-task", "4", *RANDOM_CLI,
         "--rpc-tracker", rpc_tracker.address, "--rpc-key", RPC_KEY],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    task_dir = _task_dir(tmp_path, target)
    _assert_clean(task_dir, 4)
    records = _load_db(task_dir).get_all_tuning_records()
    assert all(float(s) < 1e9 for r in records for s in r.run_secs), "a run failed over RPC"
    meta = json.loads((task_dir / META_FILE).read_text())
    assert meta["runner"] == f"rpc {RPC_KEY}@{rpc_tracker.address}"
    assert meta["cpu"] == host_cpu()  # asked from the device itself
    assert meta["collector"]["rpc"]["key"] == RPC_KEY
    assert meta["records"] == 4 and meta["records_per_second"] > 0
    assert f"{RPC_DEVICES} device(s), {RPC_DEVICES} session(s) at a time" in caplog.text


def test_exhausted_design_space_is_remembered(tmp_path, target, measurer):
    """A task whose design space has no unmeasured schedule left is marked, and later runs
    skip it (without starting a builder) until its record count changes."""
    from ms_meta.data.collect import collect
    from ms_meta.tuning.target import target_key
    from ms_meta.workloads import resolve_one

    tiny = resolve_one("max_pool2d:1,1,2,2,2,2,0")  # a single output element
    # Large batches: the space has a few dozen schedules, and per-batch overhead dominates.
    config = CollectConfig(trials_per_task=64, **{**SMALL, "batch_size": 32})
    progress = collect_task(tiny, tmp_path, target, config, measurer.builder, measurer.runner)
    task_dir = tmp_path / target_key(target) / tiny.name
    have = count_lines(task_dir / RECORD_FILE)
    assert progress.exhausted and 0 < have < 64
    meta = json.loads((task_dir / META_FILE).read_text())
    assert meta["exhausted_at"] == have and meta["records_per_second"] > 0

    again = collect([tiny], tmp_path, target, config).tasks[0]
    assert again.measured == 0 and again.exhausted
    assert "exhausted" in again.skipped
    assert count_lines(task_dir / RECORD_FILE) == have

    # A changed record count (say, records merged in) lifts the mark.
    meta["exhausted_at"] = have - 1
    (task_dir / META_FILE).write_text(json.dumps(meta))
    third = collect_task(tiny, tmp_path, target, config, measurer.builder, measurer.runner)
    assert third.skipped is None and third.exhausted
    # The search is random: another pass may still find a schedule or two the first missed.
    now = count_lines(task_dir / RECORD_FILE)
    assert now == have + third.measured
    assert json.loads((task_dir / META_FILE).read_text())["exhausted_at"] == now

    # Asked to, a run measures a marked task again instead of skipping it.
    retried = collect([tiny], tmp_path, target, replace(config, retry_exhausted=True)).tasks[0]
    assert retried.skipped is None

    # One-Shot picks are another search: a mark stops the other phases, not them.
    have = count_lines(task_dir / RECORD_FILE)
    meta = json.loads((task_dir / META_FILE).read_text())
    meta["exhausted_at"] = have
    (task_dir / META_FILE).write_text(json.dumps(meta))
    picks = collect(
        [tiny], tmp_path, target, replace(config, one_shot_picks=2), models=learned_models()
    ).tasks[0]
    assert picks.skipped is None and picks.measured <= 2  # no random or guided phase ran


def test_one_shot_picks_are_measured_after_the_other_phases_and_resume(
    tmp_path, target, measurer, workload
):
    """--one-shot-picks: the best-scored unmeasured finalists of One-Shot searches (shipped
    weights, no measurement guiding them) are appended as their own source, counted apart
    from trials_per_task, and a re-run tops them up to the new count only."""
    from ms_meta.data.collect import one_shot_records, records_wanted

    config = CollectConfig(
        trials_per_task=4, one_shot_picks=4, one_shot_per_search=2, **{**SMALL, "seed": 3}
    )
    task_dir = _task_dir(tmp_path, target)
    assert records_wanted(task_dir, 0, config) == 8
    models = learned_models()
    progress = collect_task(
        workload, tmp_path, target, config, measurer.builder, measurer.runner, models=models
    )
    assert progress.measured == 8
    first = _assert_clean(task_dir, 8)  # no pick repeats a schedule measured before
    sources = json.loads((task_dir / META_FILE).read_text())["sources"]
    assert [s["phase"] for s in sources] == ["random", "guided", "one-shot"]
    assert sources[-1]["lines"] == [5, 8] and sources[-1]["cost_model"] == "one-shot:shipped"
    assert one_shot_records(sources) == 4
    assert records_wanted(task_dir, 8, config) == 0

    more = replace(config, one_shot_picks=6)
    assert records_wanted(task_dir, 8, more) == 2
    resumed = collect_task(
        workload, tmp_path, target, more, measurer.builder, measurer.runner, models=models
    )
    assert resumed.measured == 2
    assert _assert_clean(task_dir, 10)[:8] == first  # append-only
    sources = json.loads((task_dir / META_FILE).read_text())["sources"]
    assert one_shot_records(sources) == 6 and sources[-1]["lines"] == [9, 10]
    again = collect_task(
        workload, tmp_path, target, more, measurer.builder, measurer.runner, models=models
    )
    assert again.measured == 0


def test_sources_extend_only_a_contiguous_run_of_one_source():
    sources: list = []
    note_source(sources, "random", "xgb", "t0", 1, 4)
    note_source(sources, "random", "xgb", "t0", 5, 4)  # same source, next lines: extended
    note_source(sources, "guided", "xgb", "t0", 9, 4)
    note_source(sources, "guided", "meta", "t1", 13, 2)  # another run and model
    note_source(sources, "one-shot", "one-shot:shipped", "t1", 15, 2)
    assert sources == [
        {"lines": [1, 8], "phase": "random", "cost_model": None, "run": "t0"},
        {"lines": [9, 12], "phase": "guided", "cost_model": "xgb", "run": "t0"},
        {"lines": [13, 14], "phase": "guided", "cost_model": "meta", "run": "t1"},
        {"lines": [15, 16], "phase": "one-shot", "cost_model": "one-shot:shipped", "run": "t1"},
    ]


def test_a_space_yielding_mostly_duplicates_counts_as_exhausted():
    from ms_meta.data.task_meta import TaskProgress
    from ms_meta.data.task_meta import looks_exhausted as _looks_exhausted

    # what small pooling tasks did on every pass: a handful of new records, many duplicates
    assert _looks_exhausted(TaskProgress("pool", 131, measured=5, duplicates=191))
    assert _looks_exhausted(TaskProgress("pool", 131, measured=0, exhausted=True))
    # a normal top-up, and an interrupted run, are not
    assert not _looks_exhausted(TaskProgress("conv", 128, measured=39, duplicates=4))
    # a productive run whose last attempts found nothing new: a large space, not exhausted
    # (stock XGB-guided runs of dense layers ended at 62 of 64 records like this)
    assert not _looks_exhausted(TaskProgress("dense", 0, measured=62, duplicates=7, exhausted=True))
    # a tiny space: more proposals already measured than new ones
    assert _looks_exhausted(TaskProgress("pool", 0, measured=28, duplicates=83, exhausted=True))
    assert not _looks_exhausted(
        TaskProgress("pool", 131, measured=5, duplicates=191, exhausted=True, stopped=True)
    )


def test_batches_timed_under_contention_are_marked_and_left_out_of_the_dataset(
    tmp_path, target, measurer, workload, monkeypatch
):
    from ms_meta.data.dataset import build_dataset
    from ms_meta.tuning import contention

    # A guard that finds every batch disturbed (any load exceeds -1 cores) and never re-times.
    guard = contention.ContentionGuard(max_foreign_cores=-1.0, max_reruns=0)
    monkeypatch.setattr(contention, "ContentionGuard", lambda: guard)
    config = CollectConfig(trials_per_task=8, **SMALL)  # batches of 4
    collect_task(workload, tmp_path, target, config, measurer.builder, measurer.runner)
    task_dir = _task_dir(tmp_path, target)
    _assert_clean(task_dir, 8)
    meta = json.loads((task_dir / META_FILE).read_text())
    assert meta["disturbed_lines"] == [[1, 4], [5, 8]]
    assert meta["disturbed_batches"] == 2 and meta["timing_reruns"] == 0
    ds = build_dataset(tmp_path, cache_dir=None)
    assert ds.tasks == [] and ds.skips.by_kind() == {"disturbed": 8}
    # without a guard nothing is marked, and the next batch is used
    resumed = CollectConfig(trials_per_task=12, contention_guard=False, **SMALL)
    collect_task(workload, tmp_path, target, resumed, measurer.builder, measurer.runner)
    assert json.loads((task_dir / META_FILE).read_text())["disturbed_lines"] == [[1, 4], [5, 8]]
    (task,) = build_dataset(tmp_path, cache_dir=None).tasks
    assert task.lines.tolist() == [9, 10, 11, 12]
