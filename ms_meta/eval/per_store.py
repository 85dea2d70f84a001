"""MetaSchedule's ``PerStoreFeature`` rows of tuning records, cached on disk, for the baselines.

:class:`PerStoreFeatures` replays each record's trace on its workload and runs MetaSchedule's
``PerStoreFeature`` on the scheduled candidate, as XGBModel and MLPModel do at tuning time.
The rows are cached on disk as ``.npz`` (no pickle), one file per workload; records files are
append-only, so a cache that covers a prefix of the file is re-used and only new lines are
extracted. The rows come out aligned with ``TaskData.lines``. The helpers at the end (costs,
seeds, training groups) are shared by the XGBModel and MLPModel adapters
(:mod:`ms_meta.eval.xgb_baseline`, :mod:`ms_meta.eval.mlp_baseline`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ms_meta.data import layout
from ms_meta.data.dataset import DEFAULT_CACHE, default_cache_dir
from ms_meta.data.prefix_cache import (
    Snapshot,
    cache_path,
    prefix_still_valid,
    read_snapshot,
    write_npz_atomically,
)
from ms_meta.data.records import Record, WorkloadGroup, canonical_json, load_files
from ms_meta.errors import DatabaseError, MsMetaError, first_line
from ms_meta.eval.protocol import episode_seed
from ms_meta.run_secs import FAILED_RUN_SECS

__all__ = [
    "FEATURE_CACHE_VERSION",
    "MLP_COLUMNS",
    "PER_STORE_CONFIG",
    "XGB_COLUMNS",
    "FeatureStats",
    "FeatureTask",
    "PerStoreFeatures",
    "TaskFeatures",
]

logger = logging.getLogger(__name__)

#: Bump when the cached arrays change meaning; old cache files are then ignored.
FEATURE_CACHE_VERSION = 1

#: PerStoreFeature settings of the cache: TVM's defaults plus the 8 workload columns that
#: MLPModel's extractor adds (``extract_workload=True``). XGBModel's default extractor gives the
#: same rows without them, the first :data:`XGB_COLUMNS` columns.
PER_STORE_CONFIG: dict[str, Any] = {
    "buffers_per_store": 5,
    "arith_intensity_curve_num_samples": 10,
    "cache_line_bytes": 64,
    "extract_workload": True,
}
#: Columns of ``PerStoreFeature()`` without workload columns (XGBModel's default extractor).
XGB_COLUMNS = 164
#: Columns with the workload columns (MLPModel's extractor, ``SegmentSumMLPConfig.input_dim``).
MLP_COLUMNS = 172


# Candidates per PerStoreFeature call: large enough to amortize the FFI round trip, small enough
# that one unextractable candidate (then retried one by one) costs little.
_EXTRACT_BATCH = 64

ProgressFn = Callable[[int, int, str], None]


class FeatureTask(Protocol):
    """What the adapters need of a task (:class:`ms_meta.data.dataset.TaskData` is one)."""

    name: str
    source: Path
    workload_hash: str
    lines: np.ndarray
    latencies: np.ndarray

    def __len__(self) -> int: ...


# --------------------------------------------------------------------------------------------
# Per-store features, cached
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskFeatures:
    """The PerStoreFeature rows of a task's records, aligned with its ``lines``.

    Attributes
    ----------
    rows : np.ndarray
        ``[R, 172]`` float32, the rows of all records concatenated.
    row_ptr : np.ndarray
        ``[n + 1]`` int64: record ``i`` owns ``rows[row_ptr[i]:row_ptr[i+1]]``; a record whose
        features could not be extracted owns none.
    group_hash : str
        ``shash2hex`` of the workload, the key XGBModel and MLPModel group samples by.
    """

    rows: np.ndarray
    row_ptr: np.ndarray
    group_hash: str

    def __len__(self) -> int:
        return len(self.row_ptr) - 1

    @property
    def extracted(self) -> np.ndarray:
        """``[n]`` bool: whether each record has feature rows."""
        return np.diff(self.row_ptr) > 0

    def select(self, index: np.ndarray, columns: int = MLP_COLUMNS) -> list[np.ndarray]:
        """The rows of records ``index``, one ``[rows, columns]`` float32 array each."""
        return [
            self.rows[self.row_ptr[i] : self.row_ptr[i + 1], :columns]
            for i in np.asarray(index, np.int64).tolist()
        ]


@dataclass
class FeatureStats:
    """Where the rows of :class:`PerStoreFeatures` came from, over its lifetime."""

    extracted: int = 0
    cached: int = 0
    failed: int = 0
    files_written: int = 0
    seconds: float = 0.0


@dataclass
class _Entry:
    rows: dict[int, np.ndarray] = field(default_factory=dict)  # line -> [rows, 172]
    failed: dict[int, str] = field(default_factory=dict)  # line -> reason
    group_hash: str = ""
    covered: int = 0  # every cached line is <= covered, whose prefix digest is stored


def _tvm_version() -> str:
    import tvm

    return str(tvm.__version__)


class PerStoreFeatures:
    """PerStoreFeature rows of tuning records, extracted once and cached as ``.npz``.

    Parameters
    ----------
    cache_dir : path or None
        Where the cache files live; by default ``<dataset cache>/per-store-feature`` (see
        :func:`ms_meta.data.dataset.default_cache_dir`). ``None`` keeps rows in memory only.
    progress : callable, optional
        ``progress(n_done, n_total, task)`` after each extracted batch of a task.

    Notes
    -----
    One file per workload, named by a hash of the absolute record-file path, the workload line,
    the TVM version and the extractor settings. The file stores how many record lines it covers
    and the SHA-256 of those lines' bytes: a record file that only grew re-uses it (only new
    lines are extracted), a rewritten one is extracted again.
    """

    def __init__(
        self, cache_dir: str | os.PathLike[str] | None = DEFAULT_CACHE, *, progress=None
    ) -> None:
        if cache_dir is DEFAULT_CACHE:
            cache_dir = default_cache_dir() / "per-store-feature"
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else None
        self.progress: ProgressFn | None = progress
        self.stats = FeatureStats()
        self._memo: dict[tuple[str, str, str], tuple[np.ndarray, TaskFeatures]] = {}

    def __call__(self, task: FeatureTask) -> TaskFeatures:
        """The rows of ``task``'s records, in the order of ``task.lines``.

        Raises
        ------
        DatabaseError
            When the task's database is gone or no longer holds its workload.
        """
        key = (str(Path(task.source).resolve()), str(task.workload_hash), task.name)
        lines = np.asarray(task.lines, np.int64)
        memo = self._memo.get(key)
        if memo is not None and np.array_equal(memo[0], lines):
            return memo[1]
        features = self._load(task, lines)
        self._memo[key] = (lines, features)
        return features

    # -- internals -------------------------------------------------------------------------

    def _load(self, task: FeatureTask, lines: np.ndarray) -> TaskFeatures:
        files = layout.database_files(Path(task.source))
        snapshot = read_snapshot(files.records)  # before parsing: the reader sees at least this
        group = _find_group(load_files(files), task)
        identity = {
            "records": str(files.records.resolve()) if files.records else None,
            "workload_sha256": hashlib.sha256(group.line_text.encode("utf-8")).hexdigest(),
            "workload_index": group.index,
            "tvm": _tvm_version(),
            "per_store_feature": PER_STORE_CONFIG,
            "cache_version": FEATURE_CACHE_VERSION,
        }
        path = self._path(identity, task.name)
        entry = (_load_entry(path, identity, snapshot) if path else None) or _Entry()
        todo_lines = [
            line for line in lines.tolist() if line not in entry.rows and line not in entry.failed
        ]
        self.stats.cached += len(lines) - len(todo_lines)
        if todo_lines or not entry.group_hash:
            by_line = {r.line: r for r in group.records}
            missing = [line for line in todo_lines if line not in by_line]
            if missing:
                raise DatabaseError(
                    f"{files.records}: lines {missing[:5]} of task {task.name} are no longer "
                    "records of its workload (the file was rewritten); rebuild the data set"
                )
            start = time.perf_counter()
            rows, failed, group_hash = _extract(
                group, [by_line[line] for line in todo_lines], self.progress
            )
            self.stats.seconds += time.perf_counter() - start
            self.stats.extracted += len(rows)
            self.stats.failed += len(failed)
            entry.rows.update(rows)
            entry.failed.update(failed)
            entry.group_hash = group_hash
            if path is not None and self._write(path, identity, entry, snapshot, task.name):
                self.stats.files_written += 1
        return _assemble(entry, lines)

    def _path(self, identity: dict[str, Any], task: str) -> Path | None:
        if self.cache_dir is None:
            return None
        return cache_path(self.cache_dir, identity, task)

    def _write(
        self,
        path: Path,
        identity: dict[str, Any],
        entry: _Entry,
        snapshot: Snapshot,
        task: str,
    ) -> bool:
        # Only lines complete in the snapshot are final in an append-only file: cache those.
        covered = snapshot.complete_lines
        lines = sorted(line for line in entry.rows if line <= covered)
        failed = {line: why for line, why in entry.failed.items() if line <= covered}
        counts = np.asarray([entry.rows[line].shape[0] for line in lines], np.int64)
        row_ptr = np.zeros(len(lines) + 1, np.int64)
        np.cumsum(counts, out=row_ptr[1:])
        rows = (
            np.concatenate([entry.rows[line] for line in lines])
            if lines
            else np.zeros((0, MLP_COLUMNS), np.float32)
        )
        meta = {
            "identity": identity,
            "task": task,
            "group_hash": entry.group_hash,
            "covered_lines": covered,
            "prefix_sha256": snapshot.digest(covered),
            "failed": [[line, why] for line, why in sorted(failed.items())],
        }
        arrays = {
            "rows": rows.astype(np.float32, copy=False),
            "row_ptr": row_ptr,
            "lines": np.asarray(lines, np.int64),
            "meta": np.array(json.dumps(meta)),
        }
        return write_npz_atomically(path, arrays, "feature cache")


def _find_group(db, task: FeatureTask) -> WorkloadGroup:
    groups = [g for g in db.groups if g.shash == str(task.workload_hash)]
    if len(groups) > 1:
        groups = [g for g in groups if g.task == task.name] or groups[:1]
    if not groups:
        raise DatabaseError(
            f"{db.files.directory} no longer holds the workload of task {task.name} "
            f"(hash {task.workload_hash}); rebuild the data set"
        )
    return groups[0]


def _load_entry(path: Path, identity: dict[str, Any], snapshot: Snapshot) -> _Entry | None:
    """The cache at ``path`` if it was written for ``identity`` and the record file still starts
    with the lines it covers; ``None`` otherwise (a stale or damaged cache is rebuilt, never
    fatal)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            rows, row_ptr, lines = npz["rows"], npz["row_ptr"], npz["lines"]
        if not prefix_still_valid(meta, identity, snapshot, path, "re-extracting"):
            return None
        covered = int(meta["covered_lines"])
        if len(row_ptr) != len(lines) + 1 or int(row_ptr[-1]) != rows.shape[0]:
            raise ValueError("array lengths disagree")
        entry = _Entry(group_hash=str(meta["group_hash"]), covered=covered)
        for i, line in enumerate(lines.tolist()):
            entry.rows[line] = rows[row_ptr[i] : row_ptr[i + 1]]
        entry.failed = {int(line): str(why) for line, why in meta["failed"]}
        return entry
    except Exception as err:  # a damaged cache file only costs a re-extraction
        logger.warning("ignoring unreadable feature cache %s: %s", path, err)
        return None


