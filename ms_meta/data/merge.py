"""``ms-meta db merge``: several tuning databases into one standard MetaSchedule database.

Workload lines are copied verbatim and the records' workload indices remapped; duplicates
(same workload, trace and target) are dropped. A new database is written atomically; appending
to an existing one only adds lines, holding the task folder's lock
(:func:`~ms_meta.data.task_files.task_lock`) so that a collector writing the same folder never
interleaves its lines with the merge's. A merge that would write nothing new from an empty
source, or silently leave out folders it cannot read, is refused.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ms_meta.atomic import atomic_write_text
from ms_meta.data import layout
from ms_meta.data.records import LoadedDatabase, Record, RecordSet, load_databases, load_files
from ms_meta.data.task_files import TaskLockedError, task_lock
from ms_meta.errors import DatabaseError

__all__ = ["MergeResult", "merge_databases"]

logger = logging.getLogger(__name__)

# How long an append waits for a collector writing the same folder before it refuses.
LOCK_WAIT_SEC = 5.0


@dataclass
class MergeResult:
    """What :func:`merge_databases` wrote."""

    out: Path
    workloads_added: int = 0
    records_added: int = 0
    duplicates: int = 0
    existing_records: int = 0
    skipped_lines: int = 0


def _record_line(index: int, record: Record) -> str:
    return json.dumps([index, record.as_json()], separators=(",", ":"))


def _append(path: Path, lines: list[str], ends_with_newline: bool) -> None:
    if not lines:
        return
    text = ("" if ends_with_newline else "\n") + "".join(line + "\n" for line in lines)
    if path.name.endswith(layout.GZIP_SUFFIX):
        with open(path, "ab") as raw, gzip.GzipFile(fileobj=raw, mode="wb") as f:
            f.write(text.encode("utf-8"))  # a new gzip member; readers see one stream
    else:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)


def merge_databases(
    sources: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    append: bool = False,
    skip_unreadable: bool = False,
    lock_wait_sec: float = LOCK_WAIT_SEC,
) -> MergeResult:
    """Merge databases into one standard MetaSchedule database, without duplicates.

    Workload lines are copied verbatim (no IRModule is re-serialized) and the records' workload
    indices remapped. A record is a duplicate when its workload's structural hash, its trace
    (with decisions) and its target equal those of a record already taken; the first is kept.
    Unreadable source lines are left out and counted.

    Parameters
    ----------
    sources : sequence of path
        Databases, trees of databases or record files.
    out : path
        The directory to write ``database_workload.json`` and ``database_tuning_record.json`` to.
    append : bool
        Allow ``out`` to hold a database already; then only records not yet in it are appended
        (existing lines are never rewritten), holding ``out``'s task lock.
    skip_unreadable : bool
        Merge the rest when a source folder (or a database file in it) cannot be read; by
        default that is refused, since the result would silently lack its records.
    lock_wait_sec : float
        How long to wait for another writer of ``out`` (a collector) to let go of its lock.

    Raises
    ------
    DatabaseError
        When ``out`` holds a database and ``append`` is false, when the database in ``out``
        has unreadable lines (appending to it would index the wrong workloads), when a source
        is missing, holds no record, or (without ``skip_unreadable``) cannot be read, or when
        another process keeps ``out`` locked.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DatabaseError(f"--out {out} is a file, not a directory")
    if layout.is_database_dir(out) and not append:
        raise DatabaseError(
            f"{out} already holds a tuning database; pass --append to add the new records "
            "to it, or choose an empty directory"
        )
    recordset = load_databases(sources)
    unreadable = recordset.unreadable_sources()
    if unreadable and not skip_unreadable:
        raise DatabaseError(
            f"cannot merge: {len(unreadable)} source folder(s) cannot be read "
            f"({'; '.join(unreadable)}); fix them, or pass --skip-unreadable to merge the rest"
        )
    for text in unreadable:
        logger.warning("left out, cannot be read: %s", text)
    if recordset.num_records == 0:
        raise DatabaseError(
            "nothing to merge: the sources hold no usable tuning record "
            f"({', '.join(map(str, sources))}; {recordset.skips.summary()})"
        )
    if not out.is_dir():  # a new directory: no other writer can hold it yet
        return _merge_into(out, recordset, existing=None)
    _existing_database(out)  # refuse a damaged destination before touching it
    try:
        with task_lock(out, wait_sec=lock_wait_sec):
            return _merge_into(out, recordset, _existing_database(out))
    except TaskLockedError:
        raise DatabaseError(
            f"cannot merge into {out}: another process (a collector) is writing it; "
            "try again when it has finished"
        ) from None


def _existing_database(out: Path) -> LoadedDatabase | None:
    """The database already in ``out``, or None; refused when it has unreadable lines."""
    if not layout.is_database_dir(out):
        return None
    existing = load_files(layout.database_files(out))
    if existing.skips.skipped:
        raise DatabaseError(
            f"cannot append to {out}: {existing.skips.summary()} "
            f"(run `ms-meta db validate {out}`); merge into a new directory instead"
        )
    return existing


def _merge_into(out: Path, recordset: RecordSet, existing: LoadedDatabase | None) -> MergeResult:
    """Write the records of ``recordset`` that ``existing`` lacks (call it holding the lock)."""
    result = MergeResult(out=out, skipped_lines=recordset.skips.num_skipped)
    workload_index: dict[str, int] = {}
    seen: set[tuple[str, str, str]] = set()
    next_index = 0
    if existing is not None:
        next_index = existing.num_workload_lines
        for group in existing.groups:
            workload_index.setdefault(group.shash, group.index)
            for record in group.records:
                seen.add((group.shash, *record.key()))
        result.existing_records = existing.num_records

    new_workloads: list[str] = []
    new_records: list[str] = []
    for group in recordset.groups:
        if group.shash not in workload_index:
            workload_index[group.shash] = next_index
            next_index += 1
            new_workloads.append(group.line_text)
        index = workload_index[group.shash]
        for record in group.records:
            key = (group.shash, *record.key())
            if key in seen:
                result.duplicates += 1
                continue
            seen.add(key)
            new_records.append(_record_line(index, record))
    result.workloads_added = len(new_workloads)
    result.records_added = len(new_records)

    try:
        _write_merged(out, existing, new_workloads, new_records)
    except OSError as err:
        raise DatabaseError(f"cannot write the merged database to {out}: {err}") from None
    logger.info(
        "merged into %s: %d workloads and %d records added, %d duplicates",
        out,
        result.workloads_added,
        result.records_added,
        result.duplicates,
    )
    return result


def _write_merged(
    out: Path, existing: LoadedDatabase | None, workloads: list[str], records: list[str]
) -> None:
    if existing is None:
        out.mkdir(parents=True, exist_ok=True)
        # Workloads first: a record file never refers to a workload file that is not there yet.
        atomic_write_text(out / layout.WORKLOAD_FILE, "".join(line + "\n" for line in workloads))
        atomic_write_text(out / layout.RECORD_FILE, "".join(line + "\n" for line in records))
    else:
        files = existing.files
        _append(
            files.workload or out / layout.WORKLOAD_FILE,
            workloads,
            existing.workload_ends_newline,
        )
        _append(files.records or out / layout.RECORD_FILE, records, existing.records_end_newline)
