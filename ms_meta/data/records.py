"""Robust, TVM-light reading of MetaSchedule JSON tuning databases, and the records it keeps.

MetaSchedule's own ``JSONDatabase`` aborts on the first bad line and decodes every IRModule on
load. This reader parses the two JSON-lines files with the :mod:`json` module, keeps every good
line, and counts each bad one in a :class:`SkipReport` (file, line, reason). TVM is imported only
when an IRModule or a :class:`~tvm.s_tir.meta_schedule.database.TuningRecord` is asked for.

Input files are only ever opened for reading.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ms_meta.data import layout
from ms_meta.data.layout import DatabaseFiles, UnreadableFolder
from ms_meta.data.record_lines import (
    MALFORMED,
    REBUILD,
    SKIP_KINDS,
    STRUCTURE,
    UNDECODABLE_WORKLOAD,
    UNKNOWN_WORKLOAD,
    UNREADABLE,
    SkippedLine,
    SkipReport,
    check_record,
    check_workload,
    json_line,
    read_lines,
    with_last,
)
from ms_meta.errors import DatabaseError, first_line
from ms_meta.labels import cpu_label, target_label
from ms_meta.run_secs import is_failed

if TYPE_CHECKING:
    import tvm
    from tvm.s_tir.meta_schedule.database import TuningRecord, Workload

__all__ = [
    "MALFORMED",
    "REBUILD",
    "SKIP_KINDS",
    "STRUCTURE",
    "UNDECODABLE_WORKLOAD",
    "UNKNOWN_WORKLOAD",
    "UNREADABLE",
    "LoadedDatabase",
    "Record",
    "RecordSet",
    "SkipReport",
    "SkippedLine",
    "WorkloadGroup",
    "canonical_json",
    "cpu_label",
    "iter_tuning_records",
    "load_database",
    "load_databases",
    "load_files",
    "target_label",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Record:
    """One tuning record as plain Python, as stored in ``database_tuning_record.json``.

    Attributes
    ----------
    trace : list
        The trace JSON ``[[inst, ...], [[inst_index, decision], ...]]``.
    run_secs : list of float or None
        Measured seconds per repeat; ``None`` when not stored.
    target : dict or None
        The target config the record was measured on.
    args_info : list or None
        ``[["TENSOR", dtype, shape], ...]``.
    line : int
        1-based line number in the record file.
    """

    trace: list[Any]
    run_secs: list[float] | None
    target: dict[str, Any] | None
    args_info: list[Any] | None
    line: int

    @property
    def failed(self) -> bool:
        """Whether the build or run failed (see :mod:`ms_meta.run_secs`)."""
        return is_failed(self.run_secs)

    @property
    def mean_secs(self) -> float | None:
        """Mean of ``run_secs`` (MetaSchedule ranks records by it); ``None`` for a failed run."""
        return None if self.failed else statistics.fmean(self.run_secs or ())

    def as_json(self) -> list[Any]:
        """``[trace, run_secs, target, args_info]``, the form ``TuningRecord.from_json`` takes."""
        return [self.trace, self.run_secs, self.target, self.args_info]

    def key(self) -> tuple[str, str]:
        """Identity of the measured schedule: canonical trace (with decisions) and target."""
        return canonical_json(self.trace), canonical_json(self.target)


@dataclass(eq=False)
class WorkloadGroup:
    """One workload of a database and its records.

    Attributes
    ----------
    database : LoadedDatabase
        The database it was read from.
    index : int
        0-based line index in the workload file (what the records refer to).
    shash : str
        The structural hash as stored (MetaSchedule recomputes it on load if it is stale).
    encoded : str
        The base64 IRModule, exactly as stored.
    line_text : str
        The workload line, verbatim (without the newline), for copying into another database.
    records : list of Record
        The usable records of this workload, in file order.
    task : str
        Task name: ``meta.json`` "task" (or "name"), else the directory name; ``[index]`` is
        appended when the database holds several workloads.
    """

    database: LoadedDatabase
    index: int
    shash: str
    encoded: str
    line_text: str
    records: list[Record] = field(default_factory=list)
    task: str = ""
    _workload: Workload | None = field(default=None, repr=False)
    _op_kind: str | None = field(default=None, repr=False)
    _rebuild_failed: set[int] = field(default_factory=set, repr=False)

    @property
    def num_failed(self) -> int:
        """Records whose run failed."""
        return sum(r.failed for r in self.records)

    @property
    def best_secs(self) -> float | None:
        """Lowest mean run time over the valid records, or ``None`` if there are none."""
        means = [m for r in self.records if (m := r.mean_secs) is not None]
        return min(means) if means else None

    @property
    def targets(self) -> Counter[str]:
        """Canonical target JSON -> record count."""
        return Counter(canonical_json(r.target) for r in self.records)

    def workload(self) -> Workload:
        """The MetaSchedule ``Workload`` (decoded on first use; imports TVM).

        Raises
        ------
        DatabaseError
            When TVM cannot decode the stored IRModule.
        """
        if self._workload is None:
            workload, reason = _decode_workload(self.shash, self.encoded)
            if workload is None:
                raise DatabaseError(
                    f"{self.database.files.workload}:{self.index + 1}: the workload does not "
                    f"decode: {reason}"
                )
            self._workload = workload
        return self._workload

    @property
    def mod(self) -> tvm.IRModule:
        """The workload's IRModule (decoded on first use; imports TVM)."""
        return self.workload().mod

    @property
    def op_kind(self) -> str:
        """Operator kind: ``meta.json`` "op", else inferred from the IRModule, else ``"other"``."""
        if self._op_kind is None:
            meta = self.database.meta or {}
            op = meta.get("op")
            self._op_kind = op if isinstance(op, str) and op else _infer_op_kind(self)
        return self._op_kind


