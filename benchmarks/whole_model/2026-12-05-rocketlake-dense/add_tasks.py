"""Add tasks built from some record folders to a schedule library, every other task kept.

``ms-meta library build --keep-from`` rebuilds every task from the record tree and keeps
chosen kinds from an older library; this adds the tasks of the folders named and leaves the
older library's tasks exactly as they are (the convolutions' among them)::

    python add_tasks.py ms_meta/weights/llvm-rocketlake.library.json.gz \\
        tuning_records/llvm-rocketlake-2c/matmul_bias_prepacked_128_768_768 ... --out NEW
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["main"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("library", type=Path)
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from ms_meta.one_shot.library import ScheduleLibrary, build_library, load_library

    old = load_library(args.library)
    added = build_library(args.folders)
    names = {task.name for task in added.tasks}
    tasks = [task for task in old.tasks if task.name not in names] + added.tasks
    meta = dict(old.meta)
    meta["added"] = {
        "tasks": sorted(names),
        "sources": [str(p) for p in args.folders],
        "created": added.meta.get("created"),
    }
    ScheduleLibrary(tasks, meta).save(args.out)
    for task in added.tasks:
        best = task.best_seconds * 1e3
        print(f"{task.name}: {len(task.schedules)} schedules, best {best:.3f} ms")
    kept = len(tasks) - len(names)
    print(f"{len(tasks)} tasks ({kept} kept, {len(names)} added) -> {args.out}")


if __name__ == "__main__":
    main()
