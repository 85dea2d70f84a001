"""TVM's own cost models as scorers for :func:`ms_meta.eval.protocol.evaluate` (thin adapters).

Features
    :class:`PerStoreFeatures` replays each record's trace on its workload and runs MetaSchedule's
    ``PerStoreFeature`` on the scheduled candidate, as XGBModel and MLPModel do at tuning time.
    The rows are cached on disk as ``.npz`` (no pickle), one file per workload; records files are
    append-only, so a cache that covers a prefix of the file is re-used and only new lines are
    extracted. The rows come out aligned with ``TaskData.lines``.

Scorers (each seeded and deterministic)
    ``xgb-stock``
        MetaSchedule's ``XGBModel`` fitted only on the task's support records, as in tuning.
        Below ``num_warmup_samples`` (100) it returns uniform random scores, so with k <= 32
        it is random search; it is reported because that is what stock tuning does.
    ``xgb-kshot``
        The same with ``num_warmup_samples=0``: the booster fitted on the k support records.
    ``xgb-pretrained``
        TenSet's approach: an XGBModel trained on every record of the training tasks
        (:func:`pretrain_xgb`), zero-shot on a held-out task, and k-shot by retraining on the
        pretraining data plus the support records, which is what ``XGBModel.update`` does on
        the first measured batch after ``XGBModel.load``.
    ``mlp-pretrained``
        MetaSchedule's ``MLPModel`` (``SegmentSumMLPTrainer``) trained on the same records
        (:func:`pretrain_mlp`); k-shot through the trainer's own ``update`` (a few epochs of
        incremental training on the support).

The adapters drive the models' training and prediction code on cached features instead of
``update(context, candidates, results)``/``predict(context, candidates)``, which would extract
the features again on every call; the private helpers below mirror those two methods line by
line and say where they differ.

Using the pretrained XGBModel in tuning
---------------------------------------
``pretrain_xgb(train_tasks, "xgb.tar")`` writes a file that ``XGBModel.load`` reads::

    model = ms.cost_model.XGBModel()      # default PerStoreFeature(), as in pretraining
    model.load("xgb.tar")
    ms.tune_tir(mod, target, work_dir, cost_model=model, ...)

``load`` restores the booster and the pretraining samples, so ``data_size`` (thousands) is past
``num_warmup_samples`` and ``predict`` uses the booster from the first search round (no random
warm-up). ``load`` does not restore ``last_train_size`` (it is 0), so the first ``update``
retrains from scratch on the pretraining samples plus the new batch; with the default
``adaptive_training=True`` later updates retrain only when the data has grown by 20 % (about a
thousand new samples), so in a short run the model stays the one fitted after the first batch.
``adaptive_training=False`` retrains on every batch (one full fit per batch).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import math
import os
import random
import tempfile
import time
import warnings
from collections import OrderedDict
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
    "MLPPretrained",
    "PerStoreFeatures",
    "TaskFeatures",
    "XGBFewShot",
    "XGBPretrained",
    "pretrain_mlp",
    "pretrain_xgb",
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
    """The cache at ``path`` if it is ours and the record file still starts with the lines it
    covers; ``None`` otherwise (a stale or damaged cache is rebuilt, never fatal)."""
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


# --------------------------------------------------------------------------------------------
# XGBModel
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_xgboost_formats() -> Iterator[None]:
    """XGBModel saves its booster as ``model.bin``; xgboost warns on save and load that it
    guesses the format (UBJSON) from that name. The guess is right, so the warning is noise."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(UBJSON|Unknown file format).*")
        yield


def _xgb_model(num_warmup_samples: int, seed: int):
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.cost_model.xgb_model import XGBConfig

    return ms.cost_model.XGBModel(
        config=XGBConfig(seed=seed), num_warmup_samples=num_warmup_samples
    )


def _xgb_add(model, group_hash: str, features: list[np.ndarray], costs: np.ndarray) -> None:
    """``XGBModel.update`` step 4 (filter records without rows, add to the task's group); the
    group of ``group_hash`` is copied first so that a shared model is never changed."""
    from tvm.s_tir.meta_schedule.cost_model.xgb_model import FeatureGroup

    keep = [i for i, f in enumerate(features) if len(f) != 0]
    if not keep:
        return
    features = [features[i] for i in keep]
    costs = np.asarray(costs, np.float32)[keep]
    group = model.data.get(group_hash)
    if group is None:
        group = FeatureGroup(group_hash=group_hash, features=features, costs=costs)
    else:
        group = FeatureGroup(group_hash, list(group.features), np.asarray(group.costs).copy())
        group.append(features, costs)
    model.data[group_hash] = group
    model.data_size += len(features)


