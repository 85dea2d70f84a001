"""Packed task databases: finished task folders as append-only compressed parts.

Thousands of small task folders of plain JSON are too much to keep in a repository, so a
breadth-first collection (``ms-meta collect sampled:...``) measures into a work directory and
its finished tasks are packed, a batch at a time, into::

    <pack-dir>/part-0001.tar.gz   <task>/database_workload.json, database_tuning_record.json,
    <pack-dir>/part-0001.json         meta.json of every task in the part (tar, gzip)
    <pack-dir>/part-0002.tar.gz   the manifest beside each part: its tasks, operator kinds,
    ...                               record counts, CPU and date

Parts are written once and never rewritten (a new batch is a new part). A task is packed at
most once: the tasks already in a part are left out of the next. :func:`unpack` writes plain
MetaSchedule databases back, byte for byte; :func:`packed_databases` gives the data loader
the databases of a pack directory (or of one part) from a cache of unpacked copies, keyed by
each part's content.
"""

from __future__ import annotations

import datetime as _dt
import gzip
import hashlib
import io
import json
import math
import os
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ms_meta.atomic import atomic_write_bytes, atomic_write_json
from ms_meta.data.layout import META_FILE, RECORD_FILE, WORKLOAD_FILE, DatabaseFiles
from ms_meta.data.task_files import TaskLockedError, count_lines, task_lock
from ms_meta.errors import DatabaseError

__all__ = [
    "CACHE_ENV",
    "MIN_SHARE",
    "PACK_FORMAT_VERSION",
    "PackResult",
    "UnpackResult",
    "finished_tasks",
    "is_packed",
    "pack_tasks",
    "packed_databases",
    "packed_tasks",
    "part_paths",
    "unpack",
]

PACK_FORMAT_VERSION = 1
CACHE_ENV = "MS_META_PACK_CACHE"  # where unpacked copies are cached (default ~/.cache/...)
_PART = re.compile(r"^part-(\d{4,})\.tar\.gz$")
_TASK_FILES = (WORKLOAD_FILE, RECORD_FILE, META_FILE)  # in this order inside a part
_COMPLETE = ".complete"  # marks a finished cache entry
# Share of the asked-for records that makes a task finished: with 16 asked for, guided searches
# that keep proposing measured schedules stop at 14-15; a run killed after its random phase
# (a third) must not be packed.
MIN_SHARE = 0.75


@dataclass
class PackResult:
    """What :func:`pack_tasks` wrote: the part (None when nothing was ready) and its tasks."""

    part: Path | None
    tasks: list[str] = field(default_factory=list)
    records: int = 0
    operators: dict[str, int] = field(default_factory=dict)
    skipped_locked: list[str] = field(default_factory=list)


@dataclass
class UnpackResult:
    """What :func:`unpack` wrote: one database folder per task."""

    out: Path
    tasks: list[str] = field(default_factory=list)
    records: int = 0


def part_paths(pack_dir: Path) -> list[Path]:
    """The parts of a pack directory, in part-number order (or ``[pack_dir]`` for one part)."""
    pack_dir = Path(pack_dir)
    if pack_dir.is_file():
        if not _PART.match(pack_dir.name):
            raise DatabaseError(f"{pack_dir} is not a packed part (part-NNNN.tar.gz)")
        return [pack_dir]
    if not pack_dir.is_dir():
        raise DatabaseError(f"no such pack directory: {pack_dir}")
    parts = [p for p in pack_dir.iterdir() if _PART.match(p.name) and p.is_file()]
    return sorted(parts, key=lambda p: int(_PART.match(p.name).group(1)))


def is_packed(path: Path) -> bool:
    """Whether ``path`` is a packed part or a directory that holds parts."""
    path = Path(path)
    try:
        if path.is_file():
            return bool(_PART.match(path.name))
        return path.is_dir() and any(_PART.match(p.name) for p in path.iterdir())
    except OSError:  # an unreadable folder is the folder scan's to report
        return False


def _manifest_path(part: Path) -> Path:
    return part.with_name(part.name[: -len(".tar.gz")] + ".json")