def _assemble(entry: _Entry, lines: np.ndarray) -> TaskFeatures:
    empty = np.zeros((0, MLP_COLUMNS), np.float32)
    parts = [entry.rows.get(line, empty) for line in lines.tolist()]
    row_ptr = np.zeros(len(parts) + 1, np.int64)
    np.cumsum([p.shape[0] for p in parts], out=row_ptr[1:])
    rows = np.concatenate(parts) if parts else empty
    return TaskFeatures(
        rows=rows.astype(np.float32, copy=False), row_ptr=row_ptr, group_hash=entry.group_hash
    )


def _extract(
    group: WorkloadGroup, records: Sequence[Record], progress: ProgressFn | None
) -> tuple[dict[int, np.ndarray], dict[int, str], str]:
    """Replay each record's trace on the workload and run PerStoreFeature on the result.

    Returns ``(rows by line, failure reason by line, shash2hex of the workload)``.
    """
    import tvm
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.utils import shash2hex
    from tvm.s_tir.schedule import Trace

    from ms_meta.tuning.intrin import import_tensor_intrinsics
    from ms_meta.tuning.target import host_target

    mod = group.mod  # raises DatabaseError when the workload does not decode
    extractor = ms.feature_extractor.PerStoreFeature(**PER_STORE_CONFIG)
    contexts: dict[str, Any] = {}

    def context_for(target_json: dict[str, Any] | None):
        key = canonical_json(target_json)
        if key not in contexts:
            target = tvm.target.Target(target_json) if target_json else host_target()
            import_tensor_intrinsics(str(target.kind.name))  # TuneContext imports them
            contexts[key] = ms.TuneContext(mod=mod, target=target, task_name=group.task)
        return contexts[key]

    def candidate(record: Record):
        sch = tvm.s_tir.Schedule(mod, seed=1, enable_check=False)  # as MetaSchedule loads records
        Trace.apply_json_to_schedule(record.trace, sch)
        return ms.MeasureCandidate(
            sch, ms.arg_info.ArgInfo.from_entry_func(sch.mod, remove_preproc=True)
        )

    rows: dict[int, np.ndarray] = {}
    failed: dict[int, str] = {}
    group_hash = shash2hex(context_for(None if not records else records[0].target).mod)
    by_target: dict[str, list[Record]] = {}
    for r in records:
        by_target.setdefault(canonical_json(r.target), []).append(r)
    done = 0
    for batch_records in by_target.values():
        context = context_for(batch_records[0].target)
        for start in range(0, len(batch_records), _EXTRACT_BATCH):
            batch: list[tuple[Record, Any]] = []
            for r in batch_records[start : start + _EXTRACT_BATCH]:
                try:
                    batch.append((r, candidate(r)))
                except Exception as err:  # TVM raises ScheduleError/TVMError for a bad trace
                    failed[r.line] = f"the trace does not replay: {first_line(err)}"
            try:
                found = extractor.extract_from(context, [c for _, c in batch])
                pairs = list(zip(batch, found, strict=True))
            except Exception:  # isolate the candidate that breaks the batch
                pairs = []
                for r, c in batch:
                    try:
                        pairs.append(((r, c), extractor.extract_from(context, [c])[0]))
                    except Exception as err:
                        failed[r.line] = f"PerStoreFeature failed: {first_line(err)}"
            for (r, _), tensor in pairs:
                rows[r.line] = tensor.numpy().astype(np.float32, copy=False)
            done += min(_EXTRACT_BATCH, len(batch_records) - start)
            if progress is not None:
                progress(done, len(records), group.task)
    for line, why in failed.items():
        logger.warning("%s:%d: no per-store features: %s", group.task, line, why)
    return rows, failed, group_hash


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------


