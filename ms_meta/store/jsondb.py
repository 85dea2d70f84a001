"""Import MetaSchedule JSON databases into the record store and export them back (no TVM needed).

Import reads each database's two files as text, keeps every part of every record byte for byte
(:mod:`ms_meta.store.msjson`) and commits in batches. Every source is identified by a digest of
its two files; the store remembers how many lines of it are committed (in the same transaction
as the records), so importing the same files again adds nothing, and an import killed half way
resumes after its last committed batch instead of counting those records again as repeats.

Export writes one MetaSchedule JSON database per task and target:
``OUT/<target>/<task>/database_workload.json`` and ``database_tuning_record.json``, records in
the order they were stored, so a database imported alone exports byte-equal.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ms_meta.atomic import atomic_write
from ms_meta.data.layout import (
    RECORD_FILE,
    WORKLOAD_FILE,
    DatabaseFiles,
    read_meta,
    resolve_databases,
)
from ms_meta.errors import DatabaseError
from ms_meta.store.msjson import join_record_line, join_workload_line
from ms_meta.store.prepare import (
    PARALLEL_MIN_BYTES,
    PreparedSource,
    default_workers,
    open_database_file,
    prepare,
)
from ms_meta.store.rows import ImportGroup
from ms_meta.store.sql import SqlStore
from ms_meta.store.targets import target_key_label

__all__ = [
    "ImportReport",
    "JsonSource",
    "export_json_databases",
    "import_json_databases",
    "scan_json_databases",
]

logger = logging.getLogger(__name__)

DEFAULT_BATCH = 20_000
_CHUNK = 1 << 20


@dataclass(frozen=True)
class JsonSource:
    """One MetaSchedule JSON database found for import.

    Attributes
    ----------
    files : DatabaseFiles
        Its workload and record files.
    digest : str
        blake2b of both files' bytes: the identity of this source in the store.
    lines : int
        Lines in its record file.
    """

    files: DatabaseFiles
    digest: str
    lines: int


@dataclass
class ImportReport:
    """Totals of an import.

    Attributes
    ----------
    databases, records_read, added, duplicates, malformed, already_imported : int
        Databases read; record lines read this time; new records; lines that repeat a stored
        record (kept once, counted); unreadable lines skipped; lines skipped because an
        earlier import of the same files committed them.
    problems : list of str
        One line per database with unreadable lines.
    """

    databases: int = 0
    records_read: int = 0
    added: int = 0
    duplicates: int = 0
    malformed: int = 0
    already_imported: int = 0
    problems: list[str] = field(default_factory=list)


def _digest_and_lines(files: DatabaseFiles) -> tuple[str, int]:
    digest = hashlib.blake2b(digest_size=16)
    lines = 0
    for path, counts in ((files.workload, False), (files.records, True)):
        digest.update(b"\0")
        if path is None:
            continue
        try:
            with open_database_file(path) as handle:
                last = b"\n"
                while chunk := handle.read(_CHUNK):
                    digest.update(chunk)
                    if counts:
                        lines += chunk.count(b"\n")
                    last = chunk[-1:]
                if counts and last != b"\n":
                    lines += 1
        except (OSError, EOFError, gzip.BadGzipFile) as err:
            raise DatabaseError(f"cannot read {path}: {err}") from None
    return digest.hexdigest(), lines


def scan_json_databases(paths: Sequence[str | Path]) -> list[JsonSource]:
    """The databases at or under ``paths`` (a database directory, a tree of them such as
    ``tuning_records/``, or one record file), with their digests and line counts.

    Raises
    ------
    DatabaseError
        When a path is missing, unreadable or holds no database.
    """
    sources = []
    for path in paths:
        for files in resolve_databases(Path(path)):
            if files.workload is None and files.records is not None:
                raise DatabaseError(f"{files.directory} has records but no {WORKLOAD_FILE}")
            sources.append(JsonSource(files, *_digest_and_lines(files)))
    return sources


def _task_name(files: DatabaseFiles, n_workloads: int) -> str | None:
    if n_workloads != 1:
        return None
    meta = read_meta(files.directory) or {}
    name = meta.get("task") or meta.get("name") or files.directory.name
    return str(name) if name else None


class _Batches:
    """Records of many sources gathered into transactions of about ``batch_size`` records (a
    tree of small databases then commits a few times, not twice per database)."""

    def __init__(
        self,
        store: SqlStore,
        report: ImportReport,
        batch_size: int,
        on_lines: Callable[[int], None] | None,
    ) -> None:
        self.store, self.report, self.batch_size, self.on_lines = (
            store, report, batch_size, on_lines,
        )  # fmt: skip
        self.groups: list[ImportGroup] = []
        self.records = 0
        self.lines = 0

    def add(self, group: ImportGroup, lines: int) -> None:
        self.groups.append(group)
        self.records += len(group.rows)
        self.lines += lines
        if self.records >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.groups:
            return
        result = self.store.import_groups(self.groups)
        self.report.added += result.added
        self.report.duplicates += result.duplicates
        if self.on_lines:
            self.on_lines(self.lines)
        self.groups, self.records, self.lines = [], 0, 0


def _commit_source(
    source: JsonSource, done: int, prepared: PreparedSource, batches: _Batches
) -> None:
    """Hand one prepared source to the batches, split where a batch fills up."""
    files, report = source.files, batches.report
    report.records_read += prepared.records_read
    report.already_imported += min(done, prepared.lines)
    name = _task_name(files, len(prepared.workloads))
    valid = [i for i, w in enumerate(prepared.workloads) if w is not None]
    position = {line_index: n for n, line_index in enumerate(valid)}
    workloads = [(*prepared.workloads[i], name) for i in valid]
    path = str(files.records or files.workload)
    rows = [(line_no, position[index], *rest) for line_no, index, *rest in prepared.rows]
    start, lines_before = 0, done
    group = ImportGroup(workloads, targets=prepared.targets, insts=prepared.insts)
    while len(rows) - start > batches.batch_size - batches.records:
        end = start + max(batches.batch_size - batches.records, 0)
        group.rows = rows[start:end]
        last_line = group.rows[-1][0] if group.rows else lines_before
        group.source = (source.digest, path, last_line, False)
        batches.add(group, last_line - lines_before)
        batches.flush()
        group = ImportGroup(
            workloads, targets=prepared.targets, insts=prepared.insts,
            workload_ids=group.workload_ids,
        )  # fmt: skip
        start, lines_before = end, last_line
    group.rows = rows[start:]
    group.source = (source.digest, path, prepared.lines, True)
    batches.add(group, prepared.lines - lines_before)
    report.malformed += prepared.malformed
    if prepared.malformed or prepared.bad_workloads:
        report.problems.append(
            f"{files.name}: {prepared.malformed} unreadable record lines and "
            f"{prepared.bad_workloads} unreadable workload lines skipped"
        )


def import_json_databases(
    store: SqlStore,
    sources: Sequence[JsonSource],
    *,
    batch_size: int = DEFAULT_BATCH,
    on_lines: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> ImportReport:
    """Import MetaSchedule JSON databases (from :func:`scan_json_databases`) into ``store``.

    Parameters
    ----------
    store : SqlStore
        The store to add to.
    sources : sequence of JsonSource
        The databases.
    batch_size : int
        Records per transaction (a transaction holds several small databases, or part of a
        large one); a crash loses at most the batch being written.
    on_lines : callable, optional
        Called with the number of record lines handled, for a progress bar.
    workers : int, optional
        Processes that read and split the record lines while this one writes. Default: one
        per core for an import of more than
        :data:`~ms_meta.store.prepare.PARALLEL_MIN_BYTES` of record files, else none.

    Returns
    -------
    ImportReport
        What was added, repeated, skipped.
    """
    report = ImportReport()
    batches = _Batches(store, report, batch_size, on_lines)
    if workers is None:
        workers = default_workers() if _record_bytes(sources) > PARALLEL_MIN_BYTES else 1
    todo: list[tuple[JsonSource, int]] = []
    seen: set[str] = set()
    for source in sources:
        report.databases += 1
        done, complete = store.source_progress(source.digest)
        if complete or source.digest in seen:  # imported before, or listed twice
            report.already_imported += source.lines
            if on_lines:
                on_lines(source.lines)
            continue
        seen.add(source.digest)
        todo.append((source, done))
    with store.bulk():
        prepared = prepare(((s.files, done) for s, done in todo), workers=workers)
        for (source, done), one in zip(todo, prepared, strict=True):
            _commit_source(source, done, one, batches)
        batches.flush()
    return report


def _record_bytes(sources: Sequence[JsonSource]) -> int:
    total = 0
    for source in sources:
        if source.files.records is not None:
            try:
                total += source.files.records.stat().st_size
            except OSError:
                pass
    return total


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "task"


def export_json_databases(
    store: SqlStore, out_dir: str | Path, *, key: str | None = None
) -> list[Path]:
    """Write every (task, target) of ``store`` as a MetaSchedule JSON database under ``out_dir``.

    Layout: ``out_dir/<target label>/<task name>/`` (the ``tuning_records/`` layout), a task
    without a name as ``wl-<structural hash>``. Existing files are never overwritten.

    Parameters
    ----------
    store : SqlStore
        The store to read.
    out_dir : str or Path
        Destination directory (created when missing).
    key : str, optional
        Export only this target key (:func:`ms_meta.store.targets.target_key`).

    Returns
    -------
    list of Path
        The database directories written.

    Raises
    ------
    DatabaseError
        When a destination file exists already (nothing is written then).
    """
    out_dir = Path(out_dir)
    plan: list[tuple[Path, int, str]] = []
    labels: dict[str, str] = {}
    used: set[Path] = set()
    for workload_id, group_key, config in store.groups():
        if key is not None and group_key != key:
            continue
        if group_key not in labels:
            label = _safe(target_key_label(group_key, config))
            taken = set(labels.values())
            suffix = 2
            base = label
            while label in taken:
                label, suffix = f"{base}-{suffix}", suffix + 1
            labels[group_key] = label
        workload = store.workload(workload_id)
        name = _safe(workload.name) if workload.name else f"wl-{workload.shash}"
        directory = out_dir / labels[group_key] / name
        if directory in used:
            directory = directory.with_name(f"{name}-{workload.shash}")
        used.add(directory)
        plan.append((directory, workload_id, group_key))
    for directory, _, _ in plan:
        for file_name in (WORKLOAD_FILE, RECORD_FILE):
            if (directory / file_name).exists():
                raise DatabaseError(
                    f"{directory / file_name} exists; export writes only new files "
                    "(choose an empty --out directory)"
                )
    for directory, workload_id, group_key in plan:
        directory.mkdir(parents=True, exist_ok=True)
        workload = store.workload(workload_id)
        text = join_workload_line(workload.shash, workload.module) + "\n"
        atomic_write(directory / WORKLOAD_FILE, lambda tmp, t=text: Path(tmp).write_text(t))

        def write_records(
            tmp: str, workload_id: int = workload_id, group_key: str = group_key
        ) -> None:
            with open(tmp, "w", encoding="utf-8", newline="\n") as handle:
                for record in store.records(workload_id=workload_id, key=group_key):
                    handle.write(join_record_line(0, record.text) + "\n")

        atomic_write(directory / RECORD_FILE, write_records)
    return [directory for directory, _, _ in plan]
