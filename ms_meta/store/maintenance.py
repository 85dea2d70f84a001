"""Store maintenance: ``ms-meta store gc`` (kept apart from the SQLite layer's module).

Deletes what is asked for, drops instruction lists no record uses, and rewrites the file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ms_meta.errors import DatabaseError
from ms_meta.run_secs import FAILURE_THRESHOLD_SECS

if TYPE_CHECKING:
    from ms_meta.store.sql import SqlStore

__all__ = ["gc"]


def gc(store: SqlStore, *, drop_failed: bool = False, keep_best: int | None = None) -> dict:
    """Compact the store; by default nothing measured is removed.

    Parameters
    ----------
    store : SqlStore
        The store.
    drop_failed, keep_best
        See below.

    Always: delete instruction lists no record uses, checkpoint the write-ahead log and
    ``VACUUM`` (rewrite the file without free pages). ``drop_failed`` also deletes failed
    records (build or run errors); ``keep_best = N`` deletes all but the N fastest valid
    records of every workload and target (and the failed ones).

    Returns
    -------
    dict
        ``records_deleted``, ``bytes_before``, ``bytes_after``.
    """
    if keep_best is not None and keep_best < 1:
        raise DatabaseError(f"--keep-best must be at least 1, got {keep_best}")
    before = store.file_bytes()
    with store.transaction() as conn:
        deleted = 0
        if drop_failed or keep_best is not None:
            deleted += conn.execute(
                f"DELETE FROM records WHERE mean_secs >= {FAILURE_THRESHOLD_SECS}"
            ).rowcount
        if keep_best is not None:
            deleted += conn.execute(
                "DELETE FROM records WHERE id IN (SELECT id FROM (SELECT id, row_number() "
                "OVER (PARTITION BY workload_id, key_id ORDER BY mean_secs, id) AS rank "
                "FROM records) WHERE rank > ?)",
                (keep_best,),
            ).rowcount
        conn.execute("DELETE FROM insts WHERE hash NOT IN (SELECT insts_hash FROM records)")
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('gc', 1) "
            "ON CONFLICT (key) DO UPDATE SET value = value + 1"
        )
    store._insts_seen.clear()
    store._insts_cache.clear()
    store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store._conn.execute("VACUUM")
    store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return {
        "records_deleted": deleted,
        "bytes_before": before,
        "bytes_after": store.file_bytes(),
    }
