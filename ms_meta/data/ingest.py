"""Copy existing single-task MetaSchedule databases into the record tree, naming their origin.

Records measured elsewhere (the seed records) join a task folder like a collector's: appended
under the task lock, with ``meta.json``'s ``ingested`` map naming where they came from, so
that the data set keeps their labels apart from those measured here.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ms_meta.atomic import atomic_write_json
from ms_meta.data.layout import META_FILE, RECORD_FILE, WORKLOAD_FILE
from ms_meta.data.task_files import count_lines, task_lock
from ms_meta.data.task_meta import workload_meta

__all__ = ["ingest_seed_task"]

logger = logging.getLogger(__name__)


def ingest_seed_task(source: Path, root: Path, origin: str) -> tuple[str, int]:
    """Append the records of ``source`` (one task, named as in ``workloads.NAMED``) to
    ``root/<target-key>/<task>/``. Idempotent: a source already ingested is skipped.

    Returns the task name and the number of records added.
    """
    from tvm.target import Target

    from ms_meta.tuning.target import target_key
    from ms_meta.workloads import resolve_one

    workload = resolve_one(source.name)
    record_lines = [
        line for line in (source / RECORD_FILE).read_text().splitlines() if line.strip()
    ]
    workload_lines = [
        line for line in (source / WORKLOAD_FILE).read_text().splitlines() if line.strip()
    ]
    if len(workload_lines) != 1:
        raise ValueError(f"{source}: expected one workload, found {len(workload_lines)}")
    target = Target(json.loads(record_lines[0])[1][2])
    task_dir = root / target_key(target) / workload.name
    with task_lock(task_dir):
        meta_path = task_dir / META_FILE
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        sources = meta.setdefault("ingested", {})
        if str(source.name) in sources:
            return workload.name, 0
        existing_records = count_lines(task_dir / RECORD_FILE)
        if existing_records > 0:
            # Record lines refer to workload index 0 of their own file: only safe to append when
            # this task's workload file holds the same single workload.
            existing = (task_dir / WORKLOAD_FILE).read_text().splitlines()[0]
            if json.loads(existing)[0] != json.loads(workload_lines[0])[0]:
                raise ValueError(f"{task_dir}: workload differs from {source}")
        else:
            (task_dir / WORKLOAD_FILE).write_text(workload_lines[0] + "\n")
        with open(task_dir / RECORD_FILE, "a") as f:
            for line in record_lines:
                f.write(line + "\n")
        source_meta = json.loads((source / META_FILE).read_text()) if (
            source / META_FILE).exists() else {}  # fmt: skip
        sources[str(source.name)] = {
            # where its records start: they were measured elsewhere, and the dataset keeps
            # their labels apart from this directory's own (dataset.measurement_sources)
            "first_line": existing_records + 1,
            "records": len(record_lines),
            "origin": origin,
            "secs": float(source_meta.get("secs", 0.0)),
        }
        meta.update(workload_meta(workload, target))
        meta["records"] = count_lines(task_dir / RECORD_FILE)
        meta.setdefault("origin", origin)
        atomic_write_json(meta_path, meta)
        return workload.name, len(record_lines)
