"""Robust, TVM-light reading of MetaSchedule JSON tuning databases, and the ``db`` tools on top.

MetaSchedule's own ``JSONDatabase`` aborts on the first bad line and decodes every IRModule on
load. This reader parses the two JSON-lines files with the :mod:`json` module, keeps every good
line, and counts each bad one in a :class:`SkipReport` (file, line, reason). TVM is imported only
when an IRModule or a :class:`~tvm.s_tir.meta_schedule.database.TuningRecord` is asked for.

Input files are only ever opened for reading.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import logging
import os
import statistics
import struct
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ms_meta.data import layout
from ms_meta.data.layout import DatabaseFiles
from ms_meta.errors import DatabaseError, first_line
from ms_meta.run_secs import is_failed

if TYPE_CHECKING:
    import tvm
    from tvm.s_tir.meta_schedule.database import TuningRecord, Workload

logger = logging.getLogger(__name__)


# Kinds of skipped lines (the ``kind`` of a :class:`SkippedLine`).
MALFORMED = "malformed"  # not JSON (garbled, truncated), not UTF-8, or blank
STRUCTURE = "structure"  # valid JSON of the wrong shape
UNKNOWN_WORKLOAD = "unknown-workload"  # workload index outside the workload file
UNDECODABLE_WORKLOAD = "undecodable-workload"  # a workload line, or a record of one, unusable
REBUILD = "rebuild"  # TuningRecord.from_json failed (trace does not replay on the workload)
UNREADABLE = "unreadable"  # a whole file or its tail cannot be read (I/O, gzip), or is missing
SKIP_KINDS = (MALFORMED, STRUCTURE, UNKNOWN_WORKLOAD, UNDECODABLE_WORKLOAD, REBUILD, UNREADABLE)


# --------------------------------------------------------------------------------------------
# Data classes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SkippedLine:
    """One line (or, with ``line == 0``, one whole file) that was not used."""

    file: Path
    line: int
    kind: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else str(self.file)
        return f"{where}: {self.kind}: {self.reason}"


@dataclass
class SkipReport:
    """What was skipped while reading, plus the counts a reader of the data should know.

    Attributes
    ----------
    skipped : list of SkippedLine
        Every unusable line, in reading order.
    failed_runs : int
        Records kept but whose run failed (``run_secs`` missing, empty or >= 1e9).
    targets : Counter
        Canonical target JSON -> number of records measured on it.
    """

    skipped: list[SkippedLine] = field(default_factory=list)
    failed_runs: int = 0
    targets: Counter[str] = field(default_factory=Counter)

    def add(self, file: Path, line: int, kind: str, reason: str) -> None:
        """Record one skipped line."""
        item = SkippedLine(Path(file), line, kind, reason)
        logger.debug("skipped %s", item)
        self.skipped.append(item)

    @property
    def num_skipped(self) -> int:
        """Number of skipped lines (and unreadable files)."""
        return len(self.skipped)

    @property
    def num_targets(self) -> int:
        """Number of distinct targets among the records kept."""
        return len(self.targets)

    def by_kind(self) -> dict[str, int]:
        """Skipped lines per kind, only kinds that occur."""
        counts = Counter(item.kind for item in self.skipped)
        return {kind: counts[kind] for kind in SKIP_KINDS if counts[kind]}

    def extend(self, other: SkipReport) -> None:
        """Add another report's counts to this one."""
        self.skipped.extend(other.skipped)
        self.failed_runs += other.failed_runs
        self.targets.update(other.targets)

    def summary(self) -> str:
        """A one-line summary, e.g. ``3 lines skipped (2 malformed, 1 unknown-workload)``."""
        kinds = ", ".join(f"{n} {kind}" for kind, n in self.by_kind().items())
        text = f"{self.num_skipped} lines skipped" + (f" ({kinds})" if kinds else "")
        return f"{text}; {self.failed_runs} failed runs; {self.num_targets} targets"


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
    """Several databases read together."""

    databases: list[LoadedDatabase] = field(default_factory=list)

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


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


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


@dataclass
class _Line:
    number: int
    text: str | None  # None when the bytes are not UTF-8
    complete: bool  # ended with a newline


