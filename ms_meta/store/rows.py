"""The record store's row types: what :class:`~ms_meta.store.sql.SqlStore` reads and writes.

Kept apart from the SQLite layer so that its module stays readable; plain dataclasses, no
SQLite and no TVM.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from ms_meta.run_secs import FAILURE_THRESHOLD_SECS
from ms_meta.store.msjson import RecordText

__all__ = ["AddResult", "ImportGroup", "StoredRecord", "StoredWorkload", "hash64", "trace_hash"]


def hash64(data: bytes) -> int:
    """The store's 64-bit hash (signed, as SQLite integers are) of instruction lists."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little", signed=True)


def trace_hash(insts_hash: int, decisions: str) -> int:
    """The identity of a trace: its instruction list's hash and its decisions."""
    return hash64(insts_hash.to_bytes(8, "little", signed=True) + decisions.encode())


@dataclass(frozen=True)
class StoredWorkload:
    """A workload row: MetaSchedule's structural-hash string, the base64 module text as
    ``database_workload.json`` holds it, and a task name when one is known."""

    id: int
    shash: str
    module: str
    name: str | None


@dataclass(frozen=True)
class StoredRecord:
    """A record row, with its parts as MetaSchedule JSON text (see :class:`RecordText`)."""

    id: int
    workload_id: int
    target_key: str
    text: RecordText
    mean_secs: float
    duplicates: int

    @property
    def is_valid(self) -> bool:
        """Whether the record holds a measurement (not a build or run failure)."""
        return self.mean_secs < FAILURE_THRESHOLD_SECS


@dataclass
class ImportGroup:
    """Part of one import source for :meth:`~ms_meta.store.sql.SqlStore.import_groups`.

    Attributes
    ----------
    workloads : list of (shash, module, name)
        The source's readable workload lines (added, or found, on first use).
    rows : list of tuple
        Records of this part, as :class:`~ms_meta.store.prepare.PreparedSource` rows with the
        workload line index replaced by a position in ``workloads``.
    targets, insts : dict
        Target texts with their values, instruction list hashes with their compressed text.
    source : (digest, path, lines_done, complete) or None
        The source's import progress after this part.
    workload_ids : list of int or None
        Store ids of ``workloads``, filled by the first commit (later parts of the same source
        share them).
    """

    workloads: list[tuple[str, str, str | None]]
    rows: list[tuple] = field(default_factory=list)
    targets: dict = field(default_factory=dict)
    insts: dict[int, bytes] = field(default_factory=dict)
    source: tuple[str, str, int, bool] | None = None
    workload_ids: list[int] | None = None


@dataclass(frozen=True)
class AddResult:
    """What one :meth:`SqlStore.add_records` call did."""

    added: int
    duplicates: int
