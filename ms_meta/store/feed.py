"""Feeding the record store from measuring commands, without ever failing them.

A tuning run, One-Shot's verification or ``ms-meta collect`` has already done its work when it
offers its records to the store; a store that cannot be opened (a read-only cache directory, a
damaged file, another process holding the write lock past the timeout) must not turn that run
into an error. These helpers log a warning instead and return None. They take the same store
values as every ``store=`` argument (:mod:`ms_meta.store.access`): ``MS_META_STORE=none`` turns
the default store off.

Examples
--------
::

    from ms_meta.store.feed import feed_database, feed_json_databases

    database = ms.tune_tir(mod, target, work_dir, max_trials_global=64)
    feed_database(database)                    # the records MetaSchedule measured
    feed_json_databases(task_dir)              # or a JSON database already on disk
"""

from __future__ import annotations

import logging
import os
import sqlite3
from typing import Any

from ms_meta.errors import MsMetaError
from ms_meta.store.access import resolve_store_path
from ms_meta.store.jsondb import ImportReport, import_json_databases, scan_json_databases
from ms_meta.store.sql import SqlStore

__all__ = ["feed_database", "feed_json_databases"]

logger = logging.getLogger(__name__)

_STORE_FAILURES = (MsMetaError, OSError, sqlite3.Error)


def feed_json_databases(
    *paths: str | os.PathLike, store_path: str | os.PathLike | None = None
) -> ImportReport | None:
    """Import MetaSchedule JSON databases (directories or trees) into the store.

    Importing the same files again adds nothing, so a command may feed its whole output
    directory after every task. ``store_path`` is a ``store=`` value
    (:func:`~ms_meta.store.access.resolve_store_path`; None: the default store). Returns the
    import report, or None when the store is off or could not take the records (logged).
    """
    path = resolve_store_path("default" if store_path is None else store_path)
    if path is None:
        return None
    try:
        with SqlStore(path) as store:
            return import_json_databases(store, scan_json_databases(paths))
    except _STORE_FAILURES as err:
        logger.warning("records not added to the record store: %s", err)
        return None


def feed_database(database: Any, store_path: str | os.PathLike | None = None) -> int | None:
    """Copy every record of a MetaSchedule database (e.g. what ``tune_tir`` returns) into the
    store (``store_path`` as in :func:`feed_json_databases`); returns the number of records
    read, or None when the store is off or could not take them (logged). Imports TVM."""
    from ms_meta.store.database import RecordStore

    path = resolve_store_path("default" if store_path is None else store_path)
    if path is None:
        return None
    try:
        store = RecordStore(path)
        try:
            return store.record_database(database)
        finally:
            store.close()
    except _STORE_FAILURES as err:
        logger.warning("records not added to the record store: %s", err)
        return None
