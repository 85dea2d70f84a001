"""Packed task databases: append-only parts, byte-equal unpacking, and the loader reading them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ms_meta.data.layout import META_FILE, RECORD_FILE, WORKLOAD_FILE
from ms_meta.data.pack import (
    CACHE_ENV,
    finished_tasks,
    is_packed,
    pack_tasks,
    packed_tasks,
    part_paths,
    unpack,
)
from ms_meta.data.records import load_databases
from ms_meta.data.task_files import task_lock
from ms_meta.errors import DatabaseError

from ..conftest import SEED_RECORDS, tree_hash


def _finished_task(work: Path, seed_name: str, op: str, wanted: int | None = None) -> Path:
    """A collector-style task folder from real seed records: its meta.json asks for as many
    records as it holds (or ``wanted``)."""
    task = work / seed_name
    task.mkdir(parents=True)
    for name in (WORKLOAD_FILE, RECORD_FILE):
        shutil.copy(SEED_RECORDS / seed_name / name, task / name)
    records = sum(1 for line in (task / RECORD_FILE).read_text().splitlines() if line.strip())
    meta = {
        "task": seed_name,
        "op": op,
        "cpu": "rocketlake",
        "records": records,
        "collector": {"trials_per_task": wanted or records},
    }
    (task / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
    return task


@pytest.fixture
def work(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    work = tmp_path / "work" / "llvm-rocketlake-2c"
    _finished_task(work, "mm_512", "dense")
    _finished_task(work, "gap_r50", "global_avg_pool")
    _finished_task(work, "bmm_16_256", "batch_matmul", wanted=72)  # 52 of 72: not finished
    return work


def test_only_finished_tasks_are_packed_and_the_manifest_counts_them(work, tmp_path):
    assert [t.name for t in finished_tasks(work)] == ["gap_r50", "mm_512"]
    result = pack_tasks(work, tmp_path / "packs")
    assert result.part == tmp_path / "packs" / "part-0001.tar.gz"
    assert result.tasks == ["gap_r50", "mm_512"] and result.records == 32 + 64
    manifest = json.loads((tmp_path / "packs" / "part-0001.json").read_text())
    assert manifest["tasks"]["mm_512"] == {"op": "dense", "records": 64, "spec": None}
    assert manifest["operators"] == {"dense": 1, "global_avg_pool": 1}
    assert is_packed(tmp_path / "packs") and is_packed(result.part)
    assert not is_packed(work)


def test_a_task_a_few_records_short_is_finished_and_one_killed_early_is_not(tmp_path):
    work = tmp_path / "work"
    _finished_task(work, "bmm_16_256", "batch_matmul", wanted=64)  # 52 of 64: a short search
    _finished_task(work, "gap_r50", "global_avg_pool", wanted=96)  # 32 of 96: the random third
    assert [t.name for t in finished_tasks(work)] == ["bmm_16_256"]
    assert finished_tasks(work, min_share=1.0) == []


def test_parts_are_append_only_and_a_task_is_packed_once(work, tmp_path):
    packs = tmp_path / "packs"
    pack_tasks(work, packs)
    first = tree_hash(packs)
    assert pack_tasks(work, packs).part is None  # nothing new
    _finished_task(work, "layernorm_bert", "layer_norm")
    second = pack_tasks(work, packs)
    assert second.part == packs / "part-0002.tar.gz" and second.tasks == ["layernorm_bert"]
    assert {k: v for k, v in tree_hash(packs).items() if k in first} == first
    assert packed_tasks(packs) == {
        "gap_r50": packs / "part-0001.tar.gz",
        "mm_512": packs / "part-0001.tar.gz",
        "layernorm_bert": packs / "part-0002.tar.gz",
    }
    assert [p.name for p in part_paths(packs)] == ["part-0001.tar.gz", "part-0002.tar.gz"]


def test_packing_the_same_tasks_gives_the_same_bytes(work, tmp_path):
    one = pack_tasks(work, tmp_path / "a").part
    two = pack_tasks(work, tmp_path / "b").part
    assert one.read_bytes() == two.read_bytes()


def test_unpack_restores_every_file_byte_for_byte(work, tmp_path):
    packs = tmp_path / "packs"
    pack_tasks(work, packs, max_tasks=1)
    pack_tasks(work, packs)
    result = unpack(packs, tmp_path / "out")
    assert result.tasks == ["gap_r50", "mm_512"] and result.records == 96
    for task in result.tasks:
        original = {k: v for k, v in tree_hash(work / task).items() if k != ".lock"}
        assert tree_hash(tmp_path / "out" / task) == original
    # the unpacked folders are plain MetaSchedule databases
    from tvm.s_tir import meta_schedule as ms

    db = ms.database.JSONDatabase(work_dir=str(tmp_path / "out" / "mm_512"))
    assert len(db) == 64


def test_unpack_never_overwrites_an_existing_task_folder(work, tmp_path):
    packs = tmp_path / "packs"
    pack_tasks(work, packs)
    (tmp_path / "out" / "mm_512").mkdir(parents=True)
    with pytest.raises(DatabaseError, match="already holds 1 of the packed tasks"):
        unpack(packs, tmp_path / "out")
    assert not (tmp_path / "out" / "gap_r50").exists()


def test_the_loader_reads_a_pack_folder_as_the_task_folders_it_holds(work, tmp_path):
    packs = tmp_path / "packs"
    pack_tasks(work, packs)
    packed = load_databases([packs])
    plain = load_databases([work / "gap_r50", work / "mm_512"])
    assert packed.tasks() == plain.tasks() == {"gap_r50": "global_avg_pool", "mm_512": "dense"}
    assert packed.num_records == plain.num_records == 96
    assert sorted(r.as_json()[1] for g in packed.groups for r in g.records) == sorted(
        r.as_json()[1] for g in plain.groups for r in g.records
    )
    # a second read comes from the cache, and one part alone is readable too
    assert load_databases([packs / "part-0001.tar.gz"]).num_records == 96
    assert len(list((tmp_path / "cache").iterdir())) == 1


def test_a_task_a_collector_holds_waits_for_the_next_part(work, tmp_path):
    with task_lock(work / "mm_512"):
        result = pack_tasks(work, tmp_path / "packs")
    assert result.tasks == ["gap_r50"] and result.skipped_locked == ["mm_512"]


def test_a_damaged_part_is_refused_in_one_line(tmp_path):
    part = tmp_path / "packs" / "part-0001.tar.gz"
    part.parent.mkdir()
    part.write_bytes(b"not a tarball")
    with pytest.raises(DatabaseError, match="cannot read packed part") as err:
        unpack(part.parent, tmp_path / "out")
    assert "\n" not in str(err.value)
    (tmp_path / "README.md").write_text("not a part\n")
    with pytest.raises(DatabaseError, match="not a packed part"):
        part_paths(tmp_path / "README.md")