@dataclass(eq=False)
class LoadedDatabase:
    """One database as read: its workloads with their records, and what was skipped."""

    files: DatabaseFiles
    meta: dict[str, Any] | None
    groups: list[WorkloadGroup] = field(default_factory=list)
    skips: SkipReport = field(default_factory=SkipReport)
    num_workload_lines: int = 0
    # Whether each file ends with a newline (appending must not glue onto its last line).
    workload_ends_newline: bool = True
    records_end_newline: bool = True

    @property
    def num_records(self) -> int:
        """Usable records."""
        return sum(len(g.records) for g in self.groups)

    @property
    def num_failed(self) -> int:
        """Usable records whose run failed."""
        return sum(g.num_failed for g in self.groups)

    @property
    def name(self) -> str:
        """The task or directory name, for messages."""
        return _meta_task(self.meta) or self.files.name


@dataclass
class RecordSet:
    """Several databases read together.

    Attributes
    ----------
    databases : list of LoadedDatabase
        In reading order.
    unreadable : list of UnreadableFolder
        Folders of the trees read that could not be read; a caller that writes what it read
        (``db merge``, ``library build``) refuses them unless told to skip them.
    """

    databases: list[LoadedDatabase] = field(default_factory=list)
    unreadable: list[UnreadableFolder] = field(default_factory=list)

    def unreadable_sources(self) -> list[str]:
        """The unreadable folders, and the databases whose record or workload file could not
        be read at all, one line each."""
        lines = [str(u) for u in self.unreadable]
        for db in self.databases:
            lines.extend(
                str(item)
                for item in db.skips.skipped
                if item.kind == UNREADABLE
                and not item.line
                and item.file.name != layout.META_FILE
                and item.file.exists()  # a missing workload file is another problem
            )
        return lines

    @property
    def groups(self) -> list[WorkloadGroup]:
        """All workloads of all databases, in reading order."""
        return [g for d in self.databases for g in d.groups]

    @property
    def skips(self) -> SkipReport:
        """The skip reports of all databases, summed (a new object on each access)."""
        total = SkipReport()
        for d in self.databases:
            total.extend(d.skips)
        return total

    @property
    def num_records(self) -> int:
        """Usable records."""
        return sum(d.num_records for d in self.databases)

    @property
    def num_failed(self) -> int:
        """Usable records whose run failed."""
        return sum(d.num_failed for d in self.databases)

    def tasks(self) -> dict[str, str]:
        """Task name -> operator kind, for every workload that has records."""
        return {g.task: g.op_kind for g in self.groups if g.records}


