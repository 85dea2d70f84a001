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
import io
import logging
import re
from collections.abc import Callable, Iterator, Sequence
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
from ms_meta.store.msjson import (
    join_record_line,
    join_workload_line,
    split_record_line,
    split_workload_line,
)
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


def _open(path: Path) -> io.BufferedIOBase:
    try:
        return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
    except OSError as err:
        raise DatabaseError(f"cannot read {path}: {err.strerror or err}") from None


def _digest_and_lines(files: DatabaseFiles) -> tuple[str, int]:
    digest = hashlib.blake2b(digest_size=16)
    lines = 0
    for path, counts in ((files.workload, False), (files.records, True)):
        digest.update(b"\0")
        if path is None:
            continue
        try:
            with _open(path) as handle:
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


def _lines(path: Path) -> Iterator[str]:
    with _open(path) as handle:
        for raw in handle:
            yield raw.decode("utf-8", errors="replace").rstrip("\r\n")


def _import_one(
    store: SqlStore,
    source: JsonSource,
    report: ImportReport,
    batch_size: int,
    on_lines: Callable[[int], None] | None,
) -> None:
    files = source.files
    done, complete = store.source_progress(source.digest)
    if complete:
        report.already_imported += source.lines
        if on_lines:
            on_lines(source.lines)
        return
    workloads = []
    bad_workloads = 0
    for line in _lines(files.workload) if files.workload else ():
        try:
            workloads.append(split_workload_line(line))
        except ValueError:
            workloads.append(None)  # keeps the line numbers: records refer to workloads by line
            bad_workloads += 1
    name = _task_name(files, len(workloads))
    valid = [(i, w) for i, w in enumerate(workloads) if w is not None]
    ids = store.add_workloads([(shash, module, name) for _, (shash, module) in valid])
    workload_ids = {i: wid for (i, _), wid in zip(valid, ids, strict=True)}

    malformed = 0
    batch: list = []
    line_no = 0
    path = str(files.records or files.workload)

    def flush(complete: bool) -> None:
        result = store.add_records(batch, source=(source.digest, path, line_no, complete))
        report.added += result.added
        report.duplicates += result.duplicates
        if on_lines:
            on_lines(len(batch))
        batch.clear()

    for line in _lines(files.records) if files.records else ():
        line_no += 1
        if line_no <= done:
            report.already_imported += 1
            continue
        report.records_read += 1
        if not line.strip():
            malformed += 1
            continue
        try:
            index, record = split_record_line(line)
        except ValueError:
            malformed += 1
            continue
        if index not in workload_ids:
            malformed += 1
            continue
        batch.append((workload_ids[index], record))
        if len(batch) >= batch_size:
            flush(False)
    flush(True)
    report.malformed += malformed
    if malformed or bad_workloads:
        report.problems.append(
            f"{files.name}: {malformed} unreadable record lines and {bad_workloads} unreadable "
            "workload lines skipped"
        )


def import_json_databases(
    store: SqlStore,
    sources: Sequence[JsonSource],
    *,
    batch_size: int = DEFAULT_BATCH,
    on_lines: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import MetaSchedule JSON databases (from :func:`scan_json_databases`) into ``store``.

    Parameters
    ----------
    store : SqlStore
        The store to add to.
    sources : sequence of JsonSource
        The databases.
    batch_size : int
        Records per transaction; a crash loses at most the batch being written.
    on_lines : callable, optional
        Called with the number of record lines handled, for a progress bar.

    Returns
    -------
    ImportReport
        What was added, repeated, skipped.
    """
    report = ImportReport()
    with store.bulk():
        for source in sources:
            _import_one(store, source, report, batch_size, on_lines)
            report.databases += 1
    return report


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
