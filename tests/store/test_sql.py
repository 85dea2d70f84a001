"""The store's SQLite layer without TVM: dedup rules, target isolation, gc, bad files."""

from __future__ import annotations

import sqlite3

import pytest

from ms_meta.errors import DatabaseError
from ms_meta.store import SqlStore, default_store_path, target_key
from ms_meta.store.msjson import split_record_line
from tests.store.conftest import ROCKETLAKE_KEY, seed_lines, seed_records, with_decisions

ZNVER4_TARGET = '{"keys":["cpu"],"kind":"llvm","mattr":["-avx512f"],"mcpu":"znver4","num-cores":2}'


def _seed_record_for(target_text: str):
    """The first seed record, as if measured on another target."""
    line = seed_lines()[0].replace(seed_records()[0].target, target_text)
    return split_record_line(line)[1]


def _with_run_secs(record, run_secs: str):
    from ms_meta.store.msjson import join_record_line

    line = join_record_line(0, record).replace(record.run_secs, run_secs, 1)
    return split_record_line(line)[1]


@pytest.fixture
def store(tmp_path):
    with SqlStore(tmp_path / "s.sqlite") as sql:
        yield sql


@pytest.fixture
def workload(store):
    return store.add_workload("123", "bW9kdWxl", "mm_512")


def test_target_key_ignores_tag_keys_and_triple_but_not_cpu_features_or_cores():
    a = target_key(
        {"kind": "llvm", "mcpu": "rocketlake", "num-cores": 2, "tag": "", "keys": ["cpu"]}
    )
    b = target_key({"kind": "llvm", "mcpu": "rocketlake", "num-cores": 2, "mtriple": "x86_64"})
    assert a == b == ROCKETLAKE_KEY
    assert target_key({"kind": "llvm", "mcpu": "rocketlake", "num-cores": 4}) != a
    masked = {"kind": "llvm", "mcpu": "rocketlake", "num-cores": 2, "mattr": ["-avx512f"]}
    assert target_key(masked) != a
    assert target_key(None) == target_key({}) == "unknown"


def test_same_trace_twice_is_stored_once_with_the_first_measurement_and_a_repeat_count(
    store, workload
):
    first = seed_records()[0]
    again = _with_run_secs(first, "[0.5]")
    assert store.add_records([(workload, first)]).added == 1
    result = store.add_records([(workload, again)])
    assert (result.added, result.duplicates) == (0, 1)
    (stored,) = store.records()
    assert stored.text.run_secs == first.run_secs and stored.duplicates == 1


def test_a_valid_measurement_replaces_a_stored_failure(store, workload):
    record = seed_records()[0]
    store.add_records([(workload, _with_run_secs(record, "[10000000000]"))])
    assert store.best([workload], ROCKETLAKE_KEY, 5) == []
    store.add_records([(workload, record)])
    (best,) = store.best([workload], ROCKETLAKE_KEY, 5)
    assert best.text.run_secs == record.run_secs and best.duplicates == 1


def test_best_returns_valid_records_of_the_asked_target_fastest_first(store, workload):
    records = seed_records()
    store.add_records([(workload, r) for r in records])
    store.add_records([(workload, _seed_record_for(ZNVER4_TARGET))])
    best = store.best([workload], ROCKETLAKE_KEY, 10)
    assert [b.mean_secs for b in best] == sorted(b.mean_secs for b in best)
    assert best[0].mean_secs == min(float(r.run_secs_value[0]) for r in records)
    assert all('"rocketlake"' in b.text.target for b in best)
    znver4 = target_key({"kind": "llvm", "mcpu": "znver4", "mattr": ["-avx512f"], "num-cores": 2})
    (only,) = store.best([workload], znver4, 10)
    assert '"znver4"' in only.text.target
    assert store.best([workload], "llvm|skylake||2", 10) == []
    assert store.count(ROCKETLAKE_KEY) == len(records) and store.count(znver4) == 1


def test_best_per_workload_gives_each_workload_its_own_fastest(store):
    a = store.add_workload("1", "YQ==", "a")
    b = store.add_workload("2", "Yg==", "b")
    records = seed_records()
    store.add_records([(a, r) for r in records[:10]] + [(b, r) for r in records[10:20]])
    best = list(store.best_per_workload(ROCKETLAKE_KEY, 2))
    assert [r.workload_id for r in best] == [a, a, b, b]
    assert best[0].mean_secs == min(float(r.run_secs_value[0]) for r in records[:10])


def test_gc_keeps_every_measurement_by_default_and_prunes_only_when_asked(store, workload):
    records = [with_decisions(seed_records()[0], n) for n in range(30)]
    failed = _with_run_secs(with_decisions(seed_records()[1], 99), "[10000000000]")
    store.add_records([(workload, r) for r in records] + [(workload, failed)])
    assert store.gc()["records_deleted"] == 0 and store.count() == 31
    assert store.gc(drop_failed=True)["records_deleted"] == 1 and store.count() == 30
    assert store.gc(keep_best=3)["records_deleted"] == 27 and store.count() == 3
    assert store.stats()["traces_instruction_lists"] == 1
    with pytest.raises(DatabaseError, match="at least 1"):
        store.gc(keep_best=0)


def test_default_path_is_under_the_user_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("MS_META_STORE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_store_path() == tmp_path / "ms-meta" / "records.sqlite"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_store_path() == tmp_path / "home" / ".cache" / "ms-meta" / "records.sqlite"


def test_store_file_is_in_wal_mode(store):
    mode = sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_a_file_that_is_not_a_store_is_a_one_line_database_error(tmp_path):
    path = tmp_path / "notes.sqlite"
    path.write_text("not a database at all, just text\n" * 100)
    with pytest.raises(DatabaseError, match="is not a record store") as err:
        SqlStore(path)
    assert "\n" not in str(err.value)
    assert path.read_text().startswith("not a database")  # left untouched


def test_a_store_from_a_newer_format_is_refused(tmp_path):
    path = tmp_path / "new.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(DatabaseError, match="format 99"):
        SqlStore(path)


def test_records_added_after_another_process_ran_gc_keep_their_instructions(tmp_path):
    path = tmp_path / "s.sqlite"
    writer, other = SqlStore(path), SqlStore(path)
    workload = writer.add_workload("1", "YQ==", "a")
    first = seed_records()[0]
    writer.add_records([(workload, first)])
    other.gc(keep_best=1)  # keeps the record, but could have dropped shared instruction lists
    other._conn.execute("DELETE FROM records")
    other.gc()  # now the instruction list is unused and deleted
    writer.add_records([(workload, with_decisions(first, 1))])
    (record,) = writer.records()
    assert record.text.insts == first.insts


def test_the_store_package_and_its_cli_import_without_tvm():
    import subprocess
    import sys

    code = "import sys, ms_meta.store, ms_meta.cli.store; print('tvm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