def _read_members(part: Path) -> dict[str, dict[str, bytes]]:
    """``{task: {file name: content}}`` of a part, refusing unexpected member names."""
    tasks: dict[str, dict[str, bytes]] = {}
    try:
        with tarfile.open(part, "r:gz") as tar:
            for member in tar:
                task, _, name = member.name.partition("/")
                if not member.isfile() or not task or name not in _TASK_FILES or "/" in task:
                    raise DatabaseError(f"{part}: unexpected member {member.name!r}")
                if task in (".", ".."):
                    raise DatabaseError(f"{part}: unexpected member {member.name!r}")
                handle = tar.extractfile(member)
                tasks.setdefault(task, {})[name] = handle.read() if handle else b""
    except (OSError, EOFError, tarfile.TarError) as err:
        raise DatabaseError(f"cannot read packed part {part}: {err}") from None
    return tasks


def packed_tasks(pack_dir: Path) -> dict[str, Path]:
    """``{task: part}`` of every task already packed (a later part's copy wins)."""
    found: dict[str, Path] = {}
    if not Path(pack_dir).exists():
        return found
    for part in part_paths(pack_dir):
        manifest = _manifest_path(part)
        try:
            names = list(json.loads(manifest.read_text())["tasks"])
        except (OSError, ValueError, KeyError, TypeError):
            names = list(_read_members(part))  # no usable manifest: the part itself says
        found.update(dict.fromkeys(names, part))
    return found


def _task_target(meta: dict) -> int | None:
    collector = meta.get("collector") or {}
    wanted = collector.get("trials_per_task")
    return int(wanted) if isinstance(wanted, int) else None


def finished_tasks(work_dir: Path, min_share: float = MIN_SHARE) -> list[Path]:
    """Task folders under ``work_dir`` (one target's folder) that their collector finished.

    A task is finished when it holds the records its ``meta.json`` asked for
    (``collector.trials_per_task``), at least ``min_share`` of them (a search that proposed
    schedules already measured ends a record or two short), or was marked exhausted at its
    present count. A task being collected holds its lock; :func:`pack_tasks` leaves it out.
    """
    work_dir = Path(work_dir)
    if not work_dir.is_dir():
        raise DatabaseError(f"no such work directory: {work_dir}")
    done = []
    for task in sorted(p for p in work_dir.iterdir() if p.is_dir()):
        try:
            meta = json.loads((task / META_FILE).read_text())
        except (OSError, ValueError):
            continue
        records = count_lines(task / RECORD_FILE)
        wanted = _task_target(meta)
        exhausted = meta.get("exhausted_at")
        if records and (
            (wanted is not None and records >= math.ceil(min_share * wanted))
            or (exhausted and exhausted == records)
        ):
            done.append(task)
    return done


def _tar_bytes(files: list[tuple[str, bytes]]) -> bytes:
    """A gzip-compressed tar of ``(name, content)``, the same bytes for the same input."""
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=9) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, content in files:
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(content), 0o644, 0
                tar.addfile(info, io.BytesIO(content))
    return raw.getvalue()


def _next_part(pack_dir: Path) -> Path:
    parts = part_paths(pack_dir) if pack_dir.is_dir() else []
    number = int(_PART.match(parts[-1].name).group(1)) + 1 if parts else 1
    return pack_dir / f"part-{number:04d}.tar.gz"


