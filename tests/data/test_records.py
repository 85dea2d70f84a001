"""Robust reading of MetaSchedule JSON databases: real seed records and corrupted copies of them."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from ms_meta.data import layout
from ms_meta.data.db_check import database_stats
from ms_meta.data.records import (
    MALFORMED,
    REBUILD,
    STRUCTURE,
    UNDECODABLE_WORKLOAD,
    UNKNOWN_WORKLOAD,
    UNREADABLE,
    iter_tuning_records,
    load_database,
)
from ms_meta.errors import DatabaseError

from ..conftest import SEED_RECORDS as SEED_ROOT
from ..conftest import tree_hash


def copy_seed(tmp_path: Path, task: str = "mm_512", name: str | None = None) -> Path:
    dest = tmp_path / (name or task)
    shutil.copytree(SEED_ROOT / task, dest)
    return dest


def record_lines(db: Path) -> list[str]:
    return (db / layout.RECORD_FILE).read_text().splitlines(keepends=True)


def seed_record_count(task: str) -> int:
    """Records in the fixture copy of ``task`` (mm_512 is whole; others may be trimmed)."""
    return len(record_lines(SEED_ROOT / task))


def write_records(db: Path, lines: list[str]) -> None:
    (db / layout.RECORD_FILE).write_text("".join(lines))


@pytest.fixture
def mm(tmp_path: Path) -> Path:
    return copy_seed(tmp_path)


def load_unchanged(path, **kwargs):
    """load_database, asserting that no file under the database changed."""
    root = Path(path[1] if isinstance(path, tuple) else path)
    root = root if root.is_dir() else root.parent
    before = tree_hash(root)
    result = load_database(path, **kwargs)
    assert tree_hash(root) == before
    return result


def test_seed_database_matches_its_meta(mm: Path) -> None:
    meta = json.loads((mm / layout.META_FILE).read_text())
    rs = load_unchanged(mm)
    assert len(rs.databases) == 1 and len(rs.groups) == 1
    group = rs.groups[0]
    assert group.task == "mm_512" == meta["name"]
    assert len(group.records) == rs.num_records == meta["n"] == 64
    assert group.best_secs * 1e6 == pytest.approx(meta["best_us"])
    assert rs.skips.num_skipped == 0 and rs.skips.failed_runs == 0
    assert rs.skips.num_targets == 1
    record = group.records[0]
    assert record.line == 1 and record.target["mcpu"] == "rocketlake"
    assert record.args_info[0] == ["TENSOR", "float32", [512, 512]]


def test_reading_does_not_import_tvm(tmp_path: Path) -> None:
    """Reading never needs TVM; stats need it only to infer an operator that meta.json does
    not name (the seed's meta.json does not; ms-meta's collector writes "op")."""
    db = copy_seed(tmp_path, "mm_512")
    meta = json.loads((db / "meta.json").read_text())
    meta["op"] = "dense"
    (db / "meta.json").write_text(json.dumps(meta))
    code = (
        "import sys; from ms_meta.data.records import load_database;"
        "from ms_meta.data.db_check import database_stats;"
        f"rs = load_database({str(db)!r}); assert 'tvm' not in sys.modules, 'read';"
        "database_stats(rs); assert 'tvm' not in sys.modules, 'stats'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


def test_failed_run_is_counted_not_skipped(tmp_path: Path) -> None:
    rs = load_unchanged(copy_seed(tmp_path, "bmm_16_256"))
    assert rs.num_records == seed_record_count("bmm_16_256")
    assert rs.num_failed == rs.skips.failed_runs == 1
    assert rs.skips.num_skipped == 0


def test_truncated_last_line(mm: Path) -> None:
    lines = record_lines(mm)
    write_records(mm, [*lines[:-1], lines[-1][: len(lines[-1]) // 2]])
    rs = load_unchanged(mm)
    assert rs.num_records == 63
    (skip,) = rs.skips.skipped
    assert (skip.line, skip.kind) == (64, MALFORMED)
    assert "truncated last line" in skip.reason and skip.file.name == layout.RECORD_FILE


def test_garbled_middle_line(mm: Path) -> None:
    lines = record_lines(mm)
    lines[9] = lines[9][:40] + "#garbage#" + lines[9][60:]
    lines[20] = "\n"
    write_records(mm, lines)
    rs = load_unchanged(mm)
    assert rs.num_records == 62
    assert [(s.line, s.kind) for s in rs.skips.skipped] == [(10, MALFORMED), (21, MALFORMED)]
    assert "not valid JSON" in rs.skips.skipped[0].reason
    assert "blank line" in rs.skips.skipped[1].reason


def test_not_utf8_line(mm: Path) -> None:
    path = mm / layout.RECORD_FILE
    data = path.read_bytes().split(b"\n")
    data[3] = b"\xff\xfe" + data[3]
    path.write_bytes(b"\n".join(data))
    rs = load_unchanged(mm)
    assert rs.num_records == 63
    assert rs.skips.skipped[0].reason == "not UTF-8 text"


def test_unknown_workload_index(mm: Path) -> None:
    lines = record_lines(mm)
    obj = json.loads(lines[0])
    lines.append(json.dumps([7, obj[1]]) + "\n")
    lines.append(json.dumps([-1, obj[1]]) + "\n")
    write_records(mm, lines)
    rs = load_unchanged(mm)
    assert rs.num_records == 64
    assert [(s.line, s.kind) for s in rs.skips.skipped] == [
        (65, UNKNOWN_WORKLOAD),
        (66, UNKNOWN_WORKLOAD),
    ]
    assert "workload index 7, but the workload file has 1 line(s)" in rs.skips.skipped[0].reason


def test_wrong_structure(mm: Path) -> None:
    lines = record_lines(mm)
    obj = json.loads(lines[0])
    bad = [
        {"not": "a list"},
        [0],
        [True, obj[1]],
        [0, obj[1][:3]],
        [0, [obj[1][0], "slow", obj[1][2], obj[1][3]]],
        [0, [obj[1][0], [-1.0], obj[1][2], obj[1][3]]],
        [0, [obj[1][0], obj[1][1], "llvm", obj[1][3]]],
        [0, [[[["GetSBlock"]], []], obj[1][1], obj[1][2], obj[1][3]]],
    ]
    write_records(mm, lines + [json.dumps(b) + "\n" for b in bad])
    rs = load_unchanged(mm)
    assert rs.num_records == 64
    assert [s.kind for s in rs.skips.skipped] == [STRUCTURE] * len(bad)
    assert [s.line for s in rs.skips.skipped] == list(range(65, 65 + len(bad)))


def test_empty_database_gives_zero_records(tmp_path: Path) -> None:
    db = tmp_path / "empty"
    db.mkdir()
    (db / layout.WORKLOAD_FILE).write_text("")
    (db / layout.RECORD_FILE).write_text("")
    rs = load_unchanged(db)
    assert rs.num_records == 0 and rs.groups == [] and rs.skips.num_skipped == 0
    assert database_stats(rs)["totals"]["records"] == 0


def test_workload_without_records(mm: Path) -> None:
    (mm / layout.RECORD_FILE).unlink()
    rs = load_unchanged(mm)
    assert len(rs.groups) == 1 and rs.num_records == 0 and rs.skips.num_skipped == 0


def test_records_of_another_target_are_counted(mm: Path) -> None:
    lines = record_lines(mm)
    for i in range(5):
        obj = json.loads(lines[i])
        obj[1][2]["mcpu"] = "skylake-avx512"
        lines[i] = json.dumps(obj) + "\n"
    write_records(mm, lines)
    rs = load_unchanged(mm)
    assert rs.num_records == 64 and rs.skips.num_targets == 2
    assert sorted(rs.skips.targets.values()) == [5, 59]
    stats = database_stats(rs)
    assert stats["tasks"][0]["target"] == "llvm-rocketlake-2c,llvm-skylake-avx512-2c"


def test_missing_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match="no such database directory"):
        load_database(tmp_path / "nope")


def test_directory_without_database_raises(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DatabaseError, match="no tuning database under"):
        load_database(tmp_path)


def test_both_plain_and_gzip_is_refused(mm: Path) -> None:
    shutil.copy(mm / layout.RECORD_FILE, mm / (layout.RECORD_FILE + ".gz"))
    with pytest.raises(DatabaseError, match="holds both"):
        load_database(mm)


def gzip_files(db: Path, members: int = 1) -> None:
    for name in (layout.WORKLOAD_FILE, layout.RECORD_FILE):
        lines = (db / name).read_bytes().splitlines(keepends=True)
        step = max(1, -(-len(lines) // members))
        with open(db / (name + ".gz"), "wb") as f:
            for start in range(0, len(lines), step):  # one gzip member per chunk, as appends do
                f.write(gzip.compress(b"".join(lines[start : start + step])))
        (db / name).unlink()


@pytest.mark.parametrize("members", [1, 3])
def test_gzip_database(mm: Path, members: int) -> None:
    gzip_files(mm, members)
    rs = load_unchanged(mm)
    assert rs.num_records == 64 and rs.skips.num_skipped == 0
    assert rs.databases[0].files.records.name == layout.RECORD_FILE + ".gz"


def test_truncated_gzip(mm: Path) -> None:
    gzip_files(mm)
    path = mm / (layout.RECORD_FILE + ".gz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    rs = load_unchanged(mm)
    assert 0 < rs.num_records < 64
    kinds = {s.kind for s in rs.skips.skipped}
    assert UNREADABLE in kinds and kinds <= {UNREADABLE, MALFORMED}


def test_not_gzip_at_all(mm: Path) -> None:
    gzip_files(mm)
    (mm / (layout.RECORD_FILE + ".gz")).write_bytes(b"this is not gzip")
    rs = load_unchanged(mm)
    assert rs.num_records == 0
    (skip,) = rs.skips.skipped
    assert skip.kind == UNREADABLE and skip.line == 0


def test_undecodable_workload_skips_its_records(mm: Path) -> None:
    (mm / layout.WORKLOAD_FILE).write_text('["123", "not base64!!"]\n')
    rs = load_unchanged(mm)
    assert rs.num_records == 0 and rs.groups == []
    kinds = [s.kind for s in rs.skips.skipped]
    assert kinds == [UNDECODABLE_WORKLOAD] * 65
    assert "base64" in rs.skips.skipped[0].reason


def test_truncated_workload_line(mm: Path) -> None:
    text = (mm / layout.WORKLOAD_FILE).read_text()
    (mm / layout.WORKLOAD_FILE).write_text(text[: len(text) // 2])
    rs = load_unchanged(mm)
    assert rs.num_records == 0
    assert rs.skips.skipped[0].kind == MALFORMED
    assert "truncated last line" in rs.skips.skipped[0].reason
    assert rs.skips.by_kind() == {MALFORMED: 1, UNDECODABLE_WORKLOAD: 64}


def test_missing_workload_file(mm: Path) -> None:
    (mm / layout.WORKLOAD_FILE).unlink()
    rs = load_unchanged(mm)
    assert rs.num_records == 0
    assert rs.skips.by_kind() == {UNKNOWN_WORKLOAD: 64, UNREADABLE: 1}


def test_bad_meta_is_reported_and_name_falls_back(mm: Path) -> None:
    (mm / layout.META_FILE).write_text("{not json")
    rs = load_unchanged(mm)
    assert rs.num_records == 64 and rs.groups[0].task == "mm_512"
    (skip,) = rs.skips.skipped
    assert skip.kind == UNREADABLE and skip.file.name == layout.META_FILE


def test_tree_of_databases_and_task_names(tmp_path: Path) -> None:
    root = tmp_path / "tuning_records" / "llvm-rocketlake-2c"
    copy_seed(root, "mm_512", name="a")
    copy_seed(root, "gap_r50", name="b")
    meta = root / "b" / layout.META_FILE
    meta.write_text(json.dumps({"task": "gap", "op": "pool"}))
    rs = load_unchanged(tmp_path)
    assert [g.task for g in rs.groups] == ["mm_512", "gap"]
    counts = [seed_record_count("mm_512"), seed_record_count("gap_r50")]
    assert [len(g.records) for g in rs.groups] == counts and rs.num_records == sum(counts)
    assert rs.groups[1].op_kind == "pool"
    assert layout.find_databases(tmp_path) == [root / "a", root / "b"]


def test_database_with_many_workloads(tmp_path: Path) -> None:
    db = tmp_path / "user_db"
    db.mkdir()
    workloads, records = [], []
    for i, task in enumerate(["mm_512", "gap_r50"]):
        workloads.append((SEED_ROOT / task / layout.WORKLOAD_FILE).read_text())
        for line in (SEED_ROOT / task / layout.RECORD_FILE).read_text().splitlines()[:3]:
            obj = json.loads(line)
            records.append(json.dumps([i, obj[1]]) + "\n")
    (db / layout.WORKLOAD_FILE).write_text("".join(workloads))
    (db / layout.RECORD_FILE).write_text("".join(records))
    rs = load_unchanged(db)
    assert [g.task for g in rs.groups] == ["user_db[0]", "user_db[1]"]
    assert [len(g.records) for g in rs.groups] == [3, 3]


def test_explicit_pair_and_single_file(tmp_path: Path) -> None:
    db = copy_seed(tmp_path)
    (db / layout.WORKLOAD_FILE).rename(db / "x_workload.json")
    (db / layout.RECORD_FILE).rename(db / "x_tuning_record.json")
    rs = load_unchanged((db / "x_workload.json", db / "x_tuning_record.json"))
    assert rs.num_records == 64
    assert load_unchanged(db / "x_tuning_record.json").num_records == 64
    with pytest.raises(DatabaseError, match="database file not found"):
        load_database((db / "x_workload.json", db / "nope.json"))


def test_op_kind_falls_back_to_other_without_task_module(
    mm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ms_meta.feature.task", None)  # import raises ImportError
    assert load_database(mm).groups[0].op_kind == "other"


# ---- TVM from here on (one import for the whole module, about 4 s) -----------------------------


def small_copy(tmp_path: Path, n: int = 3) -> Path:
    db = copy_seed(tmp_path)
    write_records(db, record_lines(db)[:n])
    return db


def test_op_kind_uses_infer_operator_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tvm")
    seen = []

    def infer_operator_kind(mod) -> str:
        seen.append(mod)
        return "dense"

    fake = types.ModuleType("ms_meta.feature.task")
    fake.infer_operator_kind = infer_operator_kind
    monkeypatch.setitem(sys.modules, "ms_meta.feature.task", fake)
    group = load_database(small_copy(tmp_path)).groups[0]
    assert group.op_kind == "dense"
    import tvm

    assert isinstance(seen[0], tvm.IRModule)


def bad_trace_copy(tmp_path: Path) -> Path:
    """3 good records plus one whose trace names a block the workload does not have."""
    db = small_copy(tmp_path)
    lines = record_lines(db)
    lines.append(lines[0].replace('"T_dense"', '"no_such_block"'))
    write_records(db, lines)
    return db


def test_iter_tuning_records_counts_rebuild_failures_once(tmp_path: Path) -> None:
    pytest.importorskip("tvm")
    from tvm.s_tir import meta_schedule as ms

    db = bad_trace_copy(tmp_path)
    before = tree_hash(db)
    rs = load_database(db)
    group = rs.groups[0]
    assert len(group.records) == 4 and rs.skips.num_skipped == 0
    built = list(iter_tuning_records(rs, group))
    assert len(built) == 3 and all(isinstance(r, ms.database.TuningRecord) for r in built)
    assert float(built[0].run_secs[0]) == pytest.approx(group.records[0].run_secs[0])
    assert len(list(iter_tuning_records(rs, group))) == 3
    (skip,) = rs.skips.skipped
    assert (skip.line, skip.kind) == (4, REBUILD)
    assert tree_hash(db) == before
    other = load_database(small_copy(tmp_path / "other"))
    with pytest.raises(DatabaseError, match="not part of this record set"):
        next(iter_tuning_records(other, group))


def test_parse_traces_drops_what_tvm_rejects(tmp_path: Path) -> None:
    pytest.importorskip("tvm")
    rs = load_unchanged(bad_trace_copy(tmp_path), parse_traces=True)
    assert rs.num_records == 3
    assert rs.skips.by_kind() == {REBUILD: 1}
    assert rs.groups[0].mod is not None


def test_parse_traces_reports_a_workload_tvm_cannot_decode(tmp_path: Path) -> None:
    pytest.importorskip("tvm")
    import base64
    import struct

    db = small_copy(tmp_path)
    payload = b'{"root_index": 5, "nodes": []}'
    blob = base64.b64encode(struct.pack("<Q", len(payload)) + payload).decode()
    (db / layout.WORKLOAD_FILE).write_text(json.dumps(["123", blob]) + "\n")
    assert load_database(db).num_records == 3  # passes the TVM-free checks
    rs = load_unchanged(db, parse_traces=True)
    assert rs.num_records == 0 and rs.groups == []
    assert rs.skips.by_kind() == {UNDECODABLE_WORKLOAD: 4}


def test_folders_that_cannot_be_read_are_listed_not_passed_over(tmp_path: Path) -> None:
    """A record file that is a directory, or a dangling link, makes its folder unreadable:
    the reader lists it (for callers to refuse or report) and reads the rest."""
    tree = tmp_path / "tree"
    copy_seed(tree, "mm_512")
    as_dir = copy_seed(tree, "mm_1024")
    (as_dir / layout.RECORD_FILE).unlink()
    (as_dir / layout.RECORD_FILE).mkdir()
    dangling = copy_seed(tree, "gap_r50")
    (dangling / layout.WORKLOAD_FILE).unlink()
    (dangling / layout.WORKLOAD_FILE).symlink_to(tmp_path / "gone.json")

    scan = layout.scan_record_folders(tree)
    assert scan.databases == [tree / "mm_512"]
    reasons = {u.path.name: u.reason for u in scan.unreadable}
    assert reasons == {
        "gap_r50": f"{layout.WORKLOAD_FILE} is a dangling symbolic link",
        "mm_1024": f"{layout.RECORD_FILE} is a directory, not a file",
    }
    rs = load_database(tree)
    assert [d.files.directory.name for d in rs.databases] == ["mm_512"]
    assert sorted(u.path.name for u in rs.unreadable) == ["gap_r50", "mm_1024"]
    assert len(rs.unreadable_sources()) == 2

    only_bad = tmp_path / "only_bad"
    only_bad.mkdir()
    as_dir.rename(only_bad / as_dir.name)
    assert load_database(only_bad).databases == []  # reported, not "no database here"
