"""The record store's SQLite layer: schema, inserts with deduplication, and target-keyed queries.

Plain Python over the standard library's ``sqlite3`` (no TVM), so the storage rules are tested
in milliseconds and the TVM adapter (:mod:`ms_meta.store.database`) stays thin.

One file holds everything. It runs in WAL mode with a busy timeout, so several processes can
tune into it at once (readers never wait; writers queue), and every write is one transaction:
a process killed mid-write loses that transaction only and leaves the file readable.

Storage rules
-------------
* A record is identified by (workload, target key, trace). Committing the same trace again for
  the same workload and target keeps the first measurement and counts the repeat in
  ``duplicates``; the one exception is a stored failure (build or run error) followed by a valid
  measurement, which replaces the failure (a failure is often the machine, not the schedule).
* Each part of a record is kept as the exact JSON text MetaSchedule wrote, so an export is
  byte-equal to what was imported. A trace's instruction list is shared by many records (the
  search mostly changes decisions), so instruction lists are stored once, zlib-compressed, keyed
  by a 64-bit hash; records hold that hash and their own decision list.
* Latency order is the mean of ``run_secs``; failed records (``run_secs`` missing or >= 1e9 s,
  :mod:`ms_meta.run_secs`) are kept with mean 1e10 and never returned by best-record queries.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ms_meta.errors import DatabaseError
from ms_meta.run_secs import FAILED_RUN_SECS, FAILURE_THRESHOLD_SECS
from ms_meta.store.msjson import RecordText, mean_run_secs
from ms_meta.store.rows import (
    AddResult,
    ImportGroup,
    StoredRecord,
    StoredWorkload,
    hash64,
    trace_hash,
)
from ms_meta.store.targets import target_key

__all__ = [
    "STORE_ENV",
    "STORE_FORMAT_VERSION",
    "ImportGroup",
    "SqlStore",
    "StoredRecord",
    "StoredWorkload",
    "default_store_path",
]

STORE_FORMAT_VERSION = 1
STORE_ENV = "MS_META_STORE"  # overrides the default store file
DEFAULT_BUSY_TIMEOUT_S = 60.0
_INSTS_CACHE_SIZE = 4096
_INSTS_HASH_CACHE_SIZE = 8192
_BULK_CHECKPOINT_PAGES = 25_000  # about 100 MB of log between checkpoints

_SHASH = "workloads_shash"
_SHASH_INDEX = f"CREATE INDEX IF NOT EXISTS {_SHASH} ON workloads (shash)"
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS target_keys (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS targets (
    id INTEGER PRIMARY KEY, key_id INTEGER NOT NULL, config TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS workloads (
    id INTEGER PRIMARY KEY, shash TEXT NOT NULL, module TEXT NOT NULL, name TEXT,
    UNIQUE (shash, module));
{_SHASH_INDEX};
CREATE TABLE IF NOT EXISTS insts (hash INTEGER PRIMARY KEY, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY,
    workload_id INTEGER NOT NULL,
    key_id INTEGER NOT NULL,
    target_id INTEGER NOT NULL,
    trace_hash INTEGER NOT NULL,
    insts_hash INTEGER NOT NULL,
    decisions TEXT NOT NULL,
    run_secs TEXT NOT NULL,
    mean_secs REAL NOT NULL,
    args_info TEXT NOT NULL,
    duplicates INTEGER NOT NULL DEFAULT 0,
    added REAL NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS records_identity ON records (workload_id, key_id, trace_hash);
CREATE INDEX IF NOT EXISTS records_best ON records (workload_id, key_id, mean_secs);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sources (
    digest TEXT PRIMARY KEY, path TEXT NOT NULL, lines_done INTEGER NOT NULL,
    complete INTEGER NOT NULL, updated REAL NOT NULL);
PRAGMA user_version = {STORE_FORMAT_VERSION};
"""

