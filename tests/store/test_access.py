"""What a ``store=`` argument names, and reading a store that may not exist."""

from __future__ import annotations

import logging

from ms_meta.store import SqlStore
from ms_meta.store.access import open_store, resolve_store_path
from ms_meta.store.feed import feed_json_databases
from ms_meta.store.sql import STORE_ENV
from tests.conftest import SEED_RECORDS


def test_none_in_any_spelling_turns_the_store_off(tmp_path):
    assert resolve_store_path(None) is None
    assert resolve_store_path("none") is None and resolve_store_path("None") is None
    assert resolve_store_path(tmp_path / "s.sqlite") == tmp_path / "s.sqlite"


def test_the_default_is_the_environments_and_none_there_turns_it_off(tmp_path, monkeypatch):
    monkeypatch.setenv(STORE_ENV, str(tmp_path / "env.sqlite"))
    assert resolve_store_path("default") == tmp_path / "env.sqlite"
    monkeypatch.setenv(STORE_ENV, "none")
    assert resolve_store_path("default") is None
    # feeding the default store is then a no-op, and creates no file named "none"
    assert feed_json_databases(SEED_RECORDS / "mm_1024") is None
    assert not (tmp_path / "none").exists()


def test_reading_a_store_that_does_not_exist_creates_nothing(tmp_path):
    missing = tmp_path / "nested" / "missing.sqlite"
    assert open_store(missing) is None
    assert not missing.exists() and not missing.parent.exists()
    assert open_store(None) is None


def test_a_store_that_cannot_be_read_is_a_warning(tmp_path, caplog):
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not a database at all" * 100)
    with caplog.at_level(logging.WARNING, logger="ms_meta.store.access"):
        assert open_store(garbage) is None
    assert "cannot be read" in caplog.text


def test_a_stored_task_reads_back_as_measure_candidates_with_latencies(tmp_path):
    from tvm.s_tir import meta_schedule as ms

    path = tmp_path / "s.sqlite"
    feed_json_databases(SEED_RECORDS / "mm_1024", store_path=path)
    record_store = open_store(path)
    try:
        mod = (
            ms.database.JSONDatabase(work_dir=str(SEED_RECORDS / "mm_1024"))
            .get_all_tuning_records()[0]
            .workload.mod
        )
        rocketlake = {"kind": "llvm", "mcpu": "rocketlake", "num-cores": 2}
        found = record_store.measured_candidates(mod, rocketlake, limit=3)
        assert len(found) == 3  # the last three stored
        assert all(secs is None or min(secs) > 0 for _, secs in found)
        assert all(isinstance(c, ms.MeasureCandidate) for c, _ in found)
        other = {"kind": "llvm", "mcpu": "znver4", "num-cores": 2}
        assert record_store.measured_candidates(mod, other, limit=3) == []
    finally:
        record_store.close()
    with SqlStore(path) as sql:
        assert sql.count() == 4
