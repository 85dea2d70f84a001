"""The record store's measurements of a task, as the first samples a cost model adapts to.

A search of a task that was measured before (by ``ms-meta tune``, ``collect``, One-Shot's
``--verify`` or an import) need not start from the meta-parameters: the record store
(:mod:`ms_meta.store`) holds those measurements, filed by target. :class:`WarmStart` finds them
for :class:`~ms_meta.MetaCostModel` the first time it meets a task, as MetaSchedule measure
candidates with their latencies, so that the model adapts before the search measures anything.
Only records of the same workload (structurally equal) and the same target are used.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from typing import Any

from ms_meta.errors import MsMetaError

__all__ = ["MIN_WARM_SAMPLES", "WarmStart"]

logger = logging.getLogger(__name__)

# Adaptation ranks samples against each other: fewer than two valid ones teach nothing.
MIN_WARM_SAMPLES = 2


class WarmStart:
    """Finds a task's stored measurements once per task.

    Parameters
    ----------
    store : "default", path or None
        The record store (:func:`~ms_meta.store.access.resolve_store_path`); None: never any.
    """

    def __init__(self, store: str | os.PathLike | None) -> None:
        self.store = store
        self._seen: set[str] = set()
        self._record_store: Any = None

    def first_time(self, task_key: str) -> bool:
        """Whether the task is met for the first time (it is then marked as met)."""
        if task_key in self._seen:
            return False
        self._seen.add(task_key)
        return True

    def _open(self) -> Any:
        if self._record_store is None:
            from ms_meta.store.access import open_store

            # opened on first need (and again later if the file did not exist yet)
            self._record_store = open_store(self.store)
        return self._record_store

    def samples(
        self, context: Any, target: Any, limit: int
    ) -> tuple[list[Any], list[float | None]] | None:
        """``(measure candidates, latencies)`` of the store's last ``limit`` records of the
        task of ``context`` (its module; its target, else ``target``), a failed record's
        latency None; None when the store is off or holds fewer than
        :data:`MIN_WARM_SAMPLES` valid records of the task."""
        if self.store is None or context is None or getattr(context, "mod", None) is None:
            return None
        record_store = self._open()
        if record_store is None:
            return None
        try:
            found = record_store.measured_candidates(
                context.mod, getattr(context, "target", None) or target, limit
            )
        except (MsMetaError, OSError, sqlite3.Error) as err:
            logger.warning("no warm start from the record store: %s", err)
            return None
        if sum(run_secs is not None for _, run_secs in found) < MIN_WARM_SAMPLES:
            return None
        # the minimum over repeats, as the cost model's update and the pretraining data take
        latencies = [min(run_secs) if run_secs else None for _, run_secs in found]
        return [candidate for candidate, _ in found], latencies
