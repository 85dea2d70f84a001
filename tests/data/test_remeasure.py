"""Re-timing a task's fastest schedules on the target's thread count with cold caches: the
runner's worker threads, the appended records and their meta.json lines, resuming, and the
library ranking a task by the records timed the way its code runs."""

from __future__ import annotations

import functools
import json
import os

import numpy as np
import pytest

from ms_meta.data.collect import CollectConfig, collect_task, count_lines
from ms_meta.data.layout import META_FILE, RECORD_FILE
from ms_meta.data.measurements import line_timing, measurement_sources
from ms_meta.data.remeasure import REMEASURE_PHASE, RemeasureError, remeasure_task
from ms_meta.errors import MsMetaError
from ms_meta.tuning.measure import MeasureSettings, init_runner_worker

SPEC = "dense:32,32,32"


def _runtime_threads() -> int:
    import tvm

    return int(tvm.get_global_func("runtime.NumThreads")())


@pytest.mark.parametrize("threads", [1, min(2, os.cpu_count() or 1)])
def test_runner_workers_run_on_the_thread_count_asked_for(threads):
    # TVM's own default is half the logical CPUs on x86 (1 on a 2-vCPU machine)
    from tvm.support.popen_pool import PopenPoolExecutor

    pool = PopenPoolExecutor(
        max_workers=1, initializer=functools.partial(init_runner_worker, threads, False)
    )
    try:
        assert pool.submit(_runtime_threads).result() == threads
    finally:
        pool.shutdown()


def test_default_measure_settings_use_the_physical_cores():
    from ms_meta.tuning.target import physical_cores

    assert MeasureSettings().runtime_threads() == physical_cores()
    assert MeasureSettings(threads=5).runtime_threads() == 5
    cold = MeasureSettings(repeat=3, min_repeat_ms=40).with_cold_caches()
    assert (cold.number, cold.repeat, cold.min_repeat_ms) == (1, 10, 0)
    assert cold.enable_cpu_cache_flush


def test_timing_conditions_of_record_lines_come_from_meta_sources():
    meta = {
        "sources": [
            {"lines": [1, 3], "phase": "random", "machine": "m"},
            {"lines": [4, 5], "phase": "remeasure", "machine": "m", "threads": 2},
            {"lines": [6, 6], "phase": "remeasure", "machine": "m", "threads": 2,
             "cache_flush": True},
        ]
    }  # fmt: skip
    lines = np.arange(1, 7)
    threads, cold = line_timing(meta, lines)
    assert threads.tolist() == [0, 0, 0, 2, 2, 2]
    assert cold.tolist() == [False] * 5 + [True]
    # labels of different thread counts or cache states never share a normalisation
    sources, names = measurement_sources(meta, lines)
    assert len(set(sources.tolist())) == 3
    assert names == ["m", "m @ 2 threads", "m @ 2 threads, cold caches"]


@pytest.fixture(scope="module")
def collected(tmp_path_factory, target):
    """A dense task with 6 random records, timed as the collector times them."""
    from ms_meta.data.collect import make_measurer
    from ms_meta.tuning.target import target_key
    from ms_meta.workloads import resolve_one

    root = tmp_path_factory.mktemp("records")
    config = CollectConfig(trials_per_task=6, random_fraction=1.0, batch_size=6)
    measurer = make_measurer(target, config)
    collect_task(resolve_one(SPEC), root, target, config, measurer.builder, measurer.runner)
    return root / target_key(target) / "dense_32_32_32"


def _measurer(threads: int):
    from ms_meta.tuning.builder import make_builder
    from ms_meta.tuning.measure import make_local_runner

    settings = MeasureSettings(threads=threads, repeat=3).with_cold_caches()
    return make_builder(max_workers=1), make_local_runner(settings)