# Keep the first measurement; a valid measurement replaces a stored failure.
_REPLACE = (
    f"(records.mean_secs >= {FAILURE_THRESHOLD_SECS} "
    f"AND excluded.mean_secs < {FAILURE_THRESHOLD_SECS})"
)
_INSERT_RECORD = f"""
INSERT INTO records (workload_id, key_id, target_id, trace_hash, insts_hash, decisions, run_secs,
                     mean_secs, args_info, added)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (workload_id, key_id, trace_hash) DO UPDATE SET
    duplicates = records.duplicates + 1,
    target_id = CASE WHEN {_REPLACE} THEN excluded.target_id ELSE records.target_id END,
    run_secs = CASE WHEN {_REPLACE} THEN excluded.run_secs ELSE records.run_secs END,
    args_info = CASE WHEN {_REPLACE} THEN excluded.args_info ELSE records.args_info END,
    mean_secs = CASE WHEN {_REPLACE} THEN excluded.mean_secs ELSE records.mean_secs END
"""
_RECORD_COLUMNS = (
    "r.id, r.workload_id, k.key, t.config, r.insts_hash, r.decisions, r.run_secs, r.mean_secs, "
    "r.args_info, r.duplicates"
)
_RECORD_FROM = (
    "records r JOIN targets t ON t.id = r.target_id JOIN target_keys k ON k.id = r.key_id"
)


