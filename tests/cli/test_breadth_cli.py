"""Breadth-first collection on the command line: sampled task lists, ``db pack``/``unpack``, and
``db stats`` over packed parts; bad input gets one line, never a traceback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from ms_meta.data.layout import META_FILE, RECORD_FILE, WORKLOAD_FILE
from ms_meta.data.pack import CACHE_ENV
from ms_meta.workloads import sample_workloads
from tests.cli.runner import assert_one_line_error, invoke
from tests.conftest import SEED_RECORDS, tree_hash


@pytest.fixture
def work(tmp_path: Path, monkeypatch) -> Path:
    """A work folder with two finished tasks (real seed records, collector-style meta.json)."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    work = tmp_path / "breadth_work" / "llvm-rocketlake-2c"
    for name, op in (("mm_512", "dense"), ("layernorm_bert", "layer_norm")):
        task = work / name
        task.mkdir(parents=True)
        for file in (WORKLOAD_FILE, RECORD_FILE):
            shutil.copy(SEED_RECORDS / name / file, task / file)
        lines = sum(1 for line in (task / RECORD_FILE).read_text().splitlines() if line.strip())
        meta = {"task": name, "op": op, "collector": {"trials_per_task": lines}}
        (task / META_FILE).write_text(json.dumps(meta) + "\n")
    return work


def test_pack_unpack_round_trip_and_stats_per_operator(work, tmp_path):
    packs = tmp_path / "packs"
    packed = invoke("db", "pack", work, "--out", packs)
    assert packed.exit_code == 0 and "2 tasks, 88 records" in packed.output
    assert "nothing to pack" in invoke("db", "pack", work, "--out", packs).output
    stats = invoke("db", "stats", packs, "--summary")
    assert stats.exit_code == 0, stats.output
    assert "total: 2 tasks, 88 records" in stats.output
    assert any(line.split()[:3] == ["dense", "1", "64"] for line in stats.output.splitlines())
    assert "mm_512" not in stats.output  # --summary: no per-task rows
    out = tmp_path / "plain"
    unpacked = invoke("db", "unpack", packs, "--out", out)
    assert unpacked.exit_code == 0 and "2 tasks, 88 records" in unpacked.output
    for name in ("mm_512", "layernorm_bert"):
        original = {k: v for k, v in tree_hash(work / name).items() if k != ".lock"}
        assert tree_hash(out / name) == original


def test_pack_defaults_to_the_breadth_folder_of_the_work_folders_target(work, tmp_path):
    # the default is relative to the working directory
    with CliRunner().isolated_filesystem(temp_dir=tmp_path):
        result = invoke("db", "pack", work)
        assert Path("tuning_records/llvm-rocketlake-2c-breadth/part-0001.tar.gz").is_file()
    assert "part-0001.tar.gz: 2 tasks" in result.output


def test_collect_lists_a_sampled_set_without_its_packed_tasks(work, tmp_path):
    listed = invoke("collect", "sampled:6:3", "--list")
    names = [line.split("\t")[0] for line in listed.output.splitlines()]
    assert sorted(names) == sorted(w.name for w in sample_workloads(6, seed=3))
    # a packed task of the same name is left out
    shutil.copytree(work / "mm_512", work / names[0])
    invoke("db", "pack", work, "--out", tmp_path / "packs")
    again = invoke("collect", "sampled:6:3", "--list", "--skip-packed", tmp_path / "packs")
    assert [line.split("\t")[0] for line in again.output.splitlines()] == names[1:]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("collect", "sampled:x:1", "--list"), "must be integers"),
        (("collect", "sampled:0", "--list"), "COUNT must be >= 1"),
        (("db", "pack", "missing_dir", "--out", "packs"), "no such work directory"),
        (("db", "unpack", "damaged/part-0001.tar.gz", "--out", "out"), "cannot read packed part"),
        (("collect", "sampled:2", "--list", "--skip-packed", "notes.txt"), "not a packed part"),
    ],
)
def test_bad_input_gets_one_line(args, needle, tmp_path):
    with CliRunner().isolated_filesystem(temp_dir=tmp_path):
        Path("damaged").mkdir()
        Path("damaged/part-0001.tar.gz").write_bytes(b"\x1f\x8b not really gzip")
        Path("notes.txt").write_text("notes\n")
        assert_one_line_error(invoke(*args), needle)