def test_remeasure_appends_the_fastest_schedules_and_resumes(collected, tmp_path):
    import shutil

    task_dir = tmp_path / "task"
    shutil.copytree(collected, task_dir)
    before = (task_dir / RECORD_FILE).read_text().splitlines()
    asked = []

    def factory(threads):
        asked.append(threads)
        return _measurer(threads)

    result = remeasure_task(task_dir, top=3, measurer_factory=factory)
    cores = json.loads((task_dir / META_FILE).read_text())["target"]["num-cores"]
    assert asked == [cores] and result.threads == cores
    assert result.measured == 3 and result.failed == 0
    after = (task_dir / RECORD_FILE).read_text().splitlines()
    assert after[: len(before)] == before  # append-only
    assert len(after) == len(before) + 3

    # the re-timed schedules are the 3 fastest of the earlier ones, in that order
    def key(line):
        return json.dumps(json.loads(line)[1][0], sort_keys=True)

    def mean(line):
        return float(np.mean(json.loads(line)[1][1]))

    fastest = sorted(before, key=mean)[:3]
    assert [key(line) for line in after[len(before) :]] == [key(line) for line in fastest]
    meta = json.loads((task_dir / META_FILE).read_text())
    entry = meta["sources"][-1]
    assert entry["phase"] == REMEASURE_PHASE and entry["lines"] == [len(before) + 1, len(after)]
    assert entry["threads"] == cores and entry["cache_flush"] is True
    assert meta["records"] == len(after)
    assert result.best_after == pytest.approx(min(mean(line) for line in after[len(before) :]))

    again = remeasure_task(task_dir, top=3, measurer_factory=factory)
    assert again.measured == 0 and asked == [cores]  # nothing left: no runner started
    assert count_lines(task_dir / RECORD_FILE) == len(after)


def test_library_ranks_a_task_by_its_records_timed_as_built(collected, tmp_path):
    import shutil

    from ms_meta.one_shot.library import build_library

    task_dir = tmp_path / "task"
    shutil.copytree(collected, task_dir)
    n = count_lines(task_dir / RECORD_FILE)
    remeasure_task(task_dir, top=2, measurer_factory=_measurer)
    lines = (task_dir / RECORD_FILE).read_text().splitlines()
    retimed = [float(np.mean(json.loads(line)[1][1])) for line in lines[n:]]
    (task,) = build_library([task_dir]).tasks
    assert task.best_seconds == pytest.approx(min(retimed), rel=1e-5)
    assert len(task.schedules) == 2  # only the re-timed ones are ranked


def test_remeasure_refuses_a_folder_without_records(tmp_path):
    with pytest.raises(MsMetaError, match="no tuning database"):
        remeasure_task(tmp_path, top=2, measurer_factory=_measurer)
    with pytest.raises(RemeasureError, match="no such task folder"):
        remeasure_task(tmp_path / "missing", top=2, measurer_factory=_measurer)
    assert not (tmp_path / "missing").exists()


def test_remeasure_cli_rejects_paths_without_task_folders(tmp_path):
    from click.testing import CliRunner

    from ms_meta.cli.main import cli

    result = CliRunner().invoke(cli, ["db", "remeasure", str(tmp_path)])
    assert result.exit_code != 0
    assert "no task folder" in result.output


def test_collector_measures_on_the_target_threads_and_says_so(target):
    from ms_meta.data.collect import make_measurer, note_source

    measurer = make_measurer(target, CollectConfig(cache_flush=True))
    assert measurer.threads == int(target.attrs["num-cores"])
    assert measurer.cache_flush
    sources: list = []
    note_source(sources, "random", None, "run", 1, 4, machine="m", threads=2, cache_flush=True)
    note_source(sources, "random", None, "run", 5, 4, machine="m", threads=2, cache_flush=True)
    note_source(sources, "random", None, "run", 9, 2, machine="m", threads=1)
    assert sources == [
        {"lines": [1, 8], "phase": "random", "cost_model": None, "run": "run", "machine": "m",
         "threads": 2, "cache_flush": True},
        {"lines": [9, 10], "phase": "random", "cost_model": None, "run": "run", "machine": "m",
         "threads": 1},
    ]  # fmt: skip