def _read_lines(path: Path, skips: SkipReport) -> Iterator[_Line]:
    """Every line of a plain or gzip (possibly multi-member) file, read-only, never raising.

    An unreadable file, or an unreadable tail of a gzip stream, is reported in ``skips``.
    """
    opener = gzip.open if path.name.endswith(layout.GZIP_SUFFIX) else open
    number = 0
    try:
        with opener(path, "rb") as f:
            for raw in f:
                number += 1
                try:
                    text: str | None = raw.decode("utf-8")
                except UnicodeDecodeError:
                    text = None
                yield _Line(number, text, raw.endswith(b"\n"))
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        what = "the file cannot be read" if number == 0 else f"unreadable after line {number}"
        skips.add(path, number + 1 if number else 0, UNREADABLE, f"{what}: {err}")


def _json_line(line: _Line, path: Path, skips: SkipReport, is_last: bool) -> Any:
    """The JSON value of a line, or ``None`` (after reporting it) when it has none."""
    if line.text is None:
        skips.add(path, line.number, MALFORMED, "not UTF-8 text")
        return None
    if not line.text.strip():
        skips.add(path, line.number, MALFORMED, "blank line (MetaSchedule cannot load it)")
        return None
    try:
        return json.loads(line.text)
    except json.JSONDecodeError as err:
        truncated = is_last and not line.complete
        what = "truncated last line" if truncated else "not valid JSON"
        skips.add(path, line.number, MALFORMED, f"{what} ({err.msg} at column {err.colno})")
        return None


def _check_workload(obj: Any) -> str | None:
    """Why a parsed workload line is unusable, or ``None`` if it looks decodable (TVM-free)."""
    if not (isinstance(obj, list) and len(obj) == 2 and all(isinstance(x, str) for x in obj)):
        return 'expected ["<structural hash>", "<base64 IRModule>"]'
    shash, encoded = obj
    if not shash.lstrip("-").isdigit():
        return f"structural hash {shash[:30]!r} is not a decimal integer"
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return "the IRModule is not valid base64"
    if len(blob) < 8 or struct.unpack("<Q", blob[:8])[0] != len(blob) - 8:
        return "the IRModule's length prefix does not match its size (truncated?)"
    try:
        graph = json.loads(blob[8:])
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "the IRModule is not a JSON graph"
    if not isinstance(graph, dict) or "root_index" not in graph or "nodes" not in graph:
        return "the IRModule JSON has no root_index/nodes"
    return None


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check_record(rec: Any) -> str | None:
    """Why ``[trace, run_secs, target, args_info]`` is malformed, or ``None``."""
    if not (isinstance(rec, list) and len(rec) == 4):
        return "expected [trace, run_secs, target, args_info]"
    trace, run_secs, target, args_info = rec
    if not (isinstance(trace, list) and len(trace) == 2):
        return "trace must be [instructions, decisions]"
    insts, decisions = trace
    if not isinstance(insts, list) or not all(
        isinstance(i, list) and len(i) == 4 and isinstance(i[0], str) for i in insts
    ):
        return "trace instructions must be [name, inputs, attrs, outputs]"
    if not isinstance(decisions, list) or not all(
        isinstance(d, list) and len(d) == 2 and isinstance(d[0], int) for d in decisions
    ):
        return "trace decisions must be [instruction index, decision]"
    if run_secs is not None:
        if not isinstance(run_secs, list) or not all(_is_number(s) for s in run_secs):
            return "run_secs must be a list of numbers"
        if any(s < 0 for s in run_secs):
            return "run_secs has a negative time"
    if target is not None and not (
        isinstance(target, dict) and isinstance(target.get("kind"), str)
    ):
        return "target must be a JSON object with a 'kind'"
    if args_info is not None and not isinstance(args_info, list):
        return "args_info must be a list"
    return None


