"""Traces built from their JSON without a replay print and apply as the replayed ones do."""

from __future__ import annotations

import json

import pytest
import tvm_ffi
from tvm.s_tir import Schedule
from tvm.s_tir.meta_schedule.database import TuningRecord, Workload
from tvm.target import Target

from ms_meta.store import RecordStore
from ms_meta.store.database import record_text
from ms_meta.store.msjson import split_record_line
from ms_meta.store.traces import NeedsReplay, build_trace, workload_block_names
from tests.conftest import SEED_RECORDS

ROCKETLAKE = Target({"kind": "llvm", "mcpu": "rocketlake", "num-cores": 2})
TASKS = sorted(p.name for p in SEED_RECORDS.iterdir() if (p / "database_workload.json").is_file())


def _workload(task: str) -> Workload:
    line = (SEED_RECORDS / task / "database_workload.json").read_text()
    return Workload.from_json(json.loads(line))


def _records(task: str):
    lines = (SEED_RECORDS / task / "database_tuning_record.json").read_text().splitlines()
    return [split_record_line(line)[1] for line in lines]


def _applied(trace, mod):
    sch = Schedule(mod)
    trace.apply_to_schedule(sch, remove_postproc=False)
    return sch.mod


@pytest.mark.parametrize("task", TASKS)
def test_a_built_trace_prints_and_applies_as_the_replayed_one(task):
    workload = _workload(task)
    blocks = workload_block_names(workload.mod)
    records = _records(task)
    for index, text in enumerate(records):
        built = TuningRecord(build_trace(text.insts, text.decisions, blocks), workload)
        assert record_text(built).trace == text.trace  # byte-equal, every record
        if index < 3:  # a replay takes milliseconds: the first records of each task
            obj = json.loads(f"[{text.trace},{text.run_secs},{text.target},{text.args_info}]")
            replayed = TuningRecord.from_json(obj, workload)
            assert tvm_ffi.structural_equal(
                _applied(built.trace, workload.mod), _applied(replayed.trace, workload.mod)
            )


def test_a_trace_naming_a_block_the_workload_lacks_is_left_to_the_replay():
    text = _records("mm_1024")[0]
    insts = text.insts.replace('"T_dense"', '"no_such_block"', 1)
    blocks = workload_block_names(_workload("mm_1024").mod)
    assert "T_dense" in blocks
    with pytest.raises(NeedsReplay):
        build_trace(insts, text.decisions, blocks)


def test_an_unknown_instruction_or_an_undefined_variable_is_left_to_the_replay():
    text = _records("mm_512")[0]
    blocks = workload_block_names(_workload("mm_512").mod)
    with pytest.raises(NeedsReplay):
        build_trace(text.insts.replace('"GetLoops"', '"NoSuchInstruction"', 1), "[]", blocks)
    with pytest.raises(NeedsReplay):
        build_trace('[["GetLoops",["b7"],[],["l0"]]]', "[]", blocks)


def test_query_tuning_record_returns_the_stored_record_byte_equal(tmp_path):
    store = RecordStore(tmp_path / "s.sqlite")
    store.import_json_database(SEED_RECORDS / "nhwc_1x1_512")
    workload = _workload("nhwc_1x1_512")
    best = RecordStore(store.path).query_tuning_record(workload.mod, ROCKETLAKE, "main")
    stored = store.sql.best(store.sql.workload_ids(workload.as_json()[0]), "llvm|rocketlake||2", 1)
    text = record_text(best)
    assert (text.trace, text.run_secs, text.target, text.args_info) == (
        stored[0].text.trace,
        stored[0].text.run_secs,
        stored[0].text.target,
        stored[0].text.args_info,
    )
    replayed = RecordStore(store.path, target=ROCKETLAKE).get_top_k(workload, 1)[0]  # replayed
    assert tvm_ffi.structural_equal(
        _applied(best.trace, workload.mod), _applied(replayed.trace, workload.mod)
    )
