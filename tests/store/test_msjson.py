"""MetaSchedule JSON text: every seed line splits and joins back byte for byte."""

from __future__ import annotations

import json

import pytest

from ms_meta.store.msjson import (
    dumps,
    join_record_line,
    join_workload_line,
    split_record_line,
    split_workload_line,
)
from tests.conftest import SEED_RECORDS


def _all_lines(name: str) -> list[str]:
    return [
        line
        for path in sorted(SEED_RECORDS.glob(f"*/{name}"))
        for line in path.read_text().splitlines()
    ]


def test_every_seed_record_line_splits_and_joins_back_byte_equal():
    lines = _all_lines("database_tuning_record.json")
    assert len(lines) > 100
    for line in lines:
        index, record = split_record_line(line)
        assert join_record_line(index, record) == line


def test_dumps_writes_parsed_lines_exactly_as_metaschedule_wrote_them():
    for line in _all_lines("database_tuning_record.json"):
        assert dumps(json.loads(line)) == line


def test_run_secs_keep_their_twenty_digit_text():
    line = _all_lines("database_tuning_record.json")[0]
    _, record = split_record_line(line)
    assert record.run_secs in line and len(record.run_secs.strip("[]")) > 18
    assert dumps(record.run_secs_value) == record.run_secs


def test_workload_lines_round_trip():
    for line in _all_lines("database_workload.json"):
        assert join_workload_line(*split_workload_line(line)) == line


def test_dumps_sorts_keys_and_writes_json_literals():
    assert dumps([True, False, {"b": 1.5, "a": None}]) == '[true,false,{"a":null,"b":1.5}]'


@pytest.mark.parametrize(
    "line",
    [
        "",
        "not json",
        "[0]",
        '[-1,[[[],[]],[1.0],{"kind":"llvm"},[]]]',
        '[0,[[[],[]],[1.0],"llvm",[]]]',
        '[0,[[[],[]],[1.0],{"kind":"llvm"},[]]] trailing',
    ],
)
def test_malformed_record_lines_raise_value_error(line):
    with pytest.raises(ValueError):
        split_record_line(line)