def _with_last(lines: Iterable[_Line]) -> Iterator[tuple[_Line, bool]]:
    """Pair each line with whether it is the last one."""
    previous: _Line | None = None
    for line in lines:
        if previous is not None:
            yield previous, False
        previous = line
    if previous is not None:
        yield previous, True


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
    for line, is_last in _with_last(_read_lines(path, db.skips)):
        index = line.number - 1
        db.num_workload_lines = line.number
        db.workload_ends_newline = line.complete
        obj = _json_line(line, path, db.skips, is_last)
        if obj is None:
            slots[index] = f"workload line {line.number} is not valid JSON"
            continue
        problem = _check_workload(obj)
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
    for line, is_last in _with_last(_read_lines(path, db.skips)):
        db.records_end_newline = line.complete
        obj = _json_line(line, path, db.skips, is_last)
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
        problem = _check_record(rec)
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

    See :func:`load_database` for the parameters.
    """
    seen: set[tuple[Path | None, Path | None]] = set()
    result = RecordSet()
    for path in paths:
        found = [path] if isinstance(path, DatabaseFiles) else layout.resolve_databases(Path(path))
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


# --------------------------------------------------------------------------------------------
# db stats
# --------------------------------------------------------------------------------------------


def cpu_label(target: dict[str, Any]) -> str | None:
    """The CPU (or GPU arch) a target dict builds for, e.g. ``rocketlake``; ``znver4-noavx512``
    when AVX-512 is turned off in ``mattr`` (a guest whose hypervisor hides it): the same CPU
    name with another vector width makes other kernels, so other records and other weights."""
    cpu = target.get("mcpu") or target.get("arch")
    if not cpu:
        return None
    if "-avx512f" in [str(feature) for feature in target.get("mattr") or []]:
        return f"{cpu}-noavx512"
    return str(cpu)


def target_label(target: dict[str, Any] | None) -> str:
    """A short display name of a target dict, e.g. ``llvm-rocketlake-2c`` (no TVM needed);
    also the record directory name (:func:`ms_meta.tuning.target.target_key`)."""
    if not target:
        return "(none)"
    parts = [str(target.get("kind", "?"))]
    cpu = cpu_label(target)
    if cpu:
        parts.append(cpu)
    if _is_number(target.get("num-cores")) and target["num-cores"] > 0:
        parts.append(f"{target['num-cores']}c")
    return "-".join(parts)


def _group_target_label(group: WorkloadGroup) -> str:
    targets = group.targets
    if not targets:
        return "-"
    labels = sorted({target_label(json.loads(t)) for t in targets})
    return ",".join(labels)


def database_stats(recordset: RecordSet) -> dict[str, Any]:
    """Per-task and total counts of a record set, as a JSON-ready dict.

    Returns
    -------
    dict
        ``tasks`` (name, op, records, failed, best_us, target, path), ``totals`` (tasks, records,
        failed, skipped_lines, databases), ``operators`` (op -> tasks, records) and ``skipped``
        (kind -> count). ``best_us`` is the lowest *mean* of a record's ``run_secs``, in
        microseconds: MetaSchedule ranks records by the mean.
    """
    tasks = []
    for group in recordset.groups:
        best = group.best_secs
        meta = group.database.meta or {}
        # Seconds spent measuring: ms-meta's collector, a seed-style meta ("secs"), and the
        # sources ingested into the task (each may carry its own "secs").
        seconds = float(meta.get("collect_seconds", 0.0)) + float(meta.get("secs", 0.0))
        for source in (meta.get("ingested") or {}).values():
            if isinstance(source, dict):
                seconds += float(source.get("secs", 0.0))
        tasks.append(
            {
                "task": group.task,
                "op": group.op_kind,
                "records": len(group.records),
                "failed": group.num_failed,
                "best_us": None if best is None else best * 1e6,
                "target": _group_target_label(group),
                "path": str(group.database.files.directory),
                "measure_seconds": seconds,
            }
        )
    operators: dict[str, dict[str, Any]] = {}
    for row in tasks:
        entry = operators.setdefault(row["op"], {"tasks": 0, "records": 0, "measure_hours": 0.0})
        entry["tasks"] += 1
        entry["records"] += row["records"]
        entry["measure_hours"] += row["measure_seconds"] / 3600
    skips = recordset.skips
    return {
        "tasks": tasks,
        "totals": {
            "databases": len(recordset.databases),
            "tasks": len(tasks),
            "records": sum(r["records"] for r in tasks),
            "failed": sum(r["failed"] for r in tasks),
            "measure_hours": sum(r["measure_seconds"] for r in tasks) / 3600,
            "skipped_lines": skips.num_skipped,
            "targets": skips.num_targets,
        },
        "operators": dict(sorted(operators.items())),
        "skipped": skips.by_kind(),
        "latency": "best_us: the lowest mean of run_secs over a task's records, in µs "
        "(MetaSchedule ranks records by the mean)",
    }


def stats(paths: Sequence[str | os.PathLike[str]]) -> dict[str, Any]:
    """:func:`database_stats` of the databases at ``paths`` (``ms-meta db stats``)."""
    return database_stats(load_databases(paths))


# --------------------------------------------------------------------------------------------
# db validate
# --------------------------------------------------------------------------------------------


@dataclass
class DatabaseReport:
    """Validation result of one database.

    ``problems`` make the database unusable as it is (``ms-meta db validate`` exits 1);
    ``warnings`` are worth knowing but harmless.
    """

    files: DatabaseFiles
    workloads: int
    records: int
    failed: int
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problems."""
        return not self.problems