def default_store_path() -> Path:
    """``$MS_META_STORE``, else ``$XDG_CACHE_HOME/ms-meta/records.sqlite``, else
    ``~/.cache/ms-meta/records.sqlite``."""
    if os.environ.get(STORE_ENV):
        return Path(os.environ[STORE_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "ms-meta" / "records.sqlite"


class SqlStore:
    """One SQLite record-store file (TVM-free).

    Parameters
    ----------
    path : str or Path, optional
        The store file; created with its directory when missing. Default:
        :func:`default_store_path`.
    busy_timeout : float
        Seconds a write waits for another process's write to finish before failing.

    Raises
    ------
    DatabaseError
        When the file is not a record store (or not SQLite), or was written by a newer format.
    """

    def __init__(
        self, path: str | os.PathLike | None = None, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT_S
    ) -> None:
        self.path = Path(path) if path is not None else default_store_path()
        if self.path.is_dir():
            raise DatabaseError(f"{self.path} is a directory, not a record store file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._conn = sqlite3.connect(
                self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version > STORE_FORMAT_VERSION:
                raise DatabaseError(
                    f"{self.path} is a record store of format {version}; this ms-meta reads "
                    f"format {STORE_FORMAT_VERSION} (upgrade ms-meta)"
                )
            if version < STORE_FORMAT_VERSION:
                with self.transaction():
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            self._conn.execute(statement)
            self._add_shash_index()
        except sqlite3.DatabaseError as err:
            raise DatabaseError(f"{self.path} is not a record store: {err}") from None
        self._key_ids: dict[str, int | None] = {}
        self._targets: dict[str, tuple[int, int]] = {}
        self._insts_seen: set[int] = set()  # instruction lists known to be stored
        self._insts_hashes: dict[str, int] = {}
        self._gc_generation = 0
        self._insts_cache: OrderedDict[int, str] = OrderedDict()

    def _add_shash_index(self) -> None:
        """The workload-hash index of files written before it existed (same format: the
        ``UNIQUE (shash, module)`` index serves the lookup too, but its entries hold whole
        modules, so a lookup in a fresh connection reads several pages)."""
        if not self._conn.execute(
            f"SELECT 1 FROM sqlite_master WHERE name = '{_SHASH}'"
        ).fetchone():
            try:
                with self.transaction():
                    self._conn.execute(_SHASH_INDEX)
            except sqlite3.OperationalError:  # a read-only file: the lookup works without it
                pass

    # ---- connection and transactions ---------------------------------------------------------

    def close(self) -> None:
        """Close the connection (the file stays as it is)."""
        self._conn.close()

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the write lock at once (``BEGIN IMMEDIATE``), so two
        processes never deadlock upgrading read locks; rolled back on any exception."""
        with self._lock:  # one connection may be shared by threads (MetaSchedule callbacks)
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def bulk(self) -> Iterator[None]:
        """Fewer write-ahead-log checkpoints while importing many records (each checkpoint
        syncs the file); the usual checkpointing resumes afterwards."""
        self._conn.execute(f"PRAGMA wal_autocheckpoint = {_BULK_CHECKPOINT_PAGES}")
        try:
            yield
        finally:
            self._conn.execute("PRAGMA wal_autocheckpoint = 1000")

    # ---- targets and workloads ---------------------------------------------------------------

    def _target_ids(self, config_text: str, config: dict | None) -> tuple[int, int]:
        """(target_id, key_id) of a target config text; call inside a transaction."""
        ids = self._targets.get(config_text)
        if ids is None:
            key = target_key(config)
            self._conn.execute("INSERT OR IGNORE INTO target_keys (key) VALUES (?)", (key,))
            key_id = self._conn.execute(
                "SELECT id FROM target_keys WHERE key = ?", (key,)
            ).fetchone()[0]
            self._conn.execute(
                "INSERT OR IGNORE INTO targets (key_id, config) VALUES (?, ?)",
                (key_id, config_text),
            )
            target_id = self._conn.execute(
                "SELECT id FROM targets WHERE config = ?", (config_text,)
            ).fetchone()[0]
            ids = self._targets[config_text] = (target_id, key_id)
            self._key_ids[key] = key_id
        return ids

    def key_id(self, key: str) -> int | None:
        """The id of a target key, or None when no record of that target was ever stored."""
        if self._key_ids.get(key) is None:
            row = self._conn.execute("SELECT id FROM target_keys WHERE key = ?", (key,)).fetchone()
            self._key_ids[key] = row[0] if row else None
        return self._key_ids[key]

    def add_workload(self, shash: str, module: str, name: str | None = None) -> int:
        """The id of a workload, added when new (``name`` fills a missing name)."""
        with self.transaction():
            return self._add_workload(shash, module, name)

    def _add_workload(self, shash: str, module: str, name: str | None) -> int:
        self._conn.execute(
            "INSERT OR IGNORE INTO workloads (shash, module, name) VALUES (?, ?, ?)",
            (shash, module, name),
        )
        row = self._conn.execute(
            "SELECT id, name FROM workloads WHERE shash = ? AND module = ?", (shash, module)
        ).fetchone()
        if name and not row[1]:
            self._conn.execute("UPDATE workloads SET name = ? WHERE id = ?", (name, row[0]))
        return row[0]

    def add_workloads(self, rows: Sequence[tuple[str, str, str | None]]) -> list[int]:
        """Ids of several ``(shash, module, name)`` workloads, added in one transaction."""
        with self.transaction():
            return [self._add_workload(*row) for row in rows]

    def workload_ids(self, shash: str) -> list[int]:
        """Ids of the stored workloads with MetaSchedule structural hash ``shash``."""
        rows = self._conn.execute("SELECT id FROM workloads WHERE shash = ?", (shash,))
        return [row[0] for row in rows]

    def workload(self, workload_id: int) -> StoredWorkload:
        """One workload row."""
        row = self._conn.execute(
            "SELECT id, shash, module, name FROM workloads WHERE id = ?", (workload_id,)
        ).fetchone()
        if row is None:
            raise DatabaseError(f"{self.path} has no workload {workload_id}")
        return StoredWorkload(*row)

    def workloads(self) -> list[StoredWorkload]:
        """All workload rows, in the order they were added."""
        rows = self._conn.execute("SELECT id, shash, module, name FROM workloads ORDER BY id")
        return [StoredWorkload(*row) for row in rows]

    # ---- records -----------------------------------------------------------------------------

    def add_records(
        self,
        records: Iterable[tuple[int, RecordText]],
        *,
        source: tuple[str, str, int, bool] | None = None,
    ) -> AddResult:
        """Add ``(workload_id, record)`` pairs in one transaction (see the module's storage
        rules for duplicates).

        ``source = (digest, path, lines_done, complete)`` records an import's progress in the
        same transaction, so a killed import resumes exactly after its last committed batch.
        """
        with self.transaction() as conn:
            self._check_gc(conn)
            before = self._max_record_id(conn)
            count = self._insert_records(conn, records, time.time())
            if source is not None:
                self._set_source_progress(conn, source)
            added = self._added_since(conn, before)
        return AddResult(added=added, duplicates=count - added)

    def import_groups(self, groups: Sequence[ImportGroup]) -> AddResult:
        """Add the workloads and records of several import groups, and each group's import
        progress, in one transaction (what :func:`~ms_meta.store.jsondb.import_json_databases`
        commits per batch). Fills each group's ``workload_ids``."""
        now = time.time()
        count = 0
        with self.transaction() as conn:
            self._check_gc(conn)
            before = self._max_record_id(conn)
            for group in groups:
                if group.workload_ids is None:
                    group.workload_ids = [self._add_workload(*row) for row in group.workloads]
                count += self._insert_prepared(conn, group, now)
                if group.source is not None:
                    self._set_source_progress(conn, group.source)
            added = self._added_since(conn, before)
        return AddResult(added=added, duplicates=count - added)

    @staticmethod
    def _max_record_id(conn: sqlite3.Connection) -> int:
        return conn.execute("SELECT coalesce(max(id), 0) FROM records").fetchone()[0]

    @staticmethod
    def _added_since(conn: sqlite3.Connection, before: int) -> int:
        return conn.execute("SELECT count(*) FROM records WHERE id > ?", (before,)).fetchone()[0]

    def _insts_hash(self, insts: str) -> int:
        """The stored hash of an instruction list (remembered: many records share one)."""
        insts_hash = self._insts_hashes.get(insts)
        if insts_hash is None:
            if len(self._insts_hashes) >= _INSTS_HASH_CACHE_SIZE:
                self._insts_hashes.clear()
            insts_hash = self._insts_hashes[insts] = hash64(insts.encode())
        return insts_hash

    def _insert_records(
        self, conn: sqlite3.Connection, records: Iterable[tuple[int, RecordText]], now: float
    ) -> int:
        """Insert records inside the caller's transaction; returns how many were given."""
        rows, new_insts = [], []
        for workload_id, rec in records:
            target_id, key_id = self._target_ids(rec.target, rec.target_value)
            insts_hash = self._insts_hash(rec.insts)
            if insts_hash not in self._insts_seen:
                new_insts.append((insts_hash, zlib.compress(rec.insts.encode(), 1)))
                self._insts_seen.add(insts_hash)
            mean = mean_run_secs(rec.run_secs_value, FAILED_RUN_SECS)
            rows.append((
                workload_id, key_id, target_id, trace_hash(insts_hash, rec.decisions), insts_hash,
                rec.decisions, rec.run_secs, mean, rec.args_info, now,
            ))  # fmt: skip
        try:
            conn.executemany("INSERT OR IGNORE INTO insts (hash, body) VALUES (?, ?)", new_insts)
            conn.executemany(_INSERT_RECORD, rows)
        except BaseException:
            self._insts_seen.difference_update(h for h, _ in new_insts)  # rolled back
            raise
        return len(rows)

    def _insert_prepared(self, conn: sqlite3.Connection, group: ImportGroup, now: float) -> int:
        ids, targets, seen = group.workload_ids, group.targets, self._insts_seen
        target_ids = {text: self._target_ids(text, value) for text, value in targets.items()}
        new_insts = [(h, body) for h, body in group.insts.items() if h not in seen]
        rows = [
            (ids[index], *target_ids[target][::-1], *rest, now)
            for _, index, target, *rest in group.rows
        ]
        try:
            conn.executemany("INSERT OR IGNORE INTO insts (hash, body) VALUES (?, ?)", new_insts)
            seen.update(h for h, _ in new_insts)
            conn.executemany(_INSERT_RECORD, rows)
        except BaseException:
            self._insts_seen.difference_update(h for h, _ in new_insts)  # rolled back
            raise
        return len(rows)

    @staticmethod
    def _set_source_progress(conn: sqlite3.Connection, source: tuple[str, str, int, bool]) -> None:
        digest, path, lines_done, complete = source
        conn.execute(
            "INSERT INTO sources (digest, path, lines_done, complete, updated) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (digest) DO UPDATE SET "
            "lines_done = excluded.lines_done, complete = excluded.complete, "
            "updated = excluded.updated",
            (digest, path, lines_done, int(complete), time.time()),
        )

    def _check_gc(self, conn: sqlite3.Connection) -> None:
        """Forget which instruction lists are stored when a gc (in any process) ran since."""
        row = conn.execute("SELECT value FROM meta WHERE key = 'gc'").fetchone()
        generation = row[0] if row else 0
        if generation != self._gc_generation:
            self._insts_seen.clear()
            self._gc_generation = generation

    def source_progress(self, digest: str) -> tuple[int, bool]:
        """``(lines imported, complete)`` of an import source (``(0, False)`` when new)."""
        row = self._conn.execute(
            "SELECT lines_done, complete FROM sources WHERE digest = ?", (digest,)
        ).fetchone()
        return (row[0], bool(row[1])) if row else (0, False)

    def _insts(self, insts_hash: int) -> str:
        text = self._insts_cache.get(insts_hash)
        if text is None:
            row = self._conn.execute(
                "SELECT body FROM insts WHERE hash = ?", (insts_hash,)
            ).fetchone()
            if row is None:
                raise DatabaseError(f"{self.path} is damaged: a trace's instructions are missing")
            text = zlib.decompress(row[0]).decode()
            self._insts_cache[insts_hash] = text
            if len(self._insts_cache) > _INSTS_CACHE_SIZE:
                self._insts_cache.popitem(last=False)
        else:
            self._insts_cache.move_to_end(insts_hash)
        return text

    def _record(self, row: tuple) -> StoredRecord:
        rid, workload_id, key, config, insts_hash, decisions, run_secs, mean, args, dups = row
        text = RecordText(
            insts=self._insts(insts_hash),
            decisions=decisions,
            run_secs=run_secs,
            target=config,
            args_info=args,
            run_secs_value=None,
            target_value=None,
        )
        return StoredRecord(rid, workload_id, key, text, mean, dups)

    def best(self, workload_ids: Sequence[int], key: str, k: int) -> list[StoredRecord]:
        """The ``k`` fastest valid records of the workloads for target key ``key``."""
        key_id = self.key_id(key)
        if key_id is None or k <= 0 or not workload_ids:
            return []
        marks = ",".join("?" * len(workload_ids))
        rows = self._conn.execute(
            f"SELECT {_RECORD_COLUMNS} FROM {_RECORD_FROM} WHERE r.workload_id IN ({marks}) "
            f"AND r.key_id = ? AND r.mean_secs < {FAILURE_THRESHOLD_SECS} "
            "ORDER BY r.mean_secs, r.id LIMIT ?",
            (*workload_ids, key_id, k),
        ).fetchall()
        return [self._record(row) for row in rows]

    def records(
        self, *, workload_id: int | None = None, key: str | None = None
    ) -> Iterator[StoredRecord]:
        """Records (valid and failed) in the order they were added, optionally of one workload
        and/or one target key."""
        where, args = [], []
        if workload_id is not None:
            where.append("r.workload_id = ?")
            args.append(workload_id)
        if key is not None:
            key_id = self.key_id(key)
            if key_id is None:
                return
            where.append("r.key_id = ?")
            args.append(key_id)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        query = f"SELECT {_RECORD_COLUMNS} FROM {_RECORD_FROM} {clause} ORDER BY r.id"
        cursor = self._conn.execute(query, args)
        while rows := cursor.fetchmany(1024):  # a million records do not fit in memory as text
            for row in rows:
                yield self._record(row)

    def best_per_workload(self, key: str, k: int = 1) -> Iterator[StoredRecord]:
        """The ``k`` fastest valid records of every workload measured for target key ``key``,
        grouped by workload (fastest first within a workload)."""
        key_id = self.key_id(key)
        if key_id is None or k <= 0:
            return
        query = (
            f"SELECT * FROM (SELECT {_RECORD_COLUMNS}, row_number() OVER "
            "(PARTITION BY r.workload_id ORDER BY r.mean_secs, r.id) AS rank "
            f"FROM {_RECORD_FROM} WHERE r.key_id = ? AND r.mean_secs < {FAILURE_THRESHOLD_SECS}) "
            "WHERE rank <= ? ORDER BY workload_id, rank"
        )
        for row in self._conn.execute(query, (key_id, k)).fetchall():
            yield self._record(row[:-1])

    def groups(self) -> list[tuple[int, str, str]]:
        """``(workload_id, target key, first target config)`` of every workload-target pair that
        has records, in the order the pairs first appeared."""
        rows = self._conn.execute(
            "SELECT r.workload_id, k.key, t.config FROM records r "
            "JOIN target_keys k ON k.id = r.key_id JOIN targets t ON t.id = r.target_id "
            "WHERE r.id IN (SELECT min(id) FROM records GROUP BY workload_id, key_id) ORDER BY r.id"
        )
        return [tuple(row) for row in rows]

    def count(self, key: str | None = None) -> int:
        """Number of records (of one target key when given)."""
        if key is None:
            return self._conn.execute("SELECT count(*) FROM records").fetchone()[0]
        key_id = self.key_id(key)
        if key_id is None:
            return 0
        return self._conn.execute(
            "SELECT count(*) FROM records WHERE key_id = ?", (key_id,)
        ).fetchone()[0]

    def stats(self) -> dict:
        """Counts for ``ms-meta store stats``: records, valid records, repeats, workloads, and
        per target key its records, valid records, workloads and one config."""
        per_target = [
            {
                "key": key,
                "config": config,
                "records": n,
                "valid": valid,
                "workloads": workloads,
            }
            for key, config, n, valid, workloads in self._conn.execute(
                "SELECT k.key, (SELECT config FROM targets WHERE key_id = k.id ORDER BY id "
                "LIMIT 1), count(*), "
                f"sum(r.mean_secs < {FAILURE_THRESHOLD_SECS}), count(DISTINCT r.workload_id) "
                "FROM records r JOIN target_keys k ON k.id = r.key_id GROUP BY k.id ORDER BY k.key"
            )
        ]
        n, duplicates = self._conn.execute(
            "SELECT count(*), coalesce(sum(duplicates), 0) FROM records"
        ).fetchone()
        return {
            "path": str(self.path),
            "records": n,
            "valid": sum(t["valid"] for t in per_target),
            "duplicates": duplicates,
            "workloads": self._conn.execute("SELECT count(*) FROM workloads").fetchone()[0],
            "traces_instruction_lists": self._conn.execute("SELECT count(*) FROM insts").fetchone()[
                0
            ],
            "targets": per_target,
            "file_bytes": self.file_bytes(),
        }

    def file_bytes(self) -> int:
        """Size of the store file plus its write-ahead log."""
        wal = self.path.with_name(self.path.name + "-wal")
        return self.path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)

    # ---- maintenance -------------------------------------------------------------------------

    def gc(self, *, drop_failed: bool = False, keep_best: int | None = None) -> dict:
        """Compact the store (:func:`ms_meta.store.maintenance.gc`); returns
        ``records_deleted``, ``bytes_before``, ``bytes_after``."""
        from ms_meta.store.maintenance import gc

        return gc(self, drop_failed=drop_failed, keep_best=keep_best)

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` result (``"ok"`` for a sound file)."""
        return self._conn.execute("PRAGMA integrity_check").fetchone()[0]