def _xgb_retrain(model) -> bool:
    """``XGBModel.update`` step 5: the adaptive-training check, then a fit from scratch on all
    samples with per-group labels ``min_cost / cost``. Returns whether it trained."""
    if model.adaptive_training and model.data_size - model.last_train_size < (
        model.last_train_size / 5
    ):
        return False
    model.last_train_size = model.data_size
    with np.errstate(divide="ignore", invalid="ignore"):
        xs = [f for g in model.data.values() for f in g.features]
        ys = np.concatenate(
            [
                np.divide(g.min_cost, g.costs, out=np.zeros_like(g.costs), where=g.costs != 0)
                for g in model.data.values()
            ]
        )
    model._train(xs=xs, ys=ys)  # the stock fit (PackSum, custom objective, early stopping)
    return True


def _xgb_predict(model, features: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """``XGBModel.predict``: the booster's pack-sum scores once ``data_size`` reaches
    ``num_warmup_samples``, uniform random scores before (from ``rng``, not the global numpy
    generator the stock method uses, so that scores are reproducible)."""
    if model.data_size >= model.num_warmup_samples and model.booster is not None:
        # A record without rows (extraction failed) ranks below every other one.
        has_rows = np.asarray([len(f) > 0 for f in features], bool)
        out = np.zeros(len(features))
        if has_rows.any():
            pred = model._predict(xs=[f for f in features if len(f)])
            out[has_rows] = pred
            out[~has_rows] = pred.min() - 1.0
        return out
    return rng.uniform(0.0, 1.0, size=len(features))


class XGBFewShot:
    """MetaSchedule's XGBModel fitted only on the task's support records.

    Parameters
    ----------
    features : PerStoreFeatures
        The feature source.
    num_warmup_samples : int
        XGBModel's warm-up: below it the model scores at random. 100 is the stock default
        (``xgb-stock``); 0 fits the booster on any support (``xgb-kshot``).
    seed : int
        Seeds the booster (``XGBConfig.seed``) and the warm-up's random scores.
    name : str, optional
        Defaults to ``xgb-stock`` (warm-up 100), ``xgb-kshot`` (0) or ``xgb-warmup<n>``.
    """

    def __init__(
        self,
        features: PerStoreFeatures,
        *,
        num_warmup_samples: int = 100,
        seed: int = 0,
        name: str | None = None,
    ) -> None:
        self.features = features
        self.num_warmup_samples = int(num_warmup_samples)
        self.seed = int(seed)
        default = {100: "xgb-stock", 0: "xgb-kshot"}.get(
            self.num_warmup_samples, f"xgb-warmup{self.num_warmup_samples}"
        )
        self.name = name or default

    @classmethod
    def stock(cls, features: PerStoreFeatures, seed: int = 0) -> XGBFewShot:
        """``xgb-stock``: the stock warm-up of 100 samples (random scores for k < 100)."""
        return cls(features, num_warmup_samples=100, seed=seed)

    @classmethod
    def kshot(cls, features: PerStoreFeatures, seed: int = 0) -> XGBFewShot:
        """``xgb-kshot``: no warm-up, the booster fitted on the k support records."""
        return cls(features, num_warmup_samples=0, seed=seed)

    def score(self, task: FeatureTask, support: np.ndarray, query: np.ndarray) -> np.ndarray:
        feats = self.features(task)
        call_seed = _score_seed(self.seed, task.name, len(support))
        model = _xgb_model(self.num_warmup_samples, call_seed)
        if len(support):
            _xgb_add(
                model, feats.group_hash, feats.select(support, XGB_COLUMNS), _costs(task, support)
            )
            # Below the warm-up the stock model fits a booster it never predicts with: skip the
            # fit, which changes no score and saves seconds per call.
            if model.data_size >= self.num_warmup_samples:
                _xgb_retrain(model)
        rng = np.random.default_rng(call_seed)
        return _xgb_predict(model, feats.select(query, XGB_COLUMNS), rng)


def pretrain_xgb(
    train_tasks: Sequence[FeatureTask],
    path: str | os.PathLike[str],
    *,
    features: PerStoreFeatures | None = None,
    seed: int = 0,
) -> Path:
    """Fit an XGBModel on every record of the training tasks and save it for ``XGBModel.load``.

    Labels are per-task normalized throughput ``min_cost / cost``, as ``XGBModel.update``
    computes them; the stock fit (pack-sum squared error weighted by the label, early stopping
    on training RMSE) is used unchanged. A JSON manifest (tasks, records, versions, seconds) is
    written next to the model as ``<path>.json``.

    Parameters
    ----------
    train_tasks : sequence of TaskData
        The training tasks.
    path : path
        The model file to write (a tar of the booster and the samples, TVM's format).
    features : PerStoreFeatures, optional
        The feature source; a default :class:`PerStoreFeatures` if omitted.
    seed : int
        ``XGBConfig.seed``.

    Returns
    -------
    Path
        ``path``. See the module docstring for using it as ``cost_model=`` in ``ms.tune_tir``.

    Raises
    ------
    MsMetaError
        When there are no training tasks or records, or the file cannot be written.
    """
    import xgboost

    features = features or PerStoreFeatures()
    path = Path(path)
    groups = _training_groups(train_tasks, features, XGB_COLUMNS)
    model = _xgb_model(100, seed)
    for group_hash, feats, costs in groups:
        _xgb_add(model, group_hash, feats, costs)
    start = time.perf_counter()
    _xgb_retrain(model)
    seconds = time.perf_counter() - start
    if model.data_size < model.num_warmup_samples:
        logger.warning(
            "the pretrained XGBModel holds %d samples, fewer than XGBModel's default warm-up of "
            "%d: loaded into a default XGBModel it predicts random scores until tuning adds more",
            model.data_size,
            model.num_warmup_samples,
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _quiet_xgboost_formats():
            model.save(str(path))
        manifest = {
            "model": "XGBModel (MetaSchedule), pretrained by ms_meta.eval.baselines.pretrain_xgb",
            "tasks": [t.name for t in train_tasks],
            "records": int(model.data_size),
            "groups": len(model.data),
            "seed": seed,
            "boosting_rounds": int(model.booster.num_boosted_rounds()),
            "train_seconds": round(seconds, 2),
            "tvm": _tvm_version(),
            "xgboost": xgboost.__version__,
            "extractor": "PerStoreFeature() (164 columns)",
        }
        path.with_name(path.name + ".json").write_text(json.dumps(manifest, indent=2) + "\n")
    except OSError as err:
        raise MsMetaError(f"cannot write the pretrained XGBModel to {path}: {err}") from None
    logger.info(
        "pretrained XGBModel on %d records of %d tasks in %.1f s -> %s",
        model.data_size,
        len(model.data),
        seconds,
        path,
    )
    return path


class XGBPretrained:
    """TenSet's approach: an XGBModel pretrained on the training tasks (:func:`pretrain_xgb`).

    Zero-shot, the pretrained booster scores the query. With a support set the model is
    retrained from scratch on the pretraining samples plus the support (the task's labels
    normalized by its best support record), which is what ``XGBModel.update`` does on the first
    batch after ``XGBModel.load``.

    Parameters
    ----------
    model : XGBModel
        A trained model (e.g. from :meth:`load`); it is never changed.
    features : PerStoreFeatures
        The feature source.
    seed : int
        Seeds the retraining booster.
    """

    name = "xgb-pretrained"

    def __init__(self, model, features: PerStoreFeatures, *, seed: int = 0) -> None:
        if model.booster is None:
            raise MsMetaError("the XGBModel has no booster: pretrain it with pretrain_xgb first")
        self.model = model
        self.features = features
        self.seed = int(seed)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], features: PerStoreFeatures, *, seed: int = 0
    ) -> XGBPretrained:
        """Load a model written by :func:`pretrain_xgb` with ``XGBModel.load``.

        Raises
        ------
        MsMetaError
            When the file is missing or is not an XGBModel with a booster.
        """
        from tvm.s_tir import meta_schedule as ms

        path = Path(path)
        if not path.is_file():
            raise MsMetaError(f"pretrained XGBModel not found: {path}")
        model = ms.cost_model.XGBModel()
        try:
            with _quiet_xgboost_formats():
                model.load(str(path))
        except Exception as err:  # TVM's loader raises tar/numpy/xgboost errors, or NameError
            raise MsMetaError(
                f"{path} is not an XGBModel file: {type(err).__name__}: {first_line(err)}"
            ) from None
        return cls(model, features, seed=seed)

    def _continued(self, group_hash: str, feats: list[np.ndarray], costs: np.ndarray, seed: int):
        base = self.model
        model = _xgb_model(base.num_warmup_samples, seed)
        model.config = base.config._replace(seed=seed)
        model.data = OrderedDict(base.data)  # groups are copied by _xgb_add before changing
        model.data_size = base.data_size
        model.booster = base.booster
        model.last_train_size = 0  # as after XGBModel.load, which does not restore it
        _xgb_add(model, group_hash, feats, costs)
        _xgb_retrain(model)
        return model

    def score(self, task: FeatureTask, support: np.ndarray, query: np.ndarray) -> np.ndarray:
        feats = self.features(task)
        call_seed = _score_seed(self.seed, task.name, len(support))
        model = self.model
        if len(support):
            model = self._continued(
                feats.group_hash,
                feats.select(support, XGB_COLUMNS),
                _costs(task, support),
                call_seed,
            )
        return _xgb_predict(
            model, feats.select(query, XGB_COLUMNS), np.random.default_rng(call_seed)
        )


