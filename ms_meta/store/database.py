"""``RecordStore``: the record store as a MetaSchedule database (a thin TVM adapter).

``ms.tune_tir(..., database=RecordStore(target=target))`` tunes into the store, and
``compile_tir`` / ``compile_relax`` compile from it; lookups return only records measured for
the same target (kind, CPU, ``mattr`` features, core count: :mod:`ms_meta.store.targets`),
never another CPU's. Storage, deduplication and queries live in :mod:`ms_meta.store.sql`;
this module only converts between TVM objects and the MetaSchedule JSON text stored there.

``query_tuning_record`` builds the best record's trace straight from its JSON
(:mod:`ms_meta.store.traces`, well under a millisecond) instead of replaying it on the workload
the way ``TuningRecord.from_json`` does (milliseconds); ``query_schedule`` applies that trace and,
should it not apply, falls back to the next records, replayed. Records handed to a search
(``get_top_k``, ``get_all_tuning_records``) are always replayed, as MetaSchedule's own databases
do when they load.

MetaSchedule's ``get_top_k(workload, k)`` carries no target. The store answers it for the
target it was opened for (``target=``); without one, for the target of an enclosing
``with target:``, else of the last record committed or queried through it; with nothing to go
on it returns no records (a fresh search rather than another CPU's schedules).
"""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import tvm
import tvm_ffi
from tvm.ir import IRModule
from tvm.ir.utils import derived_object
from tvm.s_tir import Schedule
from tvm.s_tir.meta_schedule import _ffi_api
from tvm.s_tir.meta_schedule.arg_info import ArgInfo
from tvm.s_tir.meta_schedule.database import Database, PyDatabase, TuningRecord, Workload
from tvm.target import Target
from tvm.tirx import FloatImm, IntImm
from tvm_ffi import Array, Map

from ms_meta.errors import first_line
from ms_meta.store.jsondb import ImportReport, import_json_databases, scan_json_databases
from ms_meta.store.msjson import RecordText, dumps
from ms_meta.store.sql import DEFAULT_BUSY_TIMEOUT_S, SqlStore, StoredRecord
from ms_meta.store.targets import target_key
from ms_meta.store.traces import NeedsReplay, build_trace, workload_block_names

__all__ = ["RecordStore"]

logger = logging.getLogger(__name__)

_UINT64 = 1 << 64
_OBJECT_CACHE_SIZE = 4096
_TARGET_CACHE_SIZE = 64
_FALLBACK_CANDIDATES = 8  # records tried when the best one's trace does not replay
_TO_JSON_GRAPH = tvm_ffi.get_global_func("ffi.ToJSONGraph")
_STRINGIFY = tvm_ffi.get_global_func("ffi.json.Stringify")


def _plain(obj: Any) -> Any:
    """TVM FFI containers and scalars as plain Python (what ``Target.export()`` returns)."""
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, str):
        return str(obj)
    if hasattr(obj, "items"):
        return {str(k): _plain(v) for k, v in obj.items()}
    if hasattr(obj, "value"):  # IntImm / FloatImm
        return _plain(obj.value)
    return [_plain(v) for v in obj]


def key_of(target: Target | dict | None) -> str:
    """The store's target key of a TVM target (or a target config dict)."""
    if isinstance(target, Target):
        return target_key(_plain(target.export()))
    return target_key(target)


def _shash(mod: IRModule) -> str:
    """MetaSchedule's workload hash string (``database_workload.json``'s first field)."""
    return str(tvm_ffi.structural_hash(mod) % _UINT64)


def _json_value(obj: Any) -> Any:
    """A TVM JSON container as plain Python, the way MetaSchedule's writer prints it.

    The writer prints a plain boolean (an instruction attribute such as Split's
    ``preserve_unit_iters``) as ``1``/``0`` and a boolean-typed ``IntImm`` as ``true``/``false``;
    ``TuningRecord.as_json`` loses that difference, so the FFI containers are read here.
    """
    if isinstance(obj, bool):
        return int(obj)
    if isinstance(obj, IntImm):
        return bool(obj.value) if str(obj.ty) == "bool" else int(obj.value)
    if isinstance(obj, FloatImm):
        return float(obj.value)
    if obj is None or isinstance(obj, (bool, int, float)):
        return obj
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, Map):
        return {str(k): _json_value(v) for k, v in obj.items()}
    if isinstance(obj, Array):
        return [_json_value(v) for v in obj]
    # Other objects (an IndexMap): their JSON graph as a string, indented as the writer does.
    return _STRINGIFY(_TO_JSON_GRAPH(obj, {"tvm_version": tvm.__version__}), 2)


