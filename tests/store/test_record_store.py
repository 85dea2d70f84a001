"""RecordStore as a real MetaSchedule database: tune into it, compile from it, one target each."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tvm
from tvm.s_tir import meta_schedule as ms
from tvm.target import Target

from ms_meta.store import RecordStore
from ms_meta.store.database import key_of
from ms_meta.tuning.builder import make_builder
from ms_meta.tuning.measure import make_local_runner
from ms_meta.tuning.measured_tuning import meta_schedule_logging_compat
from ms_meta.workloads import resolve_one
from tests.conftest import SEED_RECORDS

ROCKETLAKE = Target({"kind": "llvm", "mcpu": "rocketlake", "num-cores": 2})
ZNVER4_NOAVX512 = Target({"kind": "llvm", "mcpu": "znver4", "mattr": ["-avx512f"], "num-cores": 2})


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, target):
    """A 64x64x64 dense tuned for 8 trials straight into a fresh store."""
    tmp = tmp_path_factory.mktemp("tuned")
    mod = resolve_one("dense:64,64,64").build()
    store = RecordStore(tmp / "records.sqlite", target=target)
    with meta_schedule_logging_compat():
        returned = ms.tune_tir(
            mod=mod,
            target=target,
            work_dir=str(tmp / "work"),
            max_trials_global=8,
            num_trials_per_iter=4,
            builder=make_builder(),
            runner=make_local_runner(),
            database=store,
            strategy=ms.search_strategy.EvolutionarySearch(population_size=32),
        )
    return mod, store, returned


def _run_dense(lib, size=64):
    a = np.random.default_rng(0).standard_normal((size, size)).astype("float32")
    b = np.random.default_rng(1).standard_normal((size, size)).astype("float32")  # [N, K]
    c = tvm.runtime.tensor(np.zeros((size, size), "float32"))
    lib["main"](tvm.runtime.tensor(a), tvm.runtime.tensor(b), c)
    np.testing.assert_allclose(c.numpy(), a @ b.T, rtol=1e-4, atol=1e-4)


@pytest.mark.slow  # a real 8-trial tune_tir (about a minute here)
def test_tune_tir_commits_into_the_store_and_compile_tir_builds_from_it(tuned, target):
    mod, store, returned = tuned
    assert returned.same_as(store)  # tune_tir hands back the store it was given
    assert len(store) == 8
    assert store.has_workload(mod)
    sch = ms.tir_integration.compile_tir(store, mod, target)
    assert sch is not None
    _run_dense(tvm.compile(sch.mod, target=target))


@pytest.mark.slow  # a real 8-trial tune_tir (about a minute here)
def test_store_reopened_in_a_new_object_serves_the_same_best_record(tuned, target):
    mod, store, _ = tuned
    again = RecordStore(store.path)
    best = again.query_tuning_record(mod, target, "main")
    top = store.get_top_k(store.commit_workload(mod), 3)
    assert best is not None and len(top) >= 1
    assert str(best.trace) == str(top[0].trace)
    means = [float(np.mean([float(s) for s in r.run_secs])) for r in top]
    assert means == sorted(means)


@pytest.mark.slow  # a real 8-trial tune_tir (about a minute here)
def test_records_of_one_cpu_are_never_returned_for_another(tuned, target):
    mod, store, _ = tuned
    other = ZNVER4_NOAVX512 if key_of(target) != key_of(ZNVER4_NOAVX512) else ROCKETLAKE
    assert store.query_tuning_record(mod, other, "main") is None
    assert ms.tir_integration.compile_tir(store, mod, other) is None
    assert len(RecordStore(store.path, target=other)) == 0
    assert RecordStore(store.path, target=other).get_top_k(store.commit_workload(mod), 5) == []


def test_a_record_committed_for_cpu_a_is_not_returned_for_cpu_b(tmp_path):
    mod = resolve_one("dense:64,64,64").build()
    seed = RecordStore(tmp_path / "a.sqlite")
    source = ms.database.JSONDatabase(work_dir=str(SEED_RECORDS / "mm_512"))
    record = source.get_all_tuning_records()[0]  # a valid rocketlake record of a 512 dense
    seed.commit_tuning_record(record)
    mm512 = record.workload.mod
    assert seed.query_tuning_record(mm512, ROCKETLAKE, "main") is not None
    assert seed.query_tuning_record(mm512, ZNVER4_NOAVX512, "main") is None
    without_avx512 = Target({"kind": "llvm", "mcpu": "rocketlake", "mattr": ["-avx512f"],
                             "num-cores": 2})  # fmt: skip
    assert seed.query_tuning_record(mm512, without_avx512, "main") is None
    four_cores = Target({"kind": "llvm", "mcpu": "rocketlake", "num-cores": 4})
    assert seed.query_tuning_record(mm512, four_cores, "main") is None
    assert seed.query_tuning_record(mod, ROCKETLAKE, "main") is None  # another workload


@pytest.mark.parametrize("task", ["bmm_16_256", "nhwc_1x1_512"])
def test_committed_records_are_written_as_json_database_writes_them(tmp_path, task):
    source = ms.database.JSONDatabase(work_dir=str(SEED_RECORDS / task))
    records = source.get_all_tuning_records()[:6]
    store = RecordStore(tmp_path / "s.sqlite")
    assert store.record_database(source) == len(source.get_all_tuning_records())
    (tmp_path / "json").mkdir()
    json_db = ms.database.JSONDatabase(work_dir=str(tmp_path / "json"))
    workload = json_db.commit_workload(records[0].workload.mod)
    for r in records:
        json_db.commit_tuning_record(
            ms.database.TuningRecord(r.trace, workload, r.run_secs, r.target, r.args_info)
        )
    written = (tmp_path / "json" / "database_tuning_record.json").read_text().splitlines()
    from ms_meta.store.msjson import join_record_line

    stored = {join_record_line(0, s.text) for s in store.sql.records()}
    assert set(written) <= stored


def test_failed_seed_record_is_stored_but_never_the_best(tmp_path):
    store = RecordStore(tmp_path / "s.sqlite", target=ROCKETLAKE)
    store.import_json_database(SEED_RECORDS / "bmm_16_256")
    all_records = store.get_all_tuning_records()
    assert len(all_records) == len(store) == 52
    failed = [r for r in all_records if float(r.run_secs[0]) >= 1e9]
    assert len(failed) == 1
    top = store.get_top_k(all_records[0].workload, 100)
    assert len(top) == 51 and all(float(r.run_secs[0]) < 1e9 for r in top)


def test_schedule_records_yields_the_best_record_of_each_workload_for_a_target(tmp_path):
    store = RecordStore(tmp_path / "s.sqlite")
    store.import_json_database(SEED_RECORDS / "mm_1024", SEED_RECORDS / "bert_qkv")
    best = list(store.schedule_records(ROCKETLAKE))
    assert len(best) == 2
    rocketlake_view = RecordStore(store.path, target=ROCKETLAKE)
    for record in best:
        top = rocketlake_view.get_top_k(record.workload, 1)
        assert json.dumps(record.as_json()[1]) == json.dumps(top[0].as_json()[1])
    assert list(store.schedule_records(ZNVER4_NOAVX512)) == []


def test_compile_tir_builds_the_best_imported_record_of_the_target(tmp_path, target):
    store = RecordStore(tmp_path / "s.sqlite")
    store.import_json_database(SEED_RECORDS / "mm_1024")
    seed = ms.database.JSONDatabase(work_dir=str(SEED_RECORDS / "mm_1024"))
    seed_records = seed.get_all_tuning_records()
    mod = seed_records[0].workload.mod
    best = store.query_tuning_record(mod, ROCKETLAKE, "main")
    assert float(best.run_secs[0]) == min(float(r.run_secs[0]) for r in seed_records)
    assert ms.tir_integration.compile_tir(store, mod, ZNVER4_NOAVX512) is None
    sch = ms.tir_integration.compile_tir(store, mod, ROCKETLAKE)
    assert sch is not None
    _run_dense(tvm.compile(sch.mod, target=target), size=1024)


def test_get_top_k_without_a_bound_target_uses_the_enclosing_target(tmp_path):
    store = RecordStore(tmp_path / "s.sqlite")
    store.import_json_database(SEED_RECORDS / "mm_1024")
    workload = store.get_all_tuning_records()[0].workload
    assert store.get_top_k(workload, 2) == []  # no target known: no other CPU's schedules
    with ROCKETLAKE:
        assert len(store.get_top_k(workload, 2)) == 2
    with ZNVER4_NOAVX512:
        assert store.get_top_k(workload, 2) == []


def test_a_best_record_whose_trace_does_not_replay_yields_to_the_next_best(tmp_path, caplog):
    from ms_meta.store.msjson import join_record_line, split_record_line

    lines = (SEED_RECORDS / "mm_1024" / "database_tuning_record.json").read_text().splitlines()
    records = [split_record_line(line)[1] for line in lines]
    fastest = min(records, key=lambda r: r.run_secs_value[0])
    # the fastest of all, but its trace names a block the workload does not have
    broken = (
        join_record_line(0, fastest)
        .replace('["T_dense","main"]', '["no_such_block","main"]', 1)
        .replace(fastest.run_secs, "[1e-09]", 1)
    )
    assert "no_such_block" in broken
    database = tmp_path / "db"
    database.mkdir()
    (database / "database_workload.json").write_bytes(
        (SEED_RECORDS / "mm_1024" / "database_workload.json").read_bytes()
    )
    (database / "database_tuning_record.json").write_text("\n".join([*lines, broken]) + "\n")
    store = RecordStore(tmp_path / "s.sqlite")
    store.import_json_database(database)
    mod = store.get_all_tuning_records()[0].workload.mod
    best = store.query_tuning_record(mod, ROCKETLAKE, "main")
    assert float(best.run_secs[0]) == fastest.run_secs_value[0]
    assert "does not replay" in caplog.text