# --------------------------------------------------------------------------------------------
# MLPModel
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _stock_mlp_training() -> Iterator[None]:
    """Let TVM 0.27's ``SegmentSumMLPTrainer.train_full`` run on current torch.

    ``train_full`` builds ``torch.optim.lr_scheduler.StepLR(..., verbose=True)``; torch removed
    that argument (deprecated in 2.2), so on torch 2.13 the stock full training raises
    ``TypeError: StepLR.__init__() got an unexpected keyword argument 'verbose'``, which breaks
    ``MLPModel.update`` on its first call. This context swaps in a StepLR that drops the
    argument. It also points :mod:`tempfile` at a private directory, because ``train_full``
    keeps its best epoch in a ``NamedTemporaryFile().name`` that it never deletes.
    """
    import torch

    original = torch.optim.lr_scheduler.StepLR

    class StepLR(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, verbose: Any = None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)

    old_tempdir = tempfile.tempdir
    with tempfile.TemporaryDirectory(prefix="ms-meta-mlp-") as scratch:
        torch.optim.lr_scheduler.StepLR = StepLR
        tempfile.tempdir = scratch
        try:
            yield
        finally:
            torch.optim.lr_scheduler.StepLR = original
            tempfile.tempdir = old_tempdir


def _mlp_trainer(state, config=None):
    from tvm.s_tir.meta_schedule.cost_model.mlp_model import SegmentSumMLPTrainer

    return SegmentSumMLPTrainer(train_config=config, state=state)


