"""Feeding the record store after a command: a task folder that a stopped run created before its
first batch (no records yet) is left out quietly, the others are added."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from ms_meta.cli.options import feed_store
from ms_meta.store import RecordStore

RECORDS = Path(__file__).resolve().parents[2] / "tuning_records" / "llvm-rocketlake-2c"


def test_a_task_folder_without_records_is_left_out_quietly(tmp_path, caplog, capsys):
    stopped = tmp_path / "stopped_task"
    stopped.mkdir()
    (stopped / "meta.json").write_text("{}")
    measured = tmp_path / "softmax_12_128_128"
    shutil.copytree(RECORDS / "softmax_12_128_128", measured)
    store_path = tmp_path / "records.sqlite"
    with caplog.at_level(logging.WARNING):
        feed_store(str(store_path), stopped, measured)
    assert "records not added" not in caplog.text
    added = int(re.search(r"record store: \+(\d+) records", capsys.readouterr().err).group(1))
    lines = (measured / "database_tuning_record.json").read_text().splitlines()
    assert 0 < added <= len(lines)  # repeated schedules are stored once
    assert len(RecordStore(store_path).get_all_tuning_records()) == added
