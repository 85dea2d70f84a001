"""``ms-meta db`` on real seed records and corrupted copies: clear messages, never a traceback."""

from __future__ import annotations

import gzip
import json
import shutil
import statistics
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ms_meta.cli.main import cli
from ms_meta.data import layout
from ms_meta.run_secs import is_failed
from tests.cli.runner import copy_seed, invoke
from tests.conftest import SEED_RECORDS as SEED_ROOT
from tests.conftest import tree_hash


def run(*args: str | Path) -> Result:
    return invoke("db", *args)


def edit_records(db: Path, edit) -> None:
    path = db / layout.RECORD_FILE
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(edit(lines)))


def count_lines(path: Path) -> int:
    return len(path.read_text().splitlines())


# Record counts of the fixture copies (gap_r50 is trimmed: a count apart from mm_512's shows
# which source records came from).
MM_RECORDS = count_lines(SEED_ROOT / "mm_512" / layout.RECORD_FILE)
GAP_RECORDS = count_lines(SEED_ROOT / "gap_r50" / layout.RECORD_FILE)


@pytest.fixture
def mm(tmp_path: Path) -> Path:
    return copy_seed(tmp_path / "in")


# ---- stats ------------------------------------------------------------------------------------


def test_stats_matches_meta(mm: Path) -> None:
    meta = json.loads((mm / layout.META_FILE).read_text())
    result = run("stats", mm, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    (task,) = data["tasks"]
    assert (task["task"], task["records"], task["failed"]) == ("mm_512", meta["n"], 0)
    assert task["best_us"] == pytest.approx(meta["best_us"])
    assert (
        data["totals"]["records"] == MM_RECORDS
        and data["operators"][task["op"]]["records"] == MM_RECORDS
    )

    table = run("stats", mm)
    assert table.exit_code == 0
    assert "mm_512" in table.stdout and f"{meta['best_us']:,.1f}" in table.stdout
    assert f"total: 1 tasks, {MM_RECORDS} records, 0 failed" in table.stdout
    assert "mean" in table.stdout


def test_stats_of_all_seed_records() -> None:
    result = run("stats", SEED_ROOT, "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    tasks = {t["task"]: t for t in data["tasks"]}
    dirs = sorted(p.parent for p in SEED_ROOT.glob(f"*/{layout.RECORD_FILE}"))
    assert sorted(tasks) == [d.name for d in dirs]
    records = failed = 0
    for db in dirs:
        # Expected values straight from the JSON lines: [workload index, [trace, run_secs, ...]]
        lines = (db / layout.RECORD_FILE).read_text().splitlines()
        run_secs = [json.loads(line)[1][1] for line in lines]
        task = tasks[db.name]
        assert task["records"] == len(run_secs)
        assert task["failed"] == sum(map(is_failed, run_secs))
        best = min(statistics.fmean(s) for s in run_secs if not is_failed(s))
        assert task["best_us"] == pytest.approx(best * 1e6)
        meta = json.loads((db / layout.META_FILE).read_text())
        if meta["n"] == len(lines):  # an untrimmed copy: the collector's own best must agree
            assert task["best_us"] == pytest.approx(meta["best_us"])
        records, failed = records + task["records"], failed + task["failed"]
    totals = data["totals"]
    assert (totals["tasks"], totals["records"], totals["failed"]) == (len(dirs), records, failed)
    assert failed >= 1  # the fixture keeps bmm_16_256's failed build


def test_stats_missing_directory(tmp_path: Path) -> None:
    result = run("stats", tmp_path / "nope")
    assert result.exit_code == 1
    assert "Error: no such database directory" in result.stderr


def test_stats_on_corrupt_copy_warns(mm: Path) -> None:
    edit_records(mm, lambda lines: [*lines[:-1], lines[-1][:100]])
    before = tree_hash(mm)
    result = run("stats", mm)
    assert result.exit_code == 0
    assert f"{MM_RECORDS - 1} records" in result.stdout
    assert "1 unreadable lines skipped (1 malformed)" in result.stderr
    assert tree_hash(mm) == before


# ---- validate ---------------------------------------------------------------------------------


def test_validate_clean_database(mm: Path) -> None:
    result = run("validate", mm)
    assert result.exit_code == 0, result.output
    assert "0 with problems" in result.stdout


def test_validate_failed_runs_only_fail_with_strict(tmp_path: Path) -> None:
    db = copy_seed(tmp_path, "bmm_16_256")
    relaxed = run("validate", db)
    assert relaxed.exit_code == 0
    assert "warning: 1 failed runs" in relaxed.stdout
    strict = run("validate", db, "--strict")
    assert strict.exit_code == 1
    assert "error: 1 failed runs" in strict.stdout


def _truncate_last(lines):
    return [*lines[:-1], lines[-1][: len(lines[-1]) // 2]]


def _garble_middle(lines):
    lines[30] = "[0, [[[\n"
    return lines


def _unknown_workload(lines):
    obj = json.loads(lines[0])
    return [*lines, json.dumps([3, obj[1]]) + "\n"]


def _other_target(lines):
    obj = json.loads(lines[0])
    obj[1][2]["mcpu"] = "znver4"
    return [*lines, json.dumps(obj) + "\n"]


def _empty(lines):
    return []


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (_truncate_last, f"{layout.RECORD_FILE}:{MM_RECORDS}: malformed: truncated last line"),
        (_garble_middle, f"{layout.RECORD_FILE}:31: malformed: not valid JSON"),
        (
            _unknown_workload,
            f"{layout.RECORD_FILE}:{MM_RECORDS + 1}: unknown-workload: workload index 3",
        ),
        (_other_target, "mixed targets: records were measured on 2 different targets"),
        (_empty, "empty database: no usable tuning records"),
    ],
)
def test_validate_reports_problems(mm: Path, corrupt, message: str) -> None:
    edit_records(mm, corrupt)
    before = tree_hash(mm)
    result = run("validate", mm)
    assert result.exit_code == 1
    assert "FAIL" in result.stdout and message in result.stdout
    assert tree_hash(mm) == before


def test_validate_empty_files(tmp_path: Path) -> None:
    db = tmp_path / "db"
    db.mkdir()
    (db / layout.WORKLOAD_FILE).write_text("")
    (db / layout.RECORD_FILE).write_text("")
    result = run("validate", db, "--json")
    assert result.exit_code == 1
    (report,) = json.loads(result.stdout)
    assert report["problems"] == ["empty database: no usable tuning records"]


def test_validate_missing_directory(tmp_path: Path) -> None:
    result = run("validate", tmp_path / "missing")
    assert result.exit_code == 1
    assert "no such database directory" in result.stderr


def test_validate_gzip_copy(mm: Path) -> None:
    for name in (layout.WORKLOAD_FILE, layout.RECORD_FILE):
        (mm / (name + ".gz")).write_bytes(gzip.compress((mm / name).read_bytes()))
        (mm / name).unlink()
    result = run("validate", mm)
    assert result.exit_code == 0, result.output
    assert f"{MM_RECORDS} records" in result.stdout


def test_validate_tree_with_one_bad_database(tmp_path: Path) -> None:
    good = copy_seed(tmp_path, "mm_512")
    bad = copy_seed(tmp_path, "gap_r50")
    edit_records(bad, _garble_middle)
    result = run("validate", tmp_path)
    assert result.exit_code == 1
    assert f"ok   {good}" in result.stdout and f"FAIL {bad}" in result.stdout
    assert "2 databases checked, 1 with problems" in result.stdout


# ---- merge ------------------------------------------------------------------------------------


def test_merge_with_itself_deduplicates(mm: Path, tmp_path: Path) -> None:
    same = copy_seed(tmp_path / "again")  # the same records under another path
    before = tree_hash(mm)
    out = tmp_path / "merged"
    result = run("merge", mm, same / layout.RECORD_FILE, mm, "--out", out)
    assert result.exit_code == 0, result.output
    assert (
        f"added 1 workloads and {MM_RECORDS} records ({MM_RECORDS} duplicates dropped)"
        in result.stdout
    )
    assert count_lines(out / layout.RECORD_FILE) == MM_RECORDS
    assert count_lines(out / layout.WORKLOAD_FILE) == 1
    # workload lines are copied verbatim
    assert (out / layout.WORKLOAD_FILE).read_text() == (mm / layout.WORKLOAD_FILE).read_text()
    assert tree_hash(mm) == before
    stats = json.loads(run("stats", out, "--json").stdout)
    assert stats["totals"]["records"] == MM_RECORDS


def test_merge_two_databases_remaps_indices(tmp_path: Path) -> None:
    a = copy_seed(tmp_path / "in", "mm_512")
    b = copy_seed(tmp_path / "in", "gap_r50")
    a_again = copy_seed(tmp_path / "in", "mm_512", name="mm_512_copy")
    out = tmp_path / "merged"
    result = run("merge", a, b, a_again, "--out", out)
    assert result.exit_code == 0
    added = f"added 2 workloads and {MM_RECORDS + GAP_RECORDS} records"
    assert f"{added} ({MM_RECORDS} duplicates dropped)" in result.stdout
    indices = [json.loads(x)[0] for x in (out / layout.RECORD_FILE).read_text().splitlines()]
    assert indices == [0] * MM_RECORDS + [1] * GAP_RECORDS
    data = json.loads(run("stats", out, "--json").stdout)
    assert [t["records"] for t in data["tasks"]] == [MM_RECORDS, GAP_RECORDS]


def test_merge_refuses_existing_database_without_append(mm: Path, tmp_path: Path) -> None:
    out = copy_seed(tmp_path / "out")
    before = tree_hash(out)
    result = run("merge", mm, "--out", out)
    assert result.exit_code == 1
    assert "already holds a tuning database; pass --append" in result.stderr
    assert tree_hash(out) == before


def test_merge_append_adds_nothing_twice(tmp_path: Path) -> None:
    a = copy_seed(tmp_path / "in", "mm_512")
    b = copy_seed(tmp_path / "in", "gap_r50")
    out = tmp_path / "merged"
    assert run("merge", a, "--out", out).exit_code == 0
    old_workloads = (out / layout.WORKLOAD_FILE).read_bytes()
    old_records = (out / layout.RECORD_FILE).read_bytes()

    again = run("merge", a, "--out", out, "--append")
    assert again.exit_code == 0
    assert f"added 0 workloads and 0 records ({MM_RECORDS} duplicates dropped" in again.stdout
    assert (out / layout.RECORD_FILE).read_bytes() == old_records

    more = run("merge", a, b, "--out", out, "--append")
    assert more.exit_code == 0
    assert f"added 1 workloads and {GAP_RECORDS} records" in more.stdout
    # append-only: the old bytes are an unchanged prefix
    assert (out / layout.WORKLOAD_FILE).read_bytes().startswith(old_workloads)
    assert (out / layout.RECORD_FILE).read_bytes().startswith(old_records)
    assert count_lines(out / layout.RECORD_FILE) == MM_RECORDS + GAP_RECORDS
    assert run("merge", b, "--out", out, "--append").stdout.count("added 0 workloads") == 1


def test_merge_append_refuses_a_damaged_destination(mm: Path, tmp_path: Path) -> None:
    out = copy_seed(tmp_path / "out")
    edit_records(out, _truncate_last)
    before = tree_hash(out)
    result = run("merge", mm, "--out", out, "--append")
    assert result.exit_code == 1
    assert "cannot append to" in result.stderr and "validate" in result.stderr
    assert tree_hash(out) == before


def test_merge_append_into_gzip_database(mm: Path, tmp_path: Path) -> None:
    out = copy_seed(tmp_path / "out", "gap_r50")
    for name in (layout.WORKLOAD_FILE, layout.RECORD_FILE):
        (out / (name + ".gz")).write_bytes(gzip.compress((out / name).read_bytes()))
        (out / name).unlink()
    result = run("merge", mm, "--out", out, "--append")
    assert result.exit_code == 0, result.output
    assert not (out / layout.RECORD_FILE).exists()
    data = json.loads(run("stats", out, "--json").stdout)
    assert (
        data["totals"]["records"] == MM_RECORDS + GAP_RECORDS
        and data["totals"]["skipped_lines"] == 0
    )


def test_merge_skips_corrupt_source_lines(mm: Path, tmp_path: Path) -> None:
    edit_records(mm, _garble_middle)
    out = tmp_path / "merged"
    result = run("merge", mm, "--out", out)
    assert result.exit_code == 0
    assert f"{MM_RECORDS - 1} records" in result.stdout
    assert "1 unreadable source lines were left out" in result.stderr
    assert run("validate", out).exit_code == 0


def test_merge_missing_source(tmp_path: Path) -> None:
    result = run("merge", tmp_path / "nope", "--out", tmp_path / "out")
    assert result.exit_code == 1
    assert "no such database directory" in result.stderr
    assert not (tmp_path / "out").exists()


def test_merged_database_loads_in_metaschedule(mm: Path, tmp_path: Path) -> None:
    pytest.importorskip("tvm")
    from tvm.s_tir import meta_schedule as ms

    b = copy_seed(tmp_path / "in2", "gap_r50")
    out = tmp_path / "merged"
    assert run("merge", mm, b, "--out", out).exit_code == 0
    database = ms.database.JSONDatabase(work_dir=str(out), allow_missing=False)
    assert len(database) == MM_RECORDS + GAP_RECORDS
    assert len(database.get_all_tuning_records()) == MM_RECORDS + GAP_RECORDS


# ---- split ------------------------------------------------------------------------------------


def test_split_writes_json_and_prints_held_out(tmp_path: Path) -> None:
    root = tmp_path / "records"
    for task in ("mm_512", "mm_1024", "bert_qkv", "gap_r50", "softmax_bert"):
        copy_seed(root, task)
    out = tmp_path / "split.json"
    result = run("split", root, "--held-out-fraction", "0.4", "--seed", "1", "--out", out)
    assert result.exit_code == 0, result.output
    split = json.loads(out.read_text())
    assert sorted(split["train"] + split["held_out"]) == sorted(
        ["mm_512", "mm_1024", "bert_qkv", "gap_r50", "softmax_bert"]
    )
    for name in split["held_out"]:
        assert f"  {name} (" in result.stdout
    assert (split["seed"], split["fraction"]) == (1, 0.4)
    first = out.read_bytes()
    assert (
        run("split", root, "--held-out-fraction", "0.4", "--seed", "1", "--out", out).exit_code == 0
    )
    assert out.read_bytes() == first


def test_split_bad_fraction(mm: Path, tmp_path: Path) -> None:
    result = run("split", mm, "--held-out-fraction", "1.5", "--out", tmp_path / "s.json")
    assert result.exit_code == 2
    assert "held-out-fraction" in result.stderr


def test_split_without_records(tmp_path: Path) -> None:
    db = tmp_path / "db"
    db.mkdir()
    (db / layout.WORKLOAD_FILE).write_text("")
    result = run("split", db, "--out", tmp_path / "s.json")
    assert result.exit_code == 1
    assert "no task with tuning records" in result.stderr


def test_db_help_lists_commands() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for name in ("stats", "merge", "validate", "split"):
        assert name in result.stdout
    assert "Examples" in run("merge", "--help").stdout


def test_stats_reports_measuring_hours_from_meta(tmp_path: Path) -> None:
    db = tmp_path / "task"
    shutil.copytree(SEED_ROOT / "mm_512", db)
    meta = json.loads((db / "meta.json").read_text())
    meta["collect_seconds"] = 1800.0
    (db / "meta.json").write_text(json.dumps(meta))
    result = CliRunner().invoke(cli, ["db", "stats", str(db), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    expected = (1800.0 + meta["secs"]) / 3600  # the seed's own tuning seconds count too
    assert abs(report["totals"]["measure_hours"] - expected) < 1e-9
