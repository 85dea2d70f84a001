"""One-Shot learns from the record store: a task measured before compiles from its fastest
record with no search, the store's schedules join the library (winning over the shipped ones
for the same task), only records of the run's target count, and ``store=None`` opts out."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm.s_tir import meta_schedule as ms

from ms_meta.one_shot import SearchSettings, build_library, read_summary, run_relax, run_tir
from ms_meta.one_shot.library import ScheduleLibrary
from ms_meta.one_shot.store import STORE_TASK_PREFIX, merge_libraries, store_library
from ms_meta.store import RecordStore, SqlStore, feed_json_databases
from tests.conftest import SEED_RECORDS
from tests.one_shot.test_one_shot import InProcessBuilder, InProcessRunner

TINY = SearchSettings(population_size=16, genetic_num_iters=1, finalists=4, init_min_unmeasured=4)
ROCKETLAKE = {"kind": "llvm", "mcpu": "rocketlake", "num-cores": 2}  # the seed records' target


def _seed_store(tmp_path, *tasks: str):
    """A store holding the committed seed records of ``tasks`` (measured on rocketlake)."""
    path = tmp_path / "records.sqlite"
    for task in tasks:
        assert feed_json_databases(SEED_RECORDS / task, store_path=path).added > 0
    return path


def _seed_task(task: str) -> tuple[tvm.IRModule, list]:
    """A seed task's module and its records, fastest first."""
    database = ms.database.JSONDatabase(work_dir=str(SEED_RECORDS / task))
    records = database.get_all_tuning_records()
    valid = [r for r in records if float(r.run_secs[0]) < 1e9]
    valid.sort(key=lambda r: np.mean([float(s) for s in r.run_secs]))
    return valid[0].workload.mod, valid


def test_a_task_the_store_measured_compiles_from_its_best_record_without_search(
    tmp_path, no_build_or_run
):
    store = _seed_store(tmp_path, "mm_1024")
    mod, records = _seed_task("mm_1024")
    target = tvm.target.Target(ROCKETLAKE)
    result = run_tir(mod, target, tmp_path / "run", weights=None, settings=TINY, store=store)
    (task,) = result.tasks
    assert (task.status, task.source, task.origin) == ("measured", "store", "store")
    assert task.scored == 0 and task.finalists == 0 and task.measured and result.measured
    # the database applies the store's fastest record, with its measured run time
    applied = result.database.query_tuning_record(mod, target, "main")
    assert str(applied.trace) == str(records[0].trace)
    assert [float(s) for s in applied.run_secs] == [float(s) for s in records[0].run_secs]
    seed = ms.database.JSONDatabase(work_dir=str(SEED_RECORDS / "mm_1024"))
    sch = ms.tir_integration.compile_tir(result.database, mod, target)
    assert str(sch.trace) == str(ms.tir_integration.compile_tir(seed, mod, target).trace)
    summary = read_summary(tmp_path / "run")
    assert summary["tasks_from_store"] == 1 and summary["tasks"][0]["origin"] == "store"


def test_store_none_searches_a_task_the_store_measured(tmp_path, no_build_or_run):
    store = _seed_store(tmp_path, "mm_512")
    with SqlStore(store) as sql:
        before = sql.count()
    mod, _ = _seed_task("mm_512")
    target = tvm.target.Target(ROCKETLAKE)
    result = run_tir(mod, target, tmp_path / "run", weights=None, settings=TINY, library=None,
                     store=None)  # fmt: skip
    (task,) = result.tasks
    assert task.source == "search" and task.status == "predicted" and task.scored > 0
    assert result.tasks_from_store == 0
    with SqlStore(store) as sql:  # One-Shot without verify measures and records nothing
        assert sql.count() == before


def test_records_of_another_target_are_never_used(tmp_path, no_build_or_run):
    store = _seed_store(tmp_path, "mm_512")
    mod, _ = _seed_task("mm_512")
    other = tvm.target.Target({"kind": "llvm", "mcpu": "icelake-server", "num-cores": 2})
    result = run_tir(mod, other, tmp_path / "run", weights=None, settings=TINY, library=None,
                     store=store)  # fmt: skip
    assert result.tasks[0].source == "search"
    record_store = RecordStore(store)
    try:
        assert store_library(record_store, other) is None
        assert store_library(record_store, tvm.target.Target(ROCKETLAKE)) is not None
    finally:
        record_store.close()