def _quiet_mlp_logger() -> contextlib.AbstractContextManager[None]:
    """The stock trainer logs every epoch and batch at INFO on the ``mlp_model`` logger."""
    return _logger_level("mlp_model", logging.WARNING)


@contextlib.contextmanager
def _logger_level(name: str, level: int) -> Iterator[None]:
    target = logging.getLogger(name)
    old = target.level
    target.setLevel(max(level, old))
    try:
        yield
    finally:
        target.setLevel(old)


def pretrain_mlp(
    train_tasks: Sequence[FeatureTask],
    *,
    features: PerStoreFeatures | None = None,
    seed: int = 0,
    epochs: int = 50,
    validation_split: float = 0.2,
    path: str | os.PathLike[str] | None = None,
) -> MLPPretrained:
    """Train MetaSchedule's MLPModel on every record of the training tasks.

    The stock ``SegmentSumMLPTrainer.train_full``: lambda-rank loss on per-task normalized
    throughput, 20 % of the tasks held out to pick the best epoch, Adam with a step schedule.

    Parameters
    ----------
    train_tasks : sequence of TaskData
        The training tasks.
    features : PerStoreFeatures, optional
        The feature source (172 columns with the workload columns, as MLPModel extracts).
    seed : int
        Seeds torch and :mod:`random`, from which the trainer draws.
    epochs : int
        ``TrainerConfig.num_epoch_full`` (the stock 50 by default; at least 10, because the
        trainer's step schedule divides it by 10).
    validation_split : float
        ``TrainerConfig.test_split``: the share of tasks kept out of training to pick the best
        epoch (the stock 0.2 needs at least 5 tasks; at least one task must land on each side).
    path : path, optional
        Also save the model with ``State.save`` (loadable by ``MLPModel.load``).

    Returns
    -------
    MLPPretrained
        The trained scorer.
    """
    from tvm.s_tir.meta_schedule.cost_model.mlp_model import State, TrainerConfig

    if epochs < 10:
        raise MsMetaError(f"epochs must be at least 10 (the trainer's step schedule), got {epochs}")
    features = features or PerStoreFeatures()
    state = State()
    groups = _training_groups(train_tasks, features, MLP_COLUMNS)
    # train_full samples floor(share * groups) validation tasks and concatenates their labels:
    # none on either side raises a bare "need at least one array to concatenate".
    held = math.floor(len(groups) * validation_split)
    if not 1 <= held < len(groups):
        raise MsMetaError(
            f"MLPModel's trainer keeps floor({validation_split} x {len(groups)} tasks) = {held} "
            "tasks out of training to pick its best epoch; it needs at least one on each side: "
            "give more training tasks or another validation_split"
        )
    for group_hash, feats, costs in groups:
        state.add_to_group(feats, costs, group_hash)
    config = TrainerConfig(num_epoch_full=epochs, test_split=validation_split)
    trainer = _mlp_trainer(state, config)
    start = time.perf_counter()
    with _stock_mlp_training(), _seeded(seed), _quiet_mlp_logger():
        trainer.train_full()
    logger.info(
        "pretrained MLPModel on %d records of %d tasks in %.1f s",
        state.data_size,
        len(state.data),
        time.perf_counter() - start,
    )
    scorer = MLPPretrained(state, features, seed=seed)
    if path is not None:
        scorer.save(path)
    return scorer


