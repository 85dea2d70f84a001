"""``ms-meta db stats`` and ``ms-meta db validate``: what a set of tuning databases holds, and
what in it is unusable.

Both read with :mod:`ms_meta.data.records` and never write. Folders of a records tree that
cannot be read (:class:`~ms_meta.data.layout.UnreadableFolder`) are reported, never passed
over silently: ``stats`` lists them, ``validate`` counts each as a database with a problem.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ms_meta.data.layout import DatabaseFiles
from ms_meta.data.records import LoadedDatabase, RecordSet, WorkloadGroup, load_databases
from ms_meta.labels import target_label

__all__ = ["DatabaseReport", "check_database", "database_stats", "stats", "validate"]


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
        failed, skipped_lines, databases, unreadable_folders), ``operators`` (op -> tasks,
        records), ``skipped`` (kind -> count) and ``unreadable`` (path, reason of each folder
        that could not be read). ``best_us`` is the lowest *mean* of a record's ``run_secs``, in
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
            "unreadable_folders": len(recordset.unreadable),
        },
        "operators": dict(sorted(operators.items())),
        "skipped": skips.by_kind(),
        "unreadable": [{"path": str(u.path), "reason": u.reason} for u in recordset.unreadable],
        "latency": "best_us: the lowest mean of run_secs over a task's records, in µs "
        "(MetaSchedule ranks records by the mean)",
    }


def stats(paths: Sequence[str | os.PathLike[str]]) -> dict[str, Any]:
    """:func:`database_stats` of the databases at ``paths`` (``ms-meta db stats``)."""
    return database_stats(load_databases(paths))


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

    Returns
    -------
    list of DatabaseReport
        One per database, then one per folder that could not be read (each with a problem).
    """
    recordset = load_databases(paths, parse_traces=deep)
    reports = [check_database(db, strict=strict) for db in recordset.databases]
    for folder in recordset.unreadable:
        report = DatabaseReport(DatabaseFiles(None, None, folder.path), 0, 0, 0)
        report.problems.append(f"unreadable folder: {folder.reason}")
        reports.append(report)
    return reports
