"""A target-aware store of measured tuning records in one SQLite file.

``RecordStore`` is a MetaSchedule database (tune into it, compile from it) whose lookups return
only records of the same target; ``SqlStore`` is the TVM-free layer underneath; the JSON
functions import and export MetaSchedule JSON databases byte for byte; ``resolve_store_path``
and ``open_store`` say which store a ``store=`` argument names and open it to learn from.
``RecordStore`` is loaded on first use, so ``import ms_meta.store`` does not import TVM.
"""

from __future__ import annotations

from ms_meta.store.access import open_store, resolve_store_path
from ms_meta.store.feed import feed_database, feed_json_databases
from ms_meta.store.jsondb import (
    ImportReport,
    JsonSource,
    export_json_databases,
    import_json_databases,
    scan_json_databases,
)
from ms_meta.store.sql import SqlStore, StoredRecord, StoredWorkload, default_store_path
from ms_meta.store.targets import target_key

__all__ = [
    "ImportReport",
    "JsonSource",
    "RecordStore",
    "SqlStore",
    "StoredRecord",
    "StoredWorkload",
    "default_store_path",
    "export_json_databases",
    "feed_database",
    "feed_json_databases",
    "import_json_databases",
    "open_store",
    "resolve_store_path",
    "scan_json_databases",
    "target_key",
]


def __getattr__(name: str):
    if name == "RecordStore":
        from ms_meta.store.database import RecordStore

        return RecordStore
    raise AttributeError(f"module 'ms_meta.store' has no attribute {name!r}")