def pack_tasks(
    work_dir: Path,
    pack_dir: Path,
    *,
    max_tasks: int | None = None,
    min_tasks: int = 1,
    min_share: float = MIN_SHARE,
) -> PackResult:
    """Pack the finished, not yet packed tasks of ``work_dir`` into the next part of ``pack_dir``.

    Parameters
    ----------
    work_dir : Path
        One target's folder of a collection (``<collect --out>/<target-key>``).
    pack_dir : Path
        Where the parts go (``tuning_records/<target-key>-breadth``).
    max_tasks : int, optional
        At most this many tasks in the part (the first ones by name).
    min_tasks : int
        Write no part when fewer tasks are ready.
    min_share : float
        Share of its asked-for records that makes a task finished (:func:`finished_tasks`).

    Returns
    -------
    PackResult
        ``part`` is None when no part was written. The work folders are left as they are (a
        collector re-run skips them as complete).
    """
    work_dir, pack_dir = Path(work_dir), Path(pack_dir)
    already = packed_tasks(pack_dir)
    result = PackResult(part=None)
    files: list[tuple[str, bytes]] = []
    manifest_tasks: dict[str, dict] = {}
    cpus: set[str] = set()
    for task in finished_tasks(work_dir, min_share):
        if task.name in already:
            continue
        if max_tasks is not None and len(manifest_tasks) >= max_tasks:
            break
        try:
            with task_lock(task):  # no collector may append while it is read
                contents = {n: (task / n).read_bytes() for n in _TASK_FILES if (task / n).is_file()}
        except TaskLockedError:
            result.skipped_locked.append(task.name)
            continue
        if WORKLOAD_FILE not in contents or RECORD_FILE not in contents:
            continue
        meta = json.loads(contents.get(META_FILE, b"{}") or b"{}")
        records = sum(1 for line in contents[RECORD_FILE].splitlines() if line.strip())
        op = str(meta.get("op", "?"))
        cpus.add(str(meta.get("cpu", "?")))
        manifest_tasks[task.name] = {"op": op, "records": records, "spec": meta.get("spec")}
        files.extend((f"{task.name}/{n}", contents[n]) for n in _TASK_FILES if n in contents)
        result.operators[op] = result.operators.get(op, 0) + 1
        result.records += records
    result.tasks = list(manifest_tasks)
    if not manifest_tasks or len(manifest_tasks) < min_tasks:
        result.tasks, result.records, result.operators = [], 0, {}
        return result
    part = _next_part(pack_dir)
    atomic_write_bytes(part, _tar_bytes(files))
    atomic_write_json(
        _manifest_path(part),
        {
            "format": PACK_FORMAT_VERSION,
            "part": part.name,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "cpu": sorted(cpus),
            "tasks_count": len(manifest_tasks),
            "records": result.records,
            "operators": dict(sorted(result.operators.items())),
            "tasks": manifest_tasks,
        },
    )
    result.part = part
    return result


def unpack(path: Path, out: Path, *, tasks: set[str] | None = None) -> UnpackResult:
    """Write the tasks of a pack directory (or of one part) to ``out/<task>/`` as plain
    MetaSchedule databases, exactly the bytes that were packed.

    Raises
    ------
    DatabaseError
        When a part cannot be read, or ``out`` already holds a folder of one of the tasks
        (nothing is overwritten; nothing is written then).
    """
    out = Path(out)
    latest: dict[str, dict[str, bytes]] = {}
    for part in part_paths(path):
        for task, contents in _read_members(part).items():
            if tasks is None or task in tasks:
                latest[task] = contents
    clashes = sorted(t for t in latest if (out / t).exists())
    if clashes:
        raise DatabaseError(
            f"{out} already holds {len(clashes)} of the packed tasks (e.g. {clashes[0]}); "
            "unpack into a new folder"
        )
    result = UnpackResult(out)
    for task in sorted(latest):
        for name, content in latest[task].items():
            atomic_write_bytes(out / task / name, content)
        result.tasks.append(task)
        result.records += sum(
            1 for line in latest[task].get(RECORD_FILE, b"").splitlines() if line.strip()
        )
    return result


def _cache_root() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ms-meta" / "packed"


def _cached_part(part: Path) -> Path:
    """The unpacked copy of one part in the cache, made on first use."""
    digest = hashlib.sha256(part.read_bytes()).hexdigest()[:24]
    entry = _cache_root() / digest
    if (entry / _COMPLETE).is_file():
        return entry
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=entry.parent, prefix=digest + "."))
    try:
        unpack(part, staging)
        (staging / _COMPLETE).write_text(part.name + "\n")
        try:
            os.rename(staging, entry)
        except OSError:  # another process made it meanwhile
            if not (entry / _COMPLETE).is_file():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return entry


def packed_databases(path: Path) -> list[DatabaseFiles]:
    """The task databases of a pack directory or part, read from the cache of unpacked copies.

    A task packed in several parts is read from the latest.

    Raises
    ------
    DatabaseError
        When a part cannot be read or the path holds no part.
    """
    parts = part_paths(path)
    if not parts:
        raise DatabaseError(f"no packed part (part-NNNN.tar.gz) in {path}")
    latest: dict[str, Path] = {}
    for part in parts:
        entry = _cached_part(part)
        for task in sorted(p for p in entry.iterdir() if p.is_dir()):
            latest[task.name] = task
    return [
        DatabaseFiles(
            workload=latest[t] / WORKLOAD_FILE,
            records=latest[t] / RECORD_FILE if (latest[t] / RECORD_FILE).is_file() else None,
            directory=latest[t],
        )
        for t in sorted(latest)
    ]
