"""Import and export of MetaSchedule JSON databases: byte-equal round trip, merge, resume."""

from __future__ import annotations

import gzip
import shutil

import pytest

from ms_meta.errors import DatabaseError
from ms_meta.store import (
    SqlStore,
    export_json_databases,
    import_json_databases,
    scan_json_databases,
)
from ms_meta.store.msjson import join_record_line
from tests.conftest import SEED_RECORDS, tree_hash
from tests.store.conftest import (
    ROCKETLAKE_KEY,
    seed_lines,
    seed_records,
    with_decisions,
    write_database,
)

FILES = ("database_workload.json", "database_tuning_record.json")


def _import(store, *paths, **kwargs):
    return import_json_databases(store, scan_json_databases(paths), **kwargs)


def test_seed_databases_export_byte_equal_to_what_was_imported(tmp_path):
    before = tree_hash(SEED_RECORDS)
    with SqlStore(tmp_path / "s.sqlite") as store:
        report = _import(store, SEED_RECORDS)
        written = export_json_databases(store, tmp_path / "out")
    assert report.databases == 12 and report.added == report.records_read == 204
    assert len(written) == 12
    for directory in written:
        assert directory.parent.name == "llvm-rocketlake-2c"
        for name in FILES:
            assert (directory / name).read_bytes() == (
                SEED_RECORDS / directory.name / name
            ).read_bytes()
    assert tree_hash(SEED_RECORDS) == before  # inputs are only read


def test_importing_the_same_files_again_adds_nothing(tmp_path):
    with SqlStore(tmp_path / "s.sqlite") as store:
        _import(store, SEED_RECORDS / "mm_512")
        again = _import(store, SEED_RECORDS / "mm_512")
        assert (again.added, again.duplicates, again.already_imported) == (0, 0, 64)
        assert store.count() == 64


def test_merging_two_copies_keeps_one_record_each_and_counts_the_repeats(tmp_path):
    shutil.copytree(SEED_RECORDS / "mm_512", tmp_path / "a")
    copy = tmp_path / "b"
    shutil.copytree(SEED_RECORDS / "mm_512", copy)
    lines = seed_lines()
    # the copy holds the first 10 records again (another file: not the same source) and 5 new
    extra = [join_record_line(0, with_decisions(r, 7)) for r in seed_records()[:5]]
    (copy / FILES[1]).write_text("".join(f"{x}\n" for x in lines[:10] + extra))
    with SqlStore(tmp_path / "s.sqlite") as store:
        report = _import(store, tmp_path / "a", copy)
        assert (report.added, report.duplicates) == (69, 10)
        assert store.stats()["duplicates"] == 10


def test_gzip_databases_import_like_plain_ones(tmp_path):
    target = tmp_path / "gz"
    target.mkdir()
    for name in FILES:
        with gzip.open(target / f"{name}.gz", "wb") as handle:
            handle.write((SEED_RECORDS / "mm_1024" / name).read_bytes())
    with SqlStore(tmp_path / "s.sqlite") as store:
        assert _import(store, target).added == 4


def test_unreadable_lines_are_skipped_and_reported(tmp_path):
    workload_line = (SEED_RECORDS / "mm_512" / FILES[0]).read_text().strip()
    lines = [*seed_lines()[:3], "{not json", "[5,[[[],[]],[1.0],{},[]]]"]
    write_database(tmp_path / "db", workload_line, lines)
    with SqlStore(tmp_path / "s.sqlite") as store:
        report = _import(store, tmp_path / "db")
    assert (report.added, report.malformed) == (3, 2)
    assert "2 unreadable record lines" in report.problems[0]


def test_export_refuses_to_overwrite_and_writes_nothing(tmp_path):
    with SqlStore(tmp_path / "s.sqlite") as store:
        _import(store, SEED_RECORDS / "mm_512", SEED_RECORDS / "mm_1024")
        out = tmp_path / "out"
        existing = out / "llvm-rocketlake-2c" / "mm_512" / FILES[1]
        existing.parent.mkdir(parents=True)
        existing.write_text("mine\n")
        with pytest.raises(DatabaseError, match="exists"):
            export_json_databases(store, out)
    assert existing.read_text() == "mine\n"
    assert not (out / "llvm-rocketlake-2c" / "mm_1024").exists()


def test_export_of_one_target_key_writes_only_its_records(tmp_path):
    with SqlStore(tmp_path / "s.sqlite") as store:
        _import(store, SEED_RECORDS / "mm_1024")
        assert export_json_databases(store, tmp_path / "none", key="llvm|znver4|-avx512f|2") == []
        assert len(export_json_databases(store, tmp_path / "one", key=ROCKETLAKE_KEY)) == 1


def test_missing_or_empty_paths_are_one_line_errors(tmp_path):
    with pytest.raises(DatabaseError, match="no such database directory"):
        scan_json_databases([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatabaseError, match="no tuning database under"):
        scan_json_databases([tmp_path / "empty"])