def canonical_json(obj: Any) -> str:
    """Compact JSON with sorted keys, used as an identity for traces and targets."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _meta_task(meta: dict[str, Any] | None) -> str | None:
    if not meta:
        return None
    for key in ("task", "name"):
        if isinstance(meta.get(key), str) and meta[key]:
            return meta[key]
    return None


def _decode_workload(shash: str, encoded: str) -> tuple[Workload | None, str]:
    """``Workload.from_json`` (imports TVM); on failure ``None`` and the first line of the error."""
    from tvm.s_tir import meta_schedule as ms

    try:
        return ms.database.Workload.from_json([shash, encoded]), ""
    except Exception as err:  # TVM raises ValueError/TVMError with a C++ backtrace
        return None, first_line(err)


def _infer_op_kind(group: WorkloadGroup) -> str:
    # ms_meta.feature.task may not exist in every build; "other" is the neutral kind.
    try:
        from ms_meta.feature.task import infer_operator_kind
    except ImportError as err:
        if err.name not in (None, "ms_meta.feature.task"):  # the module exists but is broken
            logger.warning(
                "cannot import ms_meta.feature.task (%s); operator kinds are 'other'", err
            )
        return "other"
    try:
        return str(infer_operator_kind(group.mod))
    except DatabaseError as err:
        logger.warning("%s; operator kind set to 'other'", err)
    except Exception:  # classification is best-effort; a bad module must not stop `db stats`
        logger.warning("cannot infer the operator of %s; using 'other'", group.task, exc_info=True)
    return "other"


def _read_workloads(db: LoadedDatabase) -> dict[int, WorkloadGroup | str]:
    """Workload line index -> group, or -> why that line is unusable."""
    path = db.files.workload
    slots: dict[int, WorkloadGroup | str] = {}
    if path is None:
        if db.files.records is not None:
            db.skips.add(
                db.files.directory / layout.WORKLOAD_FILE,
                0,
                UNREADABLE,
                "missing: the records have no workload file to refer to",
            )
        return slots
    for line, is_last in with_last(read_lines(path, db.skips)):
        index = line.number - 1
        db.num_workload_lines = line.number
        db.workload_ends_newline = line.complete
        obj = json_line(line, path, db.skips, is_last)
        if obj is None:
            slots[index] = f"workload line {line.number} is not valid JSON"
            continue
        problem = check_workload(obj)
        if problem is not None:
            db.skips.add(path, line.number, UNDECODABLE_WORKLOAD, problem)
            slots[index] = f"workload line {line.number} is unusable ({problem})"
            continue
        text = line.text.rstrip("\r\n") if line.text else ""
        slots[index] = WorkloadGroup(db, index, obj[0], obj[1], text)
    return slots


def _read_records(db: LoadedDatabase, slots: dict[int, WorkloadGroup | str]) -> None:
    path = db.files.records
    if path is None:
        return
    n = db.num_workload_lines
    for line, is_last in with_last(read_lines(path, db.skips)):
        db.records_end_newline = line.complete
        obj = json_line(line, path, db.skips, is_last)
        if obj is None:
            continue
        if not (isinstance(obj, list) and len(obj) == 2):
            db.skips.add(path, line.number, STRUCTURE, "expected [workload_index, record]")
            continue
        index, rec = obj
        if not isinstance(index, int) or isinstance(index, bool):
            db.skips.add(path, line.number, STRUCTURE, f"workload index {index!r} is not an int")
            continue
        if not 0 <= index < n:
            db.skips.add(
                path,
                line.number,
                UNKNOWN_WORKLOAD,
                f"workload index {index}, but the workload file has {n} line(s)",
            )
            continue
        slot = slots.get(index)
        if not isinstance(slot, WorkloadGroup):
            db.skips.add(path, line.number, UNDECODABLE_WORKLOAD, str(slot))
            continue
        problem = check_record(rec)
        if problem is not None:
            db.skips.add(path, line.number, STRUCTURE, problem)
            continue
        trace, run_secs, target, args_info = rec
        record = Record(trace, run_secs, target, args_info, line.number)
        slot.records.append(record)
        db.skips.failed_runs += record.failed
        db.skips.targets[canonical_json(target)] += 1


def _validate_with_tvm(db: LoadedDatabase) -> None:
    """Decode every workload and rebuild every record; drop (and report) what fails."""
    kept = []
    for group in db.groups:
        workload, reason = _decode_workload(group.shash, group.encoded)
        if workload is None:
            line = group.index + 1
            db.skips.add(
                db.files.workload or db.files.directory,
                line,
                UNDECODABLE_WORKLOAD,
                f"TVM cannot decode the IRModule: {reason}",
            )
            for record in group.records:
                db.skips.add(
                    db.files.records or db.files.directory,
                    record.line,
                    UNDECODABLE_WORKLOAD,
                    f"workload line {line} does not decode",
                )
            continue
        group._workload = workload
        good = [r for r in group.records if _rebuild(group, r) is not None]
        group.records[:] = good
        kept.append(group)
    db.groups[:] = kept
    _recount(db)


def _recount(db: LoadedDatabase) -> None:
    records = [r for g in db.groups for r in g.records]
    db.skips.failed_runs = sum(r.failed for r in records)
    db.skips.targets = Counter(canonical_json(r.target) for r in records)


def load_files(files: DatabaseFiles, *, parse_traces: bool = False) -> LoadedDatabase:
    """Read one database (see :func:`load_database`)."""
    db = LoadedDatabase(files=files, meta=None)
    try:
        db.meta = layout.read_meta(files.directory)
    except DatabaseError as err:
        db.skips.add(files.directory / layout.META_FILE, 0, UNREADABLE, str(err))
    slots = _read_workloads(db)
    _read_records(db, slots)
    db.groups = [g for _, g in sorted(slots.items()) if isinstance(g, WorkloadGroup)]
    base = _meta_task(db.meta) or (files.directory.resolve().name or "database")
    for group in db.groups:
        group.task = base if db.num_workload_lines == 1 else f"{base}[{group.index}]"
    if parse_traces:
        _validate_with_tvm(db)
    if db.skips.skipped:
        logger.info("%s: %s", files.directory, db.skips.summary())
    return db


def load_databases(
    paths: Iterable[str | os.PathLike[str] | DatabaseFiles], *, parse_traces: bool = False
) -> RecordSet:
    """Read several databases into one :class:`RecordSet` (each database read once).

    See :func:`load_database` for the parameters. Folders of a tree that cannot be read are
    listed in ``RecordSet.unreadable``; a tree holding nothing else gives no database, not an
    error.
    """
    seen: set[tuple[Path | None, Path | None]] = set()
    result = RecordSet()
    for path in paths:
        if isinstance(path, DatabaseFiles):
            found = [path]
        else:
            found = layout.resolve_databases(Path(path), unreadable=result.unreadable)
        for files in found:
            key = tuple(p.resolve() if p else None for p in (files.workload, files.records))
            if key in seen:
                continue
            seen.add(key)
            result.databases.append(load_files(files, parse_traces=parse_traces))
    return result


def load_database(
    path_or_dir: str | os.PathLike[str] | tuple[os.PathLike[str] | str, os.PathLike[str] | str],
    *,
    parse_traces: bool = False,
) -> RecordSet:
    """Read a tuning database, or every database under a directory, without ever raising on a line.

    Parameters
    ----------
    path_or_dir : path or (workload path, record path)
        A database directory, a directory searched recursively for databases (such as
        ``tuning_records/``), one record or workload file (its partner is found beside it), or an
        explicit ``(workload file, record file)`` pair. Files may be gzip-compressed (``.gz``).
    parse_traces : bool
        Also decode every workload and rebuild every record with TVM (slow: imports TVM and
        replays each trace); what fails is dropped and counted as skipped.

    Returns
    -------
    RecordSet
        The databases with their workloads and records; ``.skips`` counts what was left out.
        An empty database gives zero records; whether that is an error is the caller's choice.

    Raises
    ------
    DatabaseError
        When the path does not exist or holds no database.
    """
    if isinstance(path_or_dir, tuple):
        workload, records = path_or_dir
        return load_databases(
            [layout.database_pair(Path(workload), Path(records))], parse_traces=parse_traces
        )
    return load_databases([path_or_dir], parse_traces=parse_traces)


def _rebuild(group: WorkloadGroup, record: Record) -> TuningRecord | None:
    """``TuningRecord.from_json`` for one record; a failure is reported once and gives ``None``."""
    if record.line in group._rebuild_failed:
        return None
    from tvm.s_tir import meta_schedule as ms

    try:
        return ms.database.TuningRecord.from_json(record.as_json(), group.workload())
    except DatabaseError:
        raise
    except Exception as err:  # TVM raises ValueError/ScheduleError/TVMError for a bad trace
        group._rebuild_failed.add(record.line)
        group.database.skips.add(
            group.database.files.records or group.database.files.directory,
            record.line,
            REBUILD,
            f"TuningRecord.from_json failed: {first_line(err)}",
        )
        return None


def iter_tuning_records(recordset: RecordSet, workload: WorkloadGroup) -> Iterator[TuningRecord]:
    """MetaSchedule ``TuningRecord`` objects of one workload (imports TVM).

    Records whose trace does not rebuild are skipped and counted (once) in ``recordset.skips``.

    Parameters
    ----------
    recordset : RecordSet
        The set ``workload`` belongs to.
    workload : WorkloadGroup
        One of ``recordset.groups``.

    Raises
    ------
    DatabaseError
        When the workload itself does not decode, or does not belong to ``recordset``.
    """
    if not any(workload.database is d for d in recordset.databases):
        raise DatabaseError(f"workload {workload.task!r} is not part of this record set")
    for record in workload.records:
        built = _rebuild(workload, record)
        if built is not None:
            yield built