def _meta_target(meta: dict[str, Any] | None) -> dict[str, Any] | None:
    target = (meta or {}).get("target")
    if isinstance(target, str):  # the seed records store it as a JSON string
        try:
            target = json.loads(target)
        except json.JSONDecodeError:
            return None
    return target if isinstance(target, dict) else None


def check_database(db: LoadedDatabase, *, strict: bool = False) -> DatabaseReport:
    """The problems and warnings of one loaded database.

    Parameters
    ----------
    db : LoadedDatabase
        As read by :func:`load_files`.
    strict : bool
        Count failed runs as a problem (by default they are only reported).
    """
    report = DatabaseReport(db.files, len(db.groups), db.num_records, db.num_failed)
    report.problems.extend(str(item) for item in db.skips.skipped)
    if db.num_records == 0:
        report.problems.append("empty database: no usable tuning records")
    targets = db.skips.targets
    if len(targets) > 1:
        listing = ", ".join(
            f"{target_label(json.loads(t))} ({n})" for t, n in targets.most_common()
        )
        report.problems.append(
            f"mixed targets: records were measured on {len(targets)} different targets: {listing}"
        )
    meta_target = _meta_target(db.meta)
    if meta_target is not None and len(targets) == 1:
        record_target = json.loads(next(iter(targets)))
        if record_target is not None:
            shared = set(meta_target) & set(record_target)
            if any(meta_target[k] != record_target[k] for k in shared):
                report.warnings.append(
                    f"meta.json target {target_label(meta_target)} differs from the records' "
                    f"target {target_label(record_target)}"
                )
    if db.num_failed:
        text = f"{db.num_failed} failed runs (run_secs missing or >= 1e9)"
        (report.problems if strict else report.warnings).append(text)
    duplicates = sum(len(g.records) - len({r.key() for r in g.records}) for g in db.groups)
    if duplicates:
        report.warnings.append(f"{duplicates} duplicate records (same trace and target)")
    hashes = Counter(g.shash for g in db.groups)
    if any(n > 1 for n in hashes.values()):
        report.warnings.append("the workload file lists the same structural hash more than once")
    return report


def validate(
    paths: Sequence[str | os.PathLike[str]], *, strict: bool = False, deep: bool = False
) -> list[DatabaseReport]:
    """Check every database at ``paths`` (``ms-meta db validate``); files are only read.

    Parameters
    ----------
    paths : sequence of path
        Database directories, trees of them, or record files.
    strict : bool
        Count failed runs as problems.
    deep : bool
        Also decode workloads and rebuild every record with TVM (slow).

    Raises
    ------
    DatabaseError
        When a path does not exist or holds no database.
    """
    recordset = load_databases(paths, parse_traces=deep)
    return [check_database(db, strict=strict) for db in recordset.databases]


# --------------------------------------------------------------------------------------------
# db merge
# --------------------------------------------------------------------------------------------


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


def _write_atomic(path: Path, lines: list[str]) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(line + "\n" for line in lines)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
    sources: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], *, append: bool = False
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
        (existing lines are never rewritten).

    Raises
    ------
    DatabaseError
        When ``out`` holds a database and ``append`` is false, when the database in ``out``
        has unreadable lines (appending to it would index the wrong workloads), or when a
        source is missing.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DatabaseError(f"--out {out} is a file, not a directory")
    existing: LoadedDatabase | None = None
    if layout.is_database_dir(out):
        if not append:
            raise DatabaseError(
                f"{out} already holds a tuning database; pass --append to add the new records "
                "to it, or choose an empty directory"
            )
        existing = load_files(layout.database_files(out))
        if existing.skips.skipped:
            raise DatabaseError(
                f"cannot append to {out}: {existing.skips.summary()} "
                f"(run `ms-meta db validate {out}`); merge into a new directory instead"
            )
    recordset = load_databases(sources)
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
        _write_atomic(out / layout.WORKLOAD_FILE, workloads)
        _write_atomic(out / layout.RECORD_FILE, records)
    else:
        files = existing.files
        _append(
            files.workload or out / layout.WORKLOAD_FILE,
            workloads,
            existing.workload_ends_newline,
        )
        _append(files.records or out / layout.RECORD_FILE, records, existing.records_end_newline)
