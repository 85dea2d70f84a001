"""``ms-meta library``: build and inspect One-Shot's schedule libraries."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import click

from ms_meta.cli.options import FILE_PATH, library_errors, paths_argument
from ms_meta.feature.schema import OPERATOR_KINDS

__all__ = ["library"]


@click.group("library")
def library() -> None:
    """Build and inspect schedule libraries: the best measured schedules of many tasks, which
    One-Shot replays on a new task's nearest neighbours and lets the model choose among."""


@library.command(
    "build",
    epilog="""\b
Examples:
  ms-meta library build tuning_records/llvm-znver4-noavx512-2c \\
      --out ms_meta/weights/llvm-znver4-noavx512.library.json.gz
  ms-meta library build tuning_records/llvm-znver4-noavx512-2c \\
      --split tuning_records/llvm-rocketlake-2c/split.json --out split.library.json.gz
  ms-meta library build my_tuning_runs/ --out mine.library.json.gz

\b
Rebuild the convolutions only, keeping the other kinds' tasks of the shipped library:
  ms-meta library build tuning_records/llvm-rocketlake-2c \\
      --keep-from ms_meta/weights/llvm-rocketlake.library.json.gz \\
      --keep-kinds dense,batch_matmul,softmax,layer_norm,pool,elementwise,other \\
      --out rebuilt.library.json.gz
""",
)
@paths_argument
@click.option("--out", "out", required=True, type=FILE_PATH,
              help="The library file to write (gzip JSON; replaced atomically).")  # fmt: skip
@click.option("--split", "split_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Keep only the split's training tasks (for evaluating One-Shot "
              "on its held-out tasks).")  # fmt: skip
@click.option("--per-task", type=click.IntRange(1), default=8, show_default=True,
              help="The fastest measured schedules kept per task.")  # fmt: skip
@click.option("--skip-unreadable", is_flag=True,
              help="Build from the readable sources when a folder or database file cannot be "
                   "read (each is named in a warning); without it such sources are "
                   "refused.")  # fmt: skip
@click.option("--keep-from", "keep_from", type=click.Path(exists=True, dir_okay=False,
              path_type=Path), default=None, metavar="LIBRARY",
              help="An older library whose tasks of --keep-kinds replace the rebuilt ones of the "
                   "same name (the rebuild's where it lacks one); e.g. to rebuild the "
                   "convolutions alone.")  # fmt: skip
@click.option("--keep-kinds", "keep_kinds", default=None, metavar="KIND,...",
              help="--keep-from: the operator kinds taken from it, comma-separated "
                   f"({', '.join(OPERATOR_KINDS)}).")  # fmt: skip
@library_errors
def build(paths, out, split_path, per_task, skip_unreadable, keep_from, keep_kinds) -> None:
    """Build a library from tuning databases: tuning_records/<cpu>/, a database directory, or
    any directory holding MetaSchedule JSON databases (such as your own ms.tune_tir work
    directories). Inputs are only read."""
    from ms_meta.cli.progress import Progress
    from ms_meta.data.split import read_split
    from ms_meta.one_shot import library_keep
    from ms_meta.one_shot.library import build_library, load_library

    if (keep_from is None) != (keep_kinds is None):
        raise click.UsageError("--keep-from and --keep-kinds go together")
    kinds = None if keep_kinds is None else library_keep.parse_kinds(keep_kinds)
    old = None if keep_from is None else load_library(keep_from)  # before the long build
    tasks, meta = None, {}
    if split_path is not None:
        tasks = read_split(split_path)["train"]
        meta["split"] = {"path": str(split_path), "kept": "train", "tasks": len(tasks)}
    bar = Progress(0, "tasks")
    try:
        built = build_library(paths, tasks=tasks, per_task=per_task, meta=meta,
                              progress=bar.follow, skip_unreadable=skip_unreadable)  # fmt: skip
    finally:
        bar.close()
    if old is not None:
        built = library_keep.keep_kinds(built, old, kinds, source=keep_from)
    built.save(out)
    counts = Counter(t.kind for t in built.tasks)
    click.echo(f"{out}: {len(built.tasks)} tasks, {built.num_schedules} schedules "
               f"({', '.join(f'{n} {k}' for k, n in sorted(counts.items()))})")  # fmt: skip
    if old is not None:
        click.echo(f"  {built.meta['kept_from']['tasks']} tasks of {', '.join(kinds)} kept from "
                   f"{keep_from}")  # fmt: skip


@library.command("show")
@click.argument("path", type=click.Path(path_type=Path))
@library_errors
def show(path) -> None:
    """Print what a library holds and where it came from."""
    from ms_meta.one_shot.library import load_library

    loaded = load_library(path)
    meta = loaded.meta
    click.echo(f"{path}: {len(loaded.tasks)} tasks, {loaded.num_schedules} schedules")
    click.echo(f"  built {meta.get('created', '?')} from {', '.join(meta.get('sources', []))}")
    split = meta.get("split")
    if split:
        where = split.get("path", split) if isinstance(split, dict) else split
        click.echo(f"  only the training tasks of {where}")
    target = meta.get("target") or {}
    click.echo(f"  measured on: {target.get('kind', '?')} mcpu={target.get('mcpu', '?')}")
    kept = meta.get("kept_from")
    if kept:
        click.echo(f"  {kept['tasks']} tasks of {', '.join(kept['kinds'])} kept from "
                   f"{kept['path']} (built {kept.get('created') or '?'})")  # fmt: skip
    damaged = meta.get("damaged")
    if damaged:
        click.echo(f"  damaged: {damaged['tasks']} tasks left out (first: {damaged['first']})")
    kinds = Counter(t.kind for t in loaded.tasks)
    for kind, count in sorted(kinds.items()):
        click.echo(f"  {kind}: {count} tasks")
