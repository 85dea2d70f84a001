"""Ingesting another machine's MetaSchedule database: appended once, its lines remembered."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ms_meta.data import layout
from ms_meta.data.dataset import build_dataset
from ms_meta.data.ingest import ingest_seed_task

SEED = Path(__file__).resolve().parents[1] / "fixtures" / "seed_records" / "mm_512"


def test_ingest_appends_once_and_records_where_it_starts(tmp_path):
    root = tmp_path / "records"
    name, added = ingest_seed_task(SEED, root, origin="test seed")
    seed_lines = (SEED / layout.RECORD_FILE).read_text().splitlines()
    assert added == len(seed_lines) > 0
    (task_dir,) = [p for p in root.glob("*/*") if p.is_dir()]
    assert task_dir.name == name
    # idempotent: a source already ingested is skipped, and the file is not touched
    before = (task_dir / layout.RECORD_FILE).read_bytes()
    assert ingest_seed_task(SEED, root, origin="test seed") == (name, 0)
    assert (task_dir / layout.RECORD_FILE).read_bytes() == before
    # the same records under another source name land after the existing ones
    other = tmp_path / "other" / SEED.name
    shutil.copytree(SEED, other)
    meta_path = task_dir / layout.META_FILE
    meta = json.loads(meta_path.read_text())
    meta["ingested"]["elsewhere"] = meta["ingested"].pop(SEED.name)
    meta_path.write_text(json.dumps(meta))
    assert ingest_seed_task(other, root, origin="again")[1] == len(seed_lines)
    entry = json.loads(meta_path.read_text())["ingested"][SEED.name]
    assert entry["first_line"] == len(seed_lines) + 1 and entry["origin"] == "again"
    # the dataset keeps the two measurements apart, both under the workload's split name
    ds = build_dataset(root, cache_dir=None)
    assert sorted(t.name for t in ds.tasks) == sorted([f"{name}@elsewhere", f"{name}@{SEED.name}"])
    assert {t.split_name for t in ds.tasks} == {name}


def test_records_timed_under_contention_are_left_out(tmp_path):
    # A task measured into its own directory, whose meta.json marks lines 2-4 as a batch the
    # collector's contention guard could only time while other processes took CPU.
    task_dir = tmp_path / "records" / "llvm-test" / "mm"
    shutil.copytree(SEED, task_dir)
    lines = (task_dir / layout.RECORD_FILE).read_text().splitlines()
    (task_dir / layout.META_FILE).write_text(json.dumps({"disturbed_lines": [[2, 4]]}))
    before = (task_dir / layout.RECORD_FILE).read_bytes()
    cache = tmp_path / "cache"
    ds = build_dataset(tmp_path / "records", cache_dir=cache)
    (task,) = ds.tasks
    assert task.lines.tolist() == [1, *range(5, len(lines) + 1)]
    assert ds.skips.by_kind() == {"disturbed": 3}
    assert (task_dir / layout.RECORD_FILE).read_bytes() == before  # records are only read
    # the mark is read at every build: once it is gone, the cached graphs come back
    (task_dir / layout.META_FILE).write_text(json.dumps({}))
    (task,) = build_dataset(tmp_path / "records", cache_dir=cache).tasks
    assert task.lines.tolist() == list(range(1, len(lines) + 1))