def record_text(record: TuningRecord) -> RecordText:
    """A TVM tuning record as the MetaSchedule JSON text of its parts."""
    trace, run_secs, target, args_info = _json_value(_ffi_api.TuningRecordAsJSON(record))
    return RecordText(
        insts=dumps(trace[0]),
        decisions=dumps(trace[1]),
        run_secs=dumps(run_secs),
        target=dumps(target),
        args_info=dumps(args_info),
        run_secs_value=run_secs,
        target_value=target,
    )


@derived_object
class RecordStore(PyDatabase):
    """A target-aware MetaSchedule database kept in one SQLite file.

    Parameters
    ----------
    path : str or Path, optional
        The store file. Default: ``$MS_META_STORE``, else
        ``$XDG_CACHE_HOME/ms-meta/records.sqlite`` (``~/.cache/ms-meta/records.sqlite``).
    target : Target or dict, optional
        The target that target-less calls (``get_top_k``, ``get_all_tuning_records``,
        ``len``) answer for; queries with a target always use their own.
    busy_timeout : float
        Seconds a commit waits for another process's commit.

    Examples
    --------
    ::

        store = RecordStore(target=target)
        ms.tune_tir(mod, target, work_dir, max_trials_global=64, database=store)
        sch = ms.tir_integration.compile_tir(store, mod, target)
    """

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        *,
        target: Target | dict | None = None,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT_S,
    ) -> None:
        super().__init__()
        self._sql = SqlStore(path, busy_timeout=busy_timeout)
        self._bound_key = key_of(target) if target is not None else None
        self._last_key: str | None = None
        self._workloads: dict[int, Workload] = {}
        # TVM record objects by (record id, mean): building one replays its trace (ms each)
        self._objects: OrderedDict[tuple[int, float], TuningRecord] = OrderedDict()
        # the same, built without a replay (query_tuning_record only)
        self._built: OrderedDict[tuple[int, float], TuningRecord] = OrderedDict()
        self._blocks: dict[int, frozenset[str]] = {}
        self._target_objects: dict[str, Target | None] = {}
        self._args: dict[str, list] = {}
        self._target_keys: dict[Target, str] = {}  # holds the targets, so no id is reused

    # ---- helpers -----------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The store file."""
        return self._sql.path

    @property
    def sql(self) -> SqlStore:
        """The TVM-free store underneath (raw text records, stats, gc)."""
        return self._sql

    def close(self) -> None:
        """Close the store file."""
        self._sql.close()

    def _stored_workload(self, workload_id: int) -> Workload:
        workload = self._workloads.get(workload_id)
        if workload is None:
            row = self._sql.workload(workload_id)
            workload = self._workloads[workload_id] = Workload.from_json([row.shash, row.module])
        return workload

    def _ids(self, mod: IRModule) -> list[int]:
        ids = self._sql.workload_ids(_shash(mod))
        if len(ids) > 1:  # the same hash twice: keep the structurally equal modules
            ids = [i for i in ids if tvm_ffi.structural_equal(self._stored_workload(i).mod, mod)]
        return ids

    def _key(self, target: Target | None = None) -> str | None:
        if target is not None:
            key = self._target_keys.get(target)  # TVM objects hash by identity
            if key is None:
                if len(self._target_keys) >= _TARGET_CACHE_SIZE:
                    self._target_keys.clear()
                key = self._target_keys[target] = key_of(target)
            self._last_key = key
            return key
        if self._bound_key:
            return self._bound_key
        current = Target.current(allow_none=True)  # inside ``with target:``
        return key_of(current) if current is not None else self._last_key

    def _tvm_record(self, stored: StoredRecord, workload: Workload) -> TuningRecord | None:
        """The TVM object of a stored record; cached, since ``TuningRecord.from_json`` replays
        the trace on the workload (milliseconds per record). None, logged, for a trace that
        no longer replays (e.g. recorded by another TVM version)."""
        key = (stored.id, stored.mean_secs)
        record = self._objects.get(key)
        if record is not None:
            self._objects.move_to_end(key)
            return record
        text = stored.text
        obj = json.loads(f"[{text.trace},{text.run_secs},{text.target},{text.args_info}]")
        try:
            record = TuningRecord.from_json(obj, workload)
        except Exception as err:  # TVM raises its own errors with a C++ backtrace
            logger.warning("record %d skipped: its trace does not replay (%s)", stored.id,
                           first_line(err))  # fmt: skip
            return None
        self._objects[key] = record
        if len(self._objects) > _OBJECT_CACHE_SIZE:
            self._objects.popitem(last=False)
        return record

    def _built_record(self, stored: StoredRecord, workload: Workload) -> TuningRecord | None:
        """The TVM object of a stored record with its trace built from the JSON, not replayed
        (:mod:`ms_meta.store.traces`); replayed when the trace cannot be built that way."""
        key = (stored.id, stored.mean_secs)
        record = self._objects.get(key)
        if record is None:
            record = self._built.get(key)
        if record is not None:
            return record
        text = stored.text
        blocks = self._blocks.get(stored.workload_id)
        if blocks is None:
            blocks = self._blocks[stored.workload_id] = workload_block_names(workload.mod)
        try:
            trace = build_trace(text.insts, text.decisions, blocks)
            run_secs = json.loads(text.run_secs)
            record = TuningRecord(
                trace, workload, run_secs, self._target(text.target), self._arg_info(text.args_info)
            )
        except (NeedsReplay, ValueError, TypeError):
            return self._tvm_record(stored, workload)
        self._built[key] = record
        if len(self._built) > _OBJECT_CACHE_SIZE:
            self._built.popitem(last=False)
        return record

    def _target(self, config: str) -> Target | None:
        target = self._target_objects.get(config, False)
        if target is False:
            value = json.loads(config)
            target = self._target_objects[config] = Target(value) if value is not None else None
        return target

    def _arg_info(self, text: str) -> list:
        args = self._args.get(text)
        if args is None:
            args = self._args[text] = [ArgInfo.from_json(arg) for arg in json.loads(text)]
        return args

    def _tvm_records(self, stored: list[StoredRecord], workload: Workload | None) -> list:
        records = (
            self._tvm_record(s, workload or self._stored_workload(s.workload_id)) for s in stored
        )
        return [r for r in records if r is not None]

    # ---- MetaSchedule's Database interface ---------------------------------------------------

    def has_workload(self, mod: IRModule) -> bool:
        """Whether a structurally equal workload is stored."""
        return bool(self._ids(mod))

    def commit_workload(self, mod: IRModule) -> Workload:
        """The stored workload of ``mod``, added when missing."""
        ids = self._ids(mod)
        if ids:
            return self._workloads.get(ids[0]) or Workload(mod)
        workload = Workload(mod)
        shash, module = workload.as_json()
        workload_id = self._sql.add_workload(str(shash), str(module))
        self._workloads[workload_id] = workload
        return workload

    def commit_tuning_record(self, record: TuningRecord) -> None:
        """Store one measured record (a repeat of a stored one is counted, not added)."""
        self._commit([record])

    def _commit(self, records: Sequence[TuningRecord]) -> None:
        rows = []
        ids: dict[str, int] = {}
        for record in records:
            mod = record.workload.mod
            shash = _shash(mod)
            if shash not in ids:
                self.commit_workload(mod)
                ids[shash] = self._ids(mod)[0]
            text = record_text(record)
            rows.append((ids[shash], text))
            if record.target is not None:
                self._last_key = target_key(text.target_value)
        self._sql.add_records(rows)

    def get_top_k(self, workload: Workload, top_k: int) -> list[TuningRecord]:
        """The ``top_k`` fastest valid records of ``workload`` for the store's target."""
        key = self._key()
        if key is None:
            logger.debug("get_top_k without a known target: no records (open with target=)")
            return []
        return self._tvm_records(self._sql.best(self._ids(workload.mod), key, int(top_k)), workload)

    def get_all_tuning_records(self) -> list[TuningRecord]:
        """All records (failed ones too) of the store's target, or of every target when the
        store was opened without one.

        Slow on a large store: MetaSchedule rebuilds every record by replaying its trace
        (milliseconds each). ``store.sql.records()`` gives the same records as JSON text fast.
        """
        return self._tvm_records(list(self._sql.records(key=self._bound_key)), None)

    def query_tuning_record(
        self, mod: IRModule, target: Target, workload_name: str | None = None
    ) -> TuningRecord | None:
        """The fastest valid record of ``mod`` measured for ``target``; None when there is none.

        Its trace is built from the stored JSON without a replay where
        :mod:`ms_meta.store.traces` can vouch for it, else replayed; a trace that does not
        replay yields to the next best record.
        """
        ids, key = self._ids(mod), self._key(target)
        best = self._sql.best(ids, key, 1)
        if not best:
            return None
        workload = Workload(mod)
        record = self._built_record(best[0], workload)
        if record is None:  # the next best ones, when the best trace does not replay
            nexts = self._tvm_records(self._sql.best(ids, key, _FALLBACK_CANDIDATES)[1:], workload)
            record = nexts[0] if nexts else None
        return record

    def query_schedule(
        self, mod: IRModule, target: Target, workload_name: str | None = None
    ) -> Schedule | None:
        """The best record's schedule of ``mod`` for ``target`` (its trace applied); should the
        trace not apply, the next best record whose trace does."""
        record = self.query_tuning_record(mod, target, workload_name)
        if record is None:
            return None
        try:
            return self._apply(record)
        except Exception as err:  # TVM raises its own errors with a C++ backtrace
            logger.warning("the best record's trace does not apply (%s); trying the next ones",
                           first_line(err))  # fmt: skip
        ids, key = self._ids(mod), self._key(target)
        for stored in self._sql.best(ids, key, _FALLBACK_CANDIDATES)[1:]:
            replayed = self._tvm_record(stored, Workload(mod))
            if replayed is not None:
                return self._apply(replayed)
        return None

    @staticmethod
    def _apply(record: TuningRecord) -> Schedule:
        sch = Schedule(record.workload.mod, error_render_level="detail")
        record.trace.apply_to_schedule(sch, remove_postproc=False)
        return sch

    def query_ir_module(
        self, mod: IRModule, target: Target, workload_name: str | None = None
    ) -> IRModule | None:
        """The best record's scheduled module of ``mod`` for ``target``."""
        sch = self.query_schedule(mod, target, workload_name)
        return None if sch is None else sch.mod

    def __len__(self) -> int:
        """Records of the store's target, or of all targets when opened without one."""
        return self._sql.count(self._bound_key)

    # ---- feeding and reading the store -------------------------------------------------------

    def record_database(self, database: Database) -> int:
        """Copy every record of another MetaSchedule database (e.g. what ``tune_tir``
        returns) into the store, in one transaction; returns the records read."""
        records = list(database.get_all_tuning_records())
        if records:
            self._commit(records)
        return len(records)

    def import_json_database(self, *paths: str | os.PathLike) -> ImportReport:
        """Import MetaSchedule JSON databases (directories or trees of them) into the store."""
        return import_json_databases(self._sql, scan_json_databases(paths))

    def measured_candidates(
        self, mod: IRModule, target: Target | dict, limit: int
    ) -> list[tuple[Any, list[float] | None]]:
        """The last ``limit`` records of ``mod`` measured for ``target``, failed ones too, as
        ``(MeasureCandidate, run_secs or None for a failure)`` in the order they were stored:
        what a cost model adapts to (:class:`~ms_meta.MetaCostModel`'s warm start)."""
        ids = self._ids(mod)
        if not ids or limit <= 0:
            return []
        key = key_of(target)
        stored = [r for i in ids for r in self._sql.records(workload_id=i, key=key)]
        stored.sort(key=lambda r: r.id)
        workload = Workload(mod)
        out = []
        for item in stored[-limit:]:
            record = self._tvm_record(item, workload)
            if record is not None:
                run_secs = [float(s) for s in record.run_secs] if item.is_valid else None
                out.append((record.as_measure_candidate(), run_secs))
        return out

    def schedule_records(self, target: Target | dict, top_k: int = 1) -> Iterator[TuningRecord]:
        """The ``top_k`` fastest valid records of every workload measured for ``target``
        (for a schedule library), workload by workload."""
        for stored in self._sql.best_per_workload(key_of(target), top_k):
            yield from self._tvm_records([stored], None)
