"""The import's fast paths change nothing: cached line splitting, worker processes, batches
that span databases."""

from __future__ import annotations

import sqlite3

import pytest

from ms_meta.store import SqlStore, export_json_databases, import_json_databases
from ms_meta.store import scan_json_databases as scan
from ms_meta.store.msjson import LineCache, join_record_line, split_record_line
from tests.conftest import SEED_RECORDS
from tests.store.conftest import seed_lines, seed_records, write_database

_ROWS = (
    "SELECT workload_id, key_id, target_id, trace_hash, insts_hash, decisions, run_secs, "
    "mean_secs, args_info, duplicates FROM records ORDER BY id"
)


def _all_seed_lines() -> list[str]:
    return [
        line
        for path in sorted(SEED_RECORDS.glob("*/database_tuning_record.json"))
        for line in path.read_text().splitlines()
    ]


def test_a_line_cache_splits_every_seed_line_as_the_plain_split_does():
    cache = LineCache(size=8)  # small: its tables are emptied and refilled on the way
    for line in _all_seed_lines() * 2:
        assert split_record_line(line, cache) == split_record_line(line)


def test_a_line_cache_is_not_fooled_by_brackets_inside_strings():
    record = seed_records()[0]
    tricky = record.insts[:-1] + ',["Annotate",["b0","\\"]]],[x"],["k"],[]]]'
    line = join_record_line(0, (tricky, record.decisions, record.run_secs, record.target,
                                record.args_info))  # fmt: skip
    cache = LineCache()
    _, parsed = split_record_line(line, cache)
    assert parsed.insts == tricky and parsed == split_record_line(line)[1]
    empty = join_record_line(0, ("[]", "[]", record.run_secs, record.target, record.args_info))
    assert split_record_line(empty, cache)[1].insts == "[]"
    with pytest.raises(ValueError):
        split_record_line(line.replace('"k"', "k", 1), cache)


def test_worker_processes_store_exactly_what_an_in_process_import_stores(tmp_path):
    paths = []
    for task in ("mm_512", "bmm_16_256", "softmax_bert"):
        paths.append(SEED_RECORDS / task)
    with SqlStore(tmp_path / "one.sqlite") as one, SqlStore(tmp_path / "two.sqlite") as two:
        a = import_json_databases(one, scan(paths), workers=1, batch_size=7)
        b = import_json_databases(two, scan(paths), workers=2, batch_size=7)
    assert (a.added, a.duplicates, a.records_read) == (b.added, b.duplicates, b.records_read)
    files = ("one.sqlite", "two.sqlite")
    rows = [sqlite3.connect(tmp_path / f).execute(_ROWS).fetchall() for f in files]
    assert rows[0] == rows[1] and len(rows[0]) == a.added > 0


def test_batches_spanning_databases_record_every_database_complete_and_export_byte_equal(
    tmp_path,
):
    with SqlStore(tmp_path / "s.sqlite") as store:
        report = import_json_databases(store, scan([SEED_RECORDS]), batch_size=50)
        assert report.databases == 12 and report.added == report.records_read
        again = import_json_databases(store, scan([SEED_RECORDS]), batch_size=50)
        assert again.added == 0 and again.already_imported == report.records_read
        export_json_databases(store, tmp_path / "out")
    for task in SEED_RECORDS.iterdir():
        if not (task / "database_tuning_record.json").is_file():
            continue
        exported = list((tmp_path / "out").glob(f"*/{task.name}/database_tuning_record.json"))
        assert (
            exported
            and exported[0].read_bytes() == (task / "database_tuning_record.json").read_bytes()
        )


def test_the_same_database_listed_twice_is_imported_once(tmp_path):
    db = write_database(tmp_path / "db", (SEED_RECORDS / "mm_512" / "database_workload.json")
                        .read_text().strip(), seed_lines()[:5])  # fmt: skip
    with SqlStore(tmp_path / "s.sqlite") as store:
        report = import_json_databases(store, scan([db, db]))
    assert report.added == 5 and report.duplicates == 0 and report.already_imported == 5


def test_a_store_file_without_the_workload_hash_index_gains_it_on_open(tmp_path):
    path = tmp_path / "s.sqlite"
    with SqlStore(path) as store:
        import_json_databases(store, scan([SEED_RECORDS / "mm_512"]))
        shash = store.workloads()[0].shash
    with sqlite3.connect(path) as conn:
        conn.execute("DROP INDEX workloads_shash")  # as files written before it existed
    with SqlStore(path) as store:
        indexes = [row[0] for row in store._conn.execute("SELECT name FROM sqlite_master")]
        assert "workloads_shash" in indexes
        plan = " ".join(
            str(row)
            for row in store._conn.execute(
                "EXPLAIN QUERY PLAN SELECT id FROM workloads WHERE shash = ?", (shash,)
            )
        )
        assert "workloads_shash" in plan and len(store.workload_ids(shash)) == 1
