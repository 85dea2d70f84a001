"""Keep some operator kinds' tasks of an older schedule library in a rebuilt one.

A library rebuilt from more records is not better for every kind at once: on rocketlake
(2026-12-05, commit d92b2dd, benchmarks/whole_model/README.md) a rebuild from every record made
ResNet-18 faster (blocked convolutions, deeper convolution records), while its matrix-product
picks made One-Shot's BERT-base layer slower (11.45 against 9.48 ms with the older build's):
the fastest recent records of those tasks run slower inside the layer than alone.
:func:`keep_kinds` takes the chosen kinds' tasks from the older library and every other task
from the rebuild (``ms-meta library build --keep-from OLD --keep-kinds ...``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from ms_meta.feature.schema import OPERATOR_KINDS
from ms_meta.one_shot.library import LibraryError, ScheduleLibrary

__all__ = ["keep_kinds", "parse_kinds"]


def parse_kinds(text: str) -> tuple[str, ...]:
    """Comma-separated operator kinds (:data:`~ms_meta.feature.schema.OPERATOR_KINDS`) as a
    sorted tuple without repeats.

    Raises
    ------
    LibraryError
        On an empty list or a kind that is not an operator kind.
    """
    kinds = tuple(sorted({k.strip() for k in text.split(",") if k.strip()}))
    unknown = [k for k in kinds if k not in OPERATOR_KINDS]
    if unknown or not kinds:
        raise LibraryError(
            f"unknown operator kind(s) {', '.join(unknown) or repr(text)}; choose from "
            + ", ".join(OPERATOR_KINDS)
        )
    return kinds


def keep_kinds(
    built: ScheduleLibrary,
    old: ScheduleLibrary,
    kinds: Iterable[str],
    *,
    source: str | os.PathLike | None = None,
) -> ScheduleLibrary:
    """``built`` with each of its tasks of ``kinds`` replaced by ``old``'s task of the same name
    (kept as ``built``'s where ``old`` lacks it), in ``built``'s order.

    A task ``old`` holds that ``built`` does not is not added: the rebuild's task list stands.
    ``meta["kept_from"]`` records ``source`` (the old library's file), when ``old`` was built,
    the kinds and how many tasks were kept.

    Parameters
    ----------
    built : ScheduleLibrary
        The rebuilt library (its other kinds' tasks, and its ``meta``, are the result's).
    old : ScheduleLibrary
        The library whose tasks of ``kinds`` are kept.
    kinds : iterable of str
        Operator kinds (a task's ``kind``) to take from ``old``.
    source : str or path-like, optional
        Where ``old`` was read from, for ``meta``.

    Returns
    -------
    ScheduleLibrary
        A new library; ``built`` and ``old`` are left as they are.
    """
    kinds = frozenset(kinds)
    olds = {task.name: task for task in old.tasks}
    tasks = [
        olds[task.name] if task.kind in kinds and task.name in olds else task
        for task in built.tasks
    ]
    kept = sum(new is not task for new, task in zip(tasks, built.tasks, strict=True))
    meta = dict(built.meta)
    meta["kept_from"] = {
        "path": None if source is None else str(source),
        "created": old.meta.get("created"),
        "kinds": sorted(kinds),
        "tasks": kept,
    }
    return ScheduleLibrary(tasks=tasks, meta=meta)
