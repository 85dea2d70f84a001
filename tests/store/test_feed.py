"""Measuring commands feed the store through helpers that never fail the command."""

from __future__ import annotations

import logging

from tvm.s_tir import meta_schedule as ms

from ms_meta.store import SqlStore, feed_database, feed_json_databases
from tests.conftest import SEED_RECORDS


def test_feeding_a_task_directory_twice_adds_its_records_once(tmp_path):
    store_path = tmp_path / "s.sqlite"
    first = feed_json_databases(SEED_RECORDS / "mm_1024", store_path=store_path)
    again = feed_json_databases(SEED_RECORDS / "mm_1024", store_path=store_path)
    assert first.added == 4 and again.added == 0
    with SqlStore(store_path) as store:
        assert store.count() == 4


def test_a_store_that_cannot_be_opened_is_a_warning_not_an_error(tmp_path, caplog):
    blocked = tmp_path / "a-directory"
    blocked.mkdir()
    with caplog.at_level(logging.WARNING, logger="ms_meta.store.feed"):
        assert feed_json_databases(SEED_RECORDS / "mm_1024", store_path=blocked) is None
        assert feed_database(ms.database.MemoryDatabase(), store_path=blocked) is None
    assert "not added to the record store" in caplog.text


def test_feeding_a_metaschedule_database_copies_its_records(tmp_path):
    source = ms.database.JSONDatabase(work_dir=str(SEED_RECORDS / "mm_1024"))
    assert feed_database(source, store_path=tmp_path / "s.sqlite") == 4
    with SqlStore(tmp_path / "s.sqlite") as store:
        assert store.count() == 4 and len(store.workloads()) == 1