def test_the_stores_schedules_replace_the_shipped_librarys_for_the_same_task(tmp_path):
    shipped = build_library([SEED_RECORDS / "mm_512", SEED_RECORDS / "bert_qkv"])
    record_store = RecordStore(_seed_store(tmp_path, "mm_512", "mm_1024"))
    try:
        own = store_library(record_store, tvm.target.Target(ROCKETLAKE))
    finally:
        record_store.close()
    assert sorted(t.name for t in own.tasks) == ["store:mm_1024", "store:mm_512"]
    merged = merge_libraries(shipped, own)
    # mm_512 is the store's now; bert_qkv, which the store lacks, stays
    assert sorted(t.name for t in merged.tasks) == ["bert_qkv", "store:mm_1024", "store:mm_512"]
    assert merged.meta["replaced_tasks"] == 1 and merged.meta["store_tasks"] == 2
    best = own.tasks[0]
    assert best.schedules[0].relative == 1.0 and best.best_seconds > 0
    assert all(s.relative >= 1.0 for s in best.schedules)
    assert merge_libraries(None, own) is own and merge_libraries(shipped, None) is shipped


def test_a_task_the_store_lacks_picks_among_the_stores_schedules_of_its_neighbours(
    tmp_path, no_build_or_run
):
    from ms_meta.workloads import resolve_one

    store = _seed_store(tmp_path, "mm_512")
    mod = resolve_one("dense:64,128,256").build()  # a dense task the store has not measured
    shipped = ScheduleLibrary(build_library([SEED_RECORDS / "bert_qkv"]).tasks, {})
    result = run_tir(mod, tvm.target.Target(ROCKETLAKE), tmp_path / "run", weights=None,
                     settings=TINY, library=shipped, store=store)  # fmt: skip
    (task,) = result.tasks
    assert task.source == "library" and task.status == "predicted"
    assert f"{STORE_TASK_PREFIX}mm_512" in task.neighbours
    assert "record store" in result.library


def _two_layer_model(hidden_out: int):
    """x[16, 32] @ w1[32, 24] -> relu -> @ w2[24, hidden_out]: the first layer is the same
    task in every such model."""
    from tvm import relax

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((16, 32), "float32"))
    w1 = relax.Var("w1", relax.TensorType((32, 24), "float32"))
    w2 = relax.Var("w2", relax.TensorType((24, hidden_out), "float32"))
    with bb.function("main", [x, w1, w2]):
        with bb.dataflow():
            h = bb.emit(relax.op.nn.relu(relax.op.matmul(x, w1)))
            out = bb.emit_output(relax.op.matmul(h, w2))
        bb.emit_func_output(out)
    return bb.get()


def test_a_model_measured_into_the_store_lends_its_shared_task_to_another_model(
    target, tmp_path, monkeypatch
):
    store = tmp_path / "records.sqlite"
    # model A: every task measured (verify) and recorded into the store
    first = run_relax(_two_layer_model(8), None, target, tmp_path / "a", weights=None,
                      settings=TINY, library=None, verify=2, store=store,
                      builder=InProcessBuilder(), runner=InProcessRunner())  # fmt: skip
    assert all(t.status == "measured" for t in first.tasks)
    assert first.store_report is not None and first.store_report.added >= 2
    shared = "fused_matmul_relu"
    measured = min(m.mean_seconds for m in first.task(shared).verified if m.run_secs)

    # model B shares the first layer: that task compiles from the store, with no search
    import ms_meta.one_shot.run as run_module

    searched = []
    search = run_module.search_task

    def recording_search(mod, *args, **kwargs):
        searched.append(kwargs["task_name"])
        return search(mod, *args, **kwargs)

    monkeypatch.setattr(run_module, "search_task", recording_search)
    second = run_relax(_two_layer_model(16), None, target, tmp_path / "b", weights=None,
                       settings=TINY, library=None, store=store)  # fmt: skip
    assert shared not in searched and len(searched) == 1
    task = second.task(shared)
    assert (task.source, task.origin, task.status, task.scored) == ("store", "store", "measured", 0)
    assert task.measured_seconds is not None
    other = [t for t in second.tasks if t.task_name != shared]
    assert other and all(t.source == "search" and t.scored > 0 for t in other)
    summary = read_summary(tmp_path / "b")
    assert summary["tasks_from_store"] == 1
    # the record applied is the fastest of model A's measurements of that task
    (record,) = [
        r for r in second.database.get_all_tuning_records()
        if float(r.run_secs[0]) < 1.0
    ]  # fmt: skip
    assert np.mean([float(s) for s in record.run_secs]) == pytest.approx(measured)
    # and with the store off, the same task is searched
    third = run_relax(_two_layer_model(16), None, target, tmp_path / "c", weights=None,
                      settings=TINY, library=None, store=None)  # fmt: skip
    assert third.task(shared).source == "search"
