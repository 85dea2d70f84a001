"""Where tuning databases live on disk and what their files are called (the one source of truth).

The project's records are laid out as::

    tuning_records/<target-key>/<task-name>/
        database_workload.json[.gz]        one workload per line: ["<structural hash>", "<base64>"]
        database_tuning_record.json[.gz]   one record per line: [workload_index, [trace, ...]]
        meta.json                          {"task": ..., "spec": ..., "op": ..., "target": ...}

A user's database may instead be any directory holding the two record files (a standard
MetaSchedule ``JSONDatabase`` work dir, possibly with many workloads and no ``meta.json``), or an
explicit pair of files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ms_meta.errors import DatabaseError

__all__ = [
    "DATASET_FORMAT_VERSION",
    "GZIP_SUFFIX",
    "LOCK_FILE",
    "META_FILE",
    "RECORDS_DIR",
    "RECORDS_ROOT_ENV",
    "RECORD_FILE",
    "SPLIT_FILE",
    "WORKLOAD_FILE",
    "DatabaseFiles",
    "FolderScan",
    "UnreadableFolder",
    "database_files",
    "database_pair",
    "default_records_root",
    "files_for_path",
    "find_databases",
    "is_database_dir",
    "read_meta",
    "resolve_databases",
    "scan_record_folders",
    "task_dir",
]

WORKLOAD_FILE = "database_workload.json"
RECORD_FILE = "database_tuning_record.json"
META_FILE = "meta.json"
# Held (flock) by whoever appends to a task's record files: the collector and `db merge --append`.
LOCK_FILE = ".lock"
SPLIT_FILE = "split.json"  # a task split (``ms-meta db split``) inside a records tree
RECORDS_DIR = "tuning_records"  # the records root, relative to the working directory
GZIP_SUFFIX = ".gz"
DATASET_FORMAT_VERSION = 1

# Environment variable that overrides the default records root.
RECORDS_ROOT_ENV = "MS_META_RECORDS"


@dataclass(frozen=True)
class DatabaseFiles:
    """The files of one tuning database.

    Parameters
    ----------
    workload : Path or None
        The workload table; ``None`` when the database has none (then every record refers to an
        unknown workload).
    records : Path or None
        The tuning-record table; ``None`` when absent (a database with no records yet).
    directory : Path
        The directory that may hold ``meta.json``.
    """

    workload: Path | None
    records: Path | None
    directory: Path

    @property
    def name(self) -> str:
        """A short name for messages: the directory name."""
        return self.directory.name or str(self.directory)


def _pick(directory: Path, base: str) -> Path | None:
    """``base`` or ``base.gz`` in ``directory``; both at once is ambiguous and refused."""
    plain = directory / base
    packed = directory / (base + GZIP_SUFFIX)
    if plain.is_file() and packed.is_file():
        raise DatabaseError(
            f"{directory} holds both {base} and {base}{GZIP_SUFFIX}; keep one of them "
            "(records index into one workload file, so the two cannot be read together)"
        )
    if plain.is_file():
        return plain
    if packed.is_file():
        return packed
    return None


def is_database_dir(path: Path) -> bool:
    """Whether ``path`` is a directory holding a workload or a record file (plain or gzip)."""
    path = Path(path)
    if not path.is_dir():
        return False
    names = (WORKLOAD_FILE, RECORD_FILE)
    return any((path / n).is_file() or (path / (n + GZIP_SUFFIX)).is_file() for n in names)


def database_files(directory: Path) -> DatabaseFiles:
    """The files of the database in ``directory``.

    Raises
    ------
    DatabaseError
        When ``directory`` holds neither file, or both a plain and a gzip copy of one of them.
    """
    directory = Path(directory)
    if not is_database_dir(directory):
        raise DatabaseError(
            f"{directory} is not a tuning database: it holds neither {WORKLOAD_FILE} nor "
            f"{RECORD_FILE} (plain or {GZIP_SUFFIX})"
        )
    return DatabaseFiles(
        workload=_pick(directory, WORKLOAD_FILE),
        records=_pick(directory, RECORD_FILE),
        directory=directory,
    )


def database_pair(workload: Path, records: Path) -> DatabaseFiles:
    """An explicit pair of files, as given to ``JSONDatabase(path_workload, path_tuning_record)``.

    Raises
    ------
    DatabaseError
        When either file does not exist.
    """
    workload, records = Path(workload), Path(records)
    for path in (workload, records):
        if not path.is_file():
            raise DatabaseError(f"database file not found: {path}")
    return DatabaseFiles(workload=workload, records=records, directory=records.parent)


def files_for_path(path: Path) -> DatabaseFiles:
    """The database named by a single file path (a record or a workload file).

    The other file of the pair is its sibling: the standard name, or the same name with
    ``tuning_record`` and ``workload`` swapped (``my_tuning_record.json`` → ``my_workload.json``).

    Raises
    ------
    DatabaseError
        When the sibling cannot be found.
    """
    path = Path(path)
    name = path.name
    if "tuning_record" in name:
        records, workload = path, path.with_name(name.replace("tuning_record", "workload"))
    elif "workload" in name:
        workload, records = path, path.with_name(name.replace("workload", "tuning_record"))
    else:
        raise DatabaseError(
            f"{path} is neither a database directory nor a *workload* / *tuning_record* file"
        )
    workload = _with_or_without_gzip(workload)
    records = _with_or_without_gzip(records)
    if not workload.is_file():
        raise DatabaseError(f"{path} has no workload file beside it (looked for {workload})")
    return DatabaseFiles(
        workload=workload, records=records if records.is_file() else None, directory=path.parent
    )


def _with_or_without_gzip(path: Path) -> Path:
    """``path`` if it exists, else its gzip (or plain) twin if that exists, else ``path``."""
    if path.is_file():
        return path
    name = path.name
    twin = name[: -len(GZIP_SUFFIX)] if name.endswith(GZIP_SUFFIX) else name + GZIP_SUFFIX
    return path.with_name(twin) if path.with_name(twin).is_file() else path


@dataclass(frozen=True)
class UnreadableFolder:
    """A folder of a records tree that cannot be read, and why.

    It cannot be listed or entered, or an entry named like a database file is not a readable
    regular file (a directory, a dangling symbolic link, a file without read permission).
    Whoever walks a tree reports these: silently passing over them would let ``db merge`` or
    ``library build`` write a part of the records as if it were all of them.
    """

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class FolderScan:
    """What :func:`scan_record_folders` found: database folders, and folders it cannot read."""

    databases: list[Path]
    unreadable: list[UnreadableFolder]


def _database_entry_problem(directory: Path) -> str | None:
    """Why an entry named like a database file in ``directory`` cannot be read, or None."""
    for base in (WORKLOAD_FILE, RECORD_FILE):
        for name in (base, base + GZIP_SUFFIX):
            entry = directory / name
            if not os.path.lexists(entry):
                continue
            if entry.is_symlink() and not entry.exists():
                return f"{name} is a dangling symbolic link"
            if entry.is_dir():
                return f"{name} is a directory, not a file"
            if not entry.is_file():
                return f"{name} is not a regular file"
            if not os.access(entry, os.R_OK):
                return f"{name} cannot be read (permission denied)"
    return None


def _folder_problem(directory: Path) -> str | None:
    if not os.access(directory, os.R_OK | os.X_OK):
        return "the folder cannot be read (permission denied)"
    return _database_entry_problem(directory)


def scan_record_folders(path: Path) -> FolderScan:
    """Database folders at or under ``path``, and the folders there that cannot be read.

    Parameters
    ----------
    path : Path
        A database folder or any folder searched recursively (symbolic links to folders are
        not followed).

    Returns
    -------
    FolderScan
        Sorted database folders (a folder with an unreadable database file is not among them)
        and the :class:`UnreadableFolder` entries, in walking order.

    Raises
    ------
    DatabaseError
        When ``path`` does not exist or is not a folder.
    """
    path = Path(path)
    if not path.exists():
        raise DatabaseError(f"no such database directory: {path}")
    if not path.is_dir():
        raise DatabaseError(f"{path} is a file, not a database directory")
    unreadable: list[UnreadableFolder] = []
    databases: list[Path] = []

    def on_error(err: OSError) -> None:
        where = Path(err.filename) if err.filename else path
        unreadable.append(UnreadableFolder(where, f"cannot be listed ({err.strerror or err})"))

    for dirpath, dirnames, _ in os.walk(path, onerror=on_error, followlinks=False):
        directory = Path(dirpath)
        dirnames.sort()  # deterministic order
        problem = _folder_problem(directory)
        if problem is not None:
            if not any(u.path == directory for u in unreadable):
                unreadable.append(UnreadableFolder(directory, problem))
            dirnames[:] = [] if not os.access(directory, os.R_OK | os.X_OK) else dirnames
            continue
        if is_database_dir(directory):
            databases.append(directory)
            if directory == path:
                break  # a database folder is taken alone, as find_databases does
    return FolderScan(sorted(databases), unreadable)


def find_databases(path: Path) -> list[Path]:
    """Database directories at or under ``path``.

    Parameters
    ----------
    path : Path
        A database directory (returned alone) or any directory searched recursively.

    Returns
    -------
    list of Path
        Sorted directories holding a workload or record file; empty when there are none.

    Raises
    ------
    DatabaseError
        When ``path`` does not exist or is not a directory.
    """
    path = Path(path)
    if not path.exists():
        raise DatabaseError(f"no such database directory: {path}")
    if not path.is_dir():
        raise DatabaseError(f"{path} is a file, not a database directory")
    if is_database_dir(path):
        return [path]
    return scan_record_folders(path).databases


def resolve_databases(
    path: Path, unreadable: list[UnreadableFolder] | None = None
) -> list[DatabaseFiles]:
    """All databases named by ``path``: a database dir, a tree of them, or one record/workload file.

    Parameters
    ----------
    path : Path
        As above.
    unreadable : list, optional
        Receives the :class:`UnreadableFolder` entries of the tree.

    Raises
    ------
    DatabaseError
        When ``path`` is missing or holds no database (and no unreadable folder).
    """
    path = Path(path)
    from ms_meta.data import pack  # packed parts (part-NNNN.tar.gz): a cached unpacked copy

    if pack.is_packed(path):
        return pack.packed_databases(path)
    if path.is_file():
        return [files_for_path(path)]
    scan = scan_record_folders(path)
    if unreadable is not None:
        unreadable.extend(scan.unreadable)
    found = scan.databases
    if not found and scan.unreadable and unreadable is not None:
        return []
    if not found:
        raise DatabaseError(
            f"no tuning database under {path}: expected {WORKLOAD_FILE} and {RECORD_FILE} "
            f"(plain or {GZIP_SUFFIX}) in it or in its sub-directories"
        )
    return [database_files(d) for d in found]


def read_meta(directory: Path) -> dict[str, Any] | None:
    """The ``meta.json`` of a database directory, or ``None`` when it has none.

    Raises
    ------
    DatabaseError
        When ``meta.json`` exists but is not a JSON object.
    """
    path = Path(directory) / META_FILE
    if not path.is_file():
        return None
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatabaseError(f"cannot read {path}: {err}") from None
    if not isinstance(meta, dict):
        raise DatabaseError(f"{path} must hold a JSON object, got {type(meta).__name__}")
    return meta


def default_records_root() -> Path | None:
    """The records root: ``$MS_META_RECORDS``, else the repository's ``tuning_records/``.

    Returns
    -------
    Path or None
        ``None`` when the variable is unset and the package is not next to a ``tuning_records/``
        directory (an installed wheel).
    """
    env = os.environ.get(RECORDS_ROOT_ENV)
    if env:
        return Path(env)
    candidate = Path(__file__).resolve().parents[2] / "tuning_records"
    return candidate if candidate.is_dir() else None


def task_dir(root: Path, target_key: str, task: str) -> Path:
    """``root/<target-key>/<task>``: where the records of one task on one target live.

    ``target_key`` comes from :func:`ms_meta.tuning.target.target_key`.
    """
    for part in (target_key, task):
        if not part or "/" in part or part in (".", ".."):
            raise DatabaseError(f"not a usable directory name: {part!r}")
    return Path(root) / target_key / task