def _costs(task: FeatureTask, index: np.ndarray) -> np.ndarray:
    """Measured seconds as the stock models store them: ``FAILED_RUN_SECS`` for a failed run."""
    lat = np.asarray(task.latencies, np.float64)[np.asarray(index, np.int64)]
    return np.where(np.isfinite(lat), lat, FAILED_RUN_SECS).astype(np.float32)


def _score_seed(seed: int, task: str, k: int) -> int:
    """The seed of one (task, shot) scoring call, in ``[0, 2**31)`` as torch and xgb take."""
    return episode_seed(f"{task}\0{k}", seed) % (2**31)


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Run with the global torch and :mod:`random` generators seeded, restoring them after (the
    stock MLP trainer draws from both: ``torch.randperm`` and ``random.sample``)."""
    import torch

    state = random.getstate()
    random.seed(seed)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        random.setstate(state)


def _training_groups(
    tasks: Sequence[FeatureTask], features: PerStoreFeatures, columns: int
) -> list[tuple[str, list[np.ndarray], np.ndarray]]:
    """``(group_hash, features, costs)`` of every task, the records without features left out."""
    if not tasks:
        raise MsMetaError("no training tasks to pretrain on")
    groups = []
    for task in tasks:
        feats = features(task)
        index = np.flatnonzero(feats.extracted)
        if len(index):
            groups.append((feats.group_hash, feats.select(index, columns), _costs(task, index)))
    if not groups:
        raise MsMetaError("no training record has per-store features")
    return groups
