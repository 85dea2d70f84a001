"""A schedule library whose convolution tasks come from one library and every other task from
another: how the shipped rocketlake library of 2026-12-05 was made.

Usage: python benchmarks/whole_model/merge_libraries.py CONV_LIBRARY OTHER_LIBRARY --out FILE

The convolution tasks (every kind starting with ``conv2d`` or ``depthwise``) are taken from
CONV_LIBRARY; a task of another kind is taken from OTHER_LIBRARY where it holds it, else from
CONV_LIBRARY. Why: a library rebuilt from every record made ResNet-18 1.39x faster (blocked
convolutions, deeper convolution records), while its matrix-product picks made the BERT-base
layer slower (11.5 against 9.5 ms with the older build's), the fastest recent records of those
tasks running slower inside the layer than alone; see docs/log.md.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone

from ms_meta.one_shot.library import ScheduleLibrary, load_library


def is_convolution(kind: str) -> bool:
    return kind.startswith(("conv2d", "depthwise"))


def merge(conv: ScheduleLibrary, other: ScheduleLibrary) -> ScheduleLibrary:
    """``conv``'s convolution tasks and ``other``'s tasks of other kinds (``conv``'s where
    ``other`` lacks one), in ``conv``'s order."""
    others = {t.name: t for t in other.tasks}
    tasks = [t if is_convolution(t.kind) else others.get(t.name, t) for t in conv.tasks]
    meta = dict(conv.meta)
    meta["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    kept = sum(1 for t in conv.tasks if not is_convolution(t.kind) and t.name in others)
    meta["merged"] = {
        "convolutions_from": conv.meta.get("created"),
        "others_from": other.meta.get("created"),
        "tasks_from_others": kept,
    }
    return ScheduleLibrary(tasks=tasks, meta=meta)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("conv_library")
    parser.add_argument("other_library")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    merged = merge(load_library(args.conv_library), load_library(args.other_library))
    merged.save(args.out)
    print(f"{args.out}: {len(merged.tasks)} tasks, {merged.meta['merged']['tasks_from_others']} "
          f"from {args.other_library}")  # fmt: skip


if __name__ == "__main__":
    main()
