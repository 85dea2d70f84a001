"""What a ``store=`` argument names, and opening the record store to learn from it.

Everything that measures records into the store or learns from it (One-Shot, measured tuning,
:class:`~ms_meta.MetaCostModel`, ``ms-meta pretrain --from-store``) takes the same argument:
``"default"`` (``$MS_META_STORE``, else the user's cache file), a path, or ``None`` /
``"none"`` to leave the store alone. ``MS_META_STORE=none`` turns the default off everywhere,
e.g. for a benchmark that must not learn from earlier runs.

Reading never fails the caller either: a store file that does not exist is not created (there
is nothing to learn from it), and one that cannot be opened costs a logged warning.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path
from typing import Any, Literal

from ms_meta.errors import MsMetaError
from ms_meta.store.sql import STORE_ENV, default_store_path

__all__ = ["STORE_OFF", "Store", "open_store", "resolve_store_path"]

logger = logging.getLogger(__name__)

Store = str | os.PathLike | Literal["default"] | None
STORE_OFF = "none"  # the word that turns the store off, as an argument or in $MS_META_STORE


def resolve_store_path(store: Store) -> Path | None:
    """The store file ``store`` names; None when the store is off.

    Examples
    --------
    >>> resolve_store_path(None) is None and resolve_store_path("none") is None
    True
    >>> resolve_store_path("/tmp/mine.sqlite")
    PosixPath('/tmp/mine.sqlite')
    """
    if store is None:
        return None
    if isinstance(store, str):
        if store.lower() == STORE_OFF:
            return None
        if store == "default":
            if os.environ.get(STORE_ENV, "").strip().lower() == STORE_OFF:
                return None
            return default_store_path()
    return Path(store).expanduser()


def open_store(store: Store, *, target: Any = None):
    """The :class:`~ms_meta.store.database.RecordStore` to read, or None when the store is off,
    its file does not exist, or it cannot be opened (logged). Imports TVM."""
    path = resolve_store_path(store)
    if path is None or not path.is_file():
        return None
    from ms_meta.store.database import RecordStore

    try:
        return RecordStore(path, target=target)
    except (MsMetaError, OSError, sqlite3.Error) as err:
        logger.warning("the record store %s cannot be read, so nothing is learned from it: %s",
                       path, err)  # fmt: skip
        return None
