"""Task-level held-out splits: whole tasks go to training or to evaluation, never both."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ms_meta.atomic import atomic_write_text
from ms_meta.data.layout import DATASET_FORMAT_VERSION
from ms_meta.errors import DatabaseError, MsMetaError

SPLIT_KIND = "by_task"

#: Operators that are another operator plus an epilogue: a task of one kind and the task of the
#: other kind with the same shape run the same main loop nest, so a split keeps them together.
_SAME_MAIN_LOOP_NEST = {"conv2d_bias_relu": "conv2d_nchw"}


def shape_family(task: str, op: str) -> str:
    """The family of a task: tasks of one family always land on the same side of a split.

    A task named ``<op>_<shape>`` (the collector's names) whose operator only adds an epilogue
    to another operator (``conv2d_bias_relu`` to ``conv2d_nchw``) shares the family of that
    operator's task with the same shape; any other task is its own family.
    """
    base = _SAME_MAIN_LOOP_NEST.get(op)
    prefix = op + "_"
    if base is not None and task.startswith(prefix):
        return base + "_" + task[len(prefix) :]
    return task


def _held_out_count(n: int, fraction: float) -> int:
    """How many of ``n`` tasks of one operator kind to hold out.

    Rounded share of ``n``, but at least one task stays for training when there are two or more,
    and (for a non-zero fraction) at least one is held out when there are three or more.
    """
    k = round(n * fraction)
    if fraction > 0 and n >= 3:
        k = max(k, 1)
    if n >= 2:
        k = min(k, n - 1)
    return max(0, min(k, n))


def make_task_split(
    tasks: Mapping[str, str], held_out_fraction: float = 0.2, seed: int = 0
) -> dict[str, Any]:
    """Split whole tasks into training and held-out sets, stratified by operator kind.

    Tasks of one :func:`shape_family` (a fused conv2d and the plain conv2d of the same shape)
    move together, so no held-out task has a training twin with the same main loop nest; a family
    counts towards the kind of its first task by name.

    Deterministic: families are sorted by name within each kind, kinds are visited in sorted
    order, and one ``numpy.random.Generator(seed)`` permutes each kind.

    Parameters
    ----------
    tasks : mapping of str to str
        Task name -> operator kind.
    held_out_fraction : float
        Share of each kind's tasks to hold out, in ``[0, 1)``.
    seed : int
        Seed of the permutation.

    Returns
    -------
    dict
        ``{"split": "by_task", "train": [...], "held_out": [...], "seed": seed,
        "fraction": held_out_fraction, "ops": {task: kind}}`` with sorted task lists.

    Raises
    ------
    ValueError
        When the fraction is outside ``[0, 1)`` or there are no tasks.
    """
    if not 0 <= held_out_fraction < 1:
        raise ValueError(f"held_out_fraction must be in [0, 1), got {held_out_fraction}")
    if not tasks:
        raise ValueError("no tasks to split")
    rng = np.random.default_rng(seed)
    families: dict[str, list[str]] = {}
    for name in sorted(tasks):
        families.setdefault(shape_family(name, tasks[name]), []).append(name)
    by_kind: dict[str, list[list[str]]] = {}
    for family in sorted(families):
        members = families[family]
        by_kind.setdefault(tasks[members[0]], []).append(members)
    train: list[str] = []
    held_out: list[str] = []
    for kind in sorted(by_kind):
        groups = by_kind[kind]
        order = rng.permutation(len(groups))
        k = _held_out_count(len(groups), held_out_fraction)
        held_out.extend(name for i in order[:k] for name in groups[i])
        train.extend(name for i in order[k:] for name in groups[i])
    return {
        "split": SPLIT_KIND,
        "train": sorted(train),
        "held_out": sorted(held_out),
        "seed": seed,
        "fraction": held_out_fraction,
        "ops": {name: tasks[name] for name in sorted(tasks)},
    }


def extend_task_split(
    existing: Mapping[str, Any],
    tasks: Mapping[str, str],
    held_out_fraction: float | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
    """``existing`` with the tasks it does not name yet added; no task changes side.

    A library grows, and re-splitting from scratch would move tasks between sides (and so
    quietly change what every held-out figure measures). A new task whose shape family already
    has a side joins it; the other new tasks are split among themselves by
    :func:`make_task_split`, with the existing split's fraction and seed unless given.

    Returns
    -------
    dict
        The extended split; ``"extended"`` lists the tasks this call added.
    """
    sides = {name: side for side in ("train", "held_out") for name in existing.get(side, [])}
    fraction = existing.get("fraction", 0.2) if held_out_fraction is None else held_out_fraction
    seed = int(existing.get("seed", 0)) if seed is None else seed
    ops = {**existing.get("ops", {}), **tasks}
    family_side = {shape_family(n, ops.get(n, "")): side for n, side in sides.items()}
    new = {n: op for n, op in tasks.items() if n not in sides}
    fresh: dict[str, str] = {}
    for name, op in new.items():
        side = family_side.get(shape_family(name, op))
        if side is not None:
            sides[name] = side
        else:
            fresh[name] = op
    if fresh:
        part = make_task_split(fresh, held_out_fraction=fraction, seed=seed)
        sides.update({n: "train" for n in part["train"]})
        sides.update({n: "held_out" for n in part["held_out"]})
    return {
        **{k: v for k, v in existing.items() if k != "format_version"},
        "train": sorted(n for n, side in sides.items() if side == "train"),
        "held_out": sorted(n for n, side in sides.items() if side == "held_out"),
        "ops": {name: ops[name] for name in sorted(ops) if name in sides},
        "extended": sorted(new),
    }


def write_split(path: str | os.PathLike[str], split: Mapping[str, Any]) -> Path:
    """Write a split as JSON, atomically (a temporary file, then ``os.replace``).

    Returns
    -------
    Path
        The written path.

    Raises
    ------
    MsMetaError
        When the file cannot be written.
    """
    path = Path(path)
    payload = {"format_version": DATASET_FORMAT_VERSION, **split}
    if not path.parent.is_dir():  # a typo in the folder is not a reason to create one
        raise MsMetaError(f"cannot write the split to {path}: no folder {path.parent}")
    try:
        atomic_write_text(path, json.dumps(payload, indent=2) + "\n")
    except OSError as err:
        raise MsMetaError(f"cannot write the split to {path}: {err}") from None
    return path


def read_split(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a split written by :func:`write_split`.

    Raises
    ------
    MsMetaError
        When the file is missing, not JSON, lacks ``train``/``held_out``, or was written by a
        newer format version.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            split = json.load(f)
    except FileNotFoundError:
        raise MsMetaError(f"split file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MsMetaError(f"cannot read split file {path}: {err}") from None
    if not isinstance(split, dict) or not all(
        isinstance(split.get(k), list) for k in ("train", "held_out")
    ):
        raise MsMetaError(f"{path} is not a task split: it needs 'train' and 'held_out' lists")
    version = split.get("format_version", DATASET_FORMAT_VERSION)
    if not isinstance(version, int) or version > DATASET_FORMAT_VERSION:
        raise MsMetaError(
            f"{path} has split format version {version!r}; this ms-meta reads up to "
            f"{DATASET_FORMAT_VERSION}"
        )
    overlap = set(split["train"]) & set(split["held_out"])
    if overlap:
        raise MsMetaError(f"{path}: tasks both in train and held_out: {sorted(overlap)}")
    return split


def split_databases(
    paths: Sequence[str | os.PathLike[str]], held_out_fraction: float = 0.2, seed: int = 0
) -> dict[str, Any]:
    """:func:`make_task_split` of the tasks with records in the databases at ``paths``.

    Raises
    ------
    DatabaseError
        When a path is missing or the databases hold no records.
    """
    from ms_meta.data.records import load_databases

    tasks = load_databases(paths).tasks()
    if not tasks:
        raise DatabaseError("no task with tuning records to split in " + ", ".join(map(str, paths)))
    return make_task_split(tasks, held_out_fraction=held_out_fraction, seed=seed)


def records_after_line(lines: np.ndarray, after_line: int) -> np.ndarray:
    """Indices of the records on lines after ``after_line`` (1-based record-file lines, one per
    record), in record-file order: the records a search measured after its first
    ``after_line``, in the order it measured them.

    Shapes: ``lines [n]`` int -> ``[m]`` int64.
    """
    lines = np.asarray(lines, np.int64)
    picked = np.nonzero(lines > after_line)[0]
    return picked[np.argsort(lines[picked], kind="stable")].astype(np.int64)