class MLPPretrained:
    """MetaSchedule's MLPModel pretrained on the training tasks (:func:`pretrain_mlp`).

    Zero-shot, the pretrained network scores the query. With a support set, a copy of it goes
    through the trainer's own ``update``: the support is added to the data, and since it is far
    below the trainer's 20 % threshold, ``train_incremental`` runs ``num_epoch_incremental`` (5)
    epochs of lambda-rank steps on the support only.

    Parameters
    ----------
    state : mlp_model.State
        A trained state (its model is never changed).
    features : PerStoreFeatures
        The feature source.
    seed : int
        Seeds the incremental training.
    """

    name = "mlp-pretrained"

    def __init__(self, state, features: PerStoreFeatures, *, seed: int = 0) -> None:
        self.state = state
        self.features = features
        self.seed = int(seed)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save with ``State.save`` (a tar of the network and the samples)."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.state.save(str(path))
        except OSError as err:
            raise MsMetaError(f"cannot write the MLPModel to {path}: {err}") from None
        return path

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], features: PerStoreFeatures, *, seed: int = 0
    ) -> MLPPretrained:
        """Load a state written by :meth:`save`.

        ``State.load`` counts every loaded sample as untrained, so the trainer's next
        ``update`` would retrain fully; the state's model *is* trained on them, so the count is
        reset to 0 here.
        """
        from tvm.s_tir.meta_schedule.cost_model.mlp_model import State

        path = Path(path)
        if not path.is_file():
            raise MsMetaError(f"MLPModel file not found: {path}")
        state = State()
        try:
            state.load(str(path))
        except Exception as err:  # tar, numpy or torch errors
            raise MsMetaError(
                f"{path} is not an MLPModel file: {type(err).__name__}: {first_line(err)}"
            ) from None
        state.untrained_size = 0
        return cls(state, features, seed=seed)

    def _continued(self, group_hash: str, feats: list[np.ndarray], costs: np.ndarray):
        from tvm.s_tir.meta_schedule.cost_model.mlp_model import State

        base = self.state
        state = State(extractor=base.extractor)
        state.model = copy.deepcopy(base.model)
        state.data = OrderedDict(base.data)
        if group_hash in state.data:  # never append to the shared group
            group = state.data[group_hash]
            state.data[group_hash] = type(group)(
                group_hash, list(group.features), np.asarray(group.costs).copy()
            )
        state.data_size = base.data_size
        state.untrained_size = base.untrained_size
        trainer = _mlp_trainer(state)
        with _stock_mlp_training():
            trainer.update(feats, costs, group_hash)
        return trainer

    def score(self, task: FeatureTask, support: np.ndarray, query: np.ndarray) -> np.ndarray:
        feats = self.features(task)
        call_seed = _score_seed(self.seed, task.name, len(support))
        with _seeded(call_seed), _quiet_mlp_logger():
            support = support[feats.extracted[support]]
            if len(support):
                trainer = self._continued(
                    feats.group_hash, feats.select(support, MLP_COLUMNS), _costs(task, support)
                )
            else:
                trainer = _mlp_trainer(self.state)
            extracted = feats.extracted[query]
            out = np.zeros(len(query))
            if extracted.any():
                pred = trainer.predict_incremental(feats.select(query[extracted], MLP_COLUMNS))
                pred = np.atleast_1d(np.asarray(pred, np.float64))
                out[extracted] = pred
                out[~extracted] = pred.min() - 1.0
        return out
