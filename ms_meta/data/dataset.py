"""Training data: tuning records replayed into loop-nest graphs with labels, cached on disk.

Each record's trace is replayed on its workload and the scheduled PrimFunc encoded with
:func:`~ms_meta.feature.graph.encode_primfunc`. Featurizing is the slow part (3 to 30 ms per
record), so the graphs of every workload are cached in one ``.npz`` file (no pickle) and
rebuilding from unchanged records featurizes nothing.

Cache layout
------------
One file per workload of a database, ``<cache_dir>/<task>-<key>.npz``. ``key`` hashes the
absolute path of the record file, the workload line, :data:`~ms_meta.feature.schema.FEATURE_VERSION`
and :data:`~ms_meta.data.layout.DATASET_FORMAT_VERSION`: a new encoding gets new files and never
reads old ones. The name does *not* depend on the record file's contents, because record files
are append-only (the collector adds lines while we read): the file stores how many record lines
it covers and the SHA-256 of those lines' bytes, so a file that only grew re-uses the cached
prefix and featurizes only the new lines, and a file that was rewritten is featurized again.

Arrays in the ``.npz`` (PyTorch Geometric style, all graphs of the workload concatenated; graph
``i`` owns nodes ``node_ptr[i]:node_ptr[i+1]`` and edges ``edge_ptr[i]:edge_ptr[i+1]``, and its
``edge_index`` holds node indices local to the graph):

=============  ========================  ===================================================
``node_type``  ``[N]`` int64             node type of every node
``x``          ``[N, F_node]`` float32   node features
``node_ptr``   ``[G + 1]`` int64         node offsets
``edge_index`` ``[2, E]`` int64          source and destination, local to each graph
``edge_type``  ``[E]`` int64             edge type
``edge_attr``  ``[E, F_edge]`` float32   edge features
``edge_ptr``   ``[G + 1]`` int64         edge offsets
``task``       ``[F_task]`` float32      task features, shared by every graph
``lines``      ``[G]`` int64             1-based record-file line of each graph
``latencies``  ``[G]`` float64           seconds (min over repeats; ``inf`` = failed run)
``meta``       0-d str                   JSON: versions, source, coverage, skipped lines
=============  ========================  ===================================================
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ms_meta.data import layout
from ms_meta.data.layout import DATASET_FORMAT_VERSION, DatabaseFiles
from ms_meta.data.prefix_cache import (
    Snapshot,
    cache_path,
    prefix_still_valid,
    read_snapshot,
    write_npz_atomically,
)
from ms_meta.data.records import (
    REBUILD,
    SKIP_KINDS,
    UNDECODABLE_WORKLOAD,
    LoadedDatabase,
    Record,
    SkippedLine,
    WorkloadGroup,
    load_files,
)
from ms_meta.errors import DatabaseError, MsMetaError, first_line
from ms_meta.feature import schema
from ms_meta.feature.schema import LoopGraph
from ms_meta.model.meta import normalized_throughput

logger = logging.getLogger(__name__)

#: Environment variable naming the dataset cache directory.
CACHE_ENV = "MS_META_CACHE"

#: Skip kind of a record whose scheduled function the encoder could not encode.
ENCODE = "encode"
# Records the collector's contention guard could not time undisturbed (meta.json's
# ``disturbed_lines``): other processes took CPU during every attempt.
DISTURBED = "disturbed"
DATASET_SKIP_KINDS = (*SKIP_KINDS, ENCODE, DISTURBED)

# Whether the records of a workload share one BlockCache, as GraphFeatureExtractor does. The
# cache key covers what tiling changes (allocated buffer names and shapes; rfactor blocks are
# never cached), so a graph is the same with or without the cache
# (tests/feature/test_graph.py::test_shared_block_cache_gives_the_same_graphs_as_fresh_encoding
# and the cache tests here check it); sharing saves 1 to 2.5 ms per record.
SHARE_BLOCK_CACHE = True

#: ``progress(n_done, n_total, note)``: records handled so far, records in all, current task.
ProgressFn = Callable[[int, int, str], None]

PathLike = str | os.PathLike[str]


class _DefaultCache:
    """Sentinel: use :func:`default_cache_dir` (``None`` means no cache at all)."""

    def __repr__(self) -> str:
        return "DEFAULT_CACHE"


DEFAULT_CACHE: Any = _DefaultCache()


def default_cache_dir() -> Path:
    """``$MS_META_CACHE`` if set, else ``$XDG_CACHE_HOME/ms-meta/datasets`` (``~/.cache/...``)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ms-meta" / "datasets"


# --------------------------------------------------------------------------------------------
# Public data classes
# --------------------------------------------------------------------------------------------


@dataclass
class TaskData:
    """The featurized records of one workload (one meta-learning task).

    Attributes
    ----------
    name : str
        Task name (``meta.json`` "task", else the directory name; ``[i]`` for workload ``i`` of
        a database holding several).
    op : str
        Operator kind (``meta.json`` "op", else inferred from the workload).
    graphs : list of LoopGraph
        One graph per usable record, in record-file order.
    latencies : np.ndarray
        ``[n]`` float64 seconds: the minimum over each record's ``run_secs`` repeats (robust to
        interference from other processes); ``inf`` for a failed build or run.
    labels : np.ndarray
        ``[n]`` float32 normalized throughput (best / latency) in [0, 1]; failed runs get 0.
    task_features : np.ndarray
        ``[NUM_TASK_FEATURES]`` float32, shared by all graphs (``graph.task``).
    source : Path
        The database directory.
    workload_hash : str
        The workload's structural hash as stored in the workload file.
    lines : np.ndarray
        ``[n]`` int64 1-based line of each record in the record file.
    split_name : str
        The name a task split knows this task by: the workload's task name. It differs from
        ``name`` only for records that were measured elsewhere and ingested
        (``name = "<task>@<source>"``; see :func:`measurement_sources`). Empty means ``name``.
    """

    name: str
    op: str
    graphs: list[LoopGraph]
    latencies: np.ndarray
    labels: np.ndarray
    task_features: np.ndarray
    source: Path
    workload_hash: str
    lines: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    split_name: str = ""

    def __post_init__(self) -> None:
        if not self.split_name:
            self.split_name = self.name

    def __len__(self) -> int:
        return len(self.graphs)

    @property
    def num_failed(self) -> int:
        """Records whose build or run failed (label 0)."""
        return int(np.sum(~np.isfinite(self.latencies)))


@dataclass
class DatasetSkips:
    """Lines left out while building a data set, and failed runs kept (with label 0).

    Attributes
    ----------
    skipped : list of SkippedLine
        Lines the database reader rejected (kinds of :mod:`ms_meta.data.records`), records whose
        trace does not replay on the workload (``"rebuild"``) and records the encoder could not
        encode (``"encode"``).
    failed_runs : int
        Records kept whose build or run failed.
    """

    skipped: list[SkippedLine] = field(default_factory=list)
    failed_runs: int = 0

    @property
    def num_skipped(self) -> int:
        """Number of skipped lines (and unreadable files)."""
        return len(self.skipped)

    def by_kind(self) -> dict[str, int]:
        """Skipped lines per kind, only kinds that occur."""
        counts = Counter(item.kind for item in self.skipped)
        kinds = [*DATASET_SKIP_KINDS, *sorted(set(counts) - set(DATASET_SKIP_KINDS))]
        return {kind: counts[kind] for kind in kinds if counts[kind]}

    def summary(self) -> str:
        """One line, e.g. ``3 lines skipped (2 malformed, 1 rebuild); 5 failed runs``."""
        kinds = ", ".join(f"{n} {kind}" for kind, n in self.by_kind().items())
        text = f"{self.num_skipped} lines skipped" + (f" ({kinds})" if kinds else "")
        return f"{text}; {self.failed_runs} failed runs"


@dataclass
class BuildStats:
    """Where the records of a build came from.

    Attributes
    ----------
    encoded : int
        Records replayed and encoded in this build (skips included).
    cached : int
        Records taken from the cache (cached skips included).
    cache_files_written : int
        Cache files created or extended.
    """

    encoded: int = 0
    cached: int = 0
    cache_files_written: int = 0


@dataclass
class Dataset:
    """Featurized tuning records, one :class:`TaskData` per workload.

    Attributes
    ----------
    tasks : list of TaskData
        In reading order; workloads without a usable record are left out.
    skips : DatasetSkips
        What was left out and why.
    stats : BuildStats
        Cache hits and featurization counts of the build.
    """

    tasks: list[TaskData] = field(default_factory=list)
    skips: DatasetSkips = field(default_factory=DatasetSkips)
    stats: BuildStats = field(default_factory=BuildStats)

    @property
    def num_records(self) -> int:
        """Graphs over all tasks."""
        return sum(len(t) for t in self.tasks)

    @property
    def names(self) -> list[str]:
        """Task names, in order."""
        return [t.name for t in self.tasks]

    def select(self, names: Iterable[str]) -> Dataset:
        """The tasks called ``names``, in this data set's order (skips and stats are shared).

        Raises
        ------
        MsMetaError
            When a name is not a task of this data set.
        """
        wanted = set(names)
        unknown = wanted - set(self.names) - {t.split_name for t in self.tasks}
        if unknown:
            raise MsMetaError(
                f"not in the data set: {', '.join(sorted(unknown))} "
                f"(it has {len(self.tasks)} tasks)"
            )
        tasks = [t for t in self.tasks if t.name in wanted or t.split_name in wanted]
        return Dataset(tasks, self.skips, self.stats)

    def split(self, split: Mapping[str, Any]) -> dict[str, Dataset]:
        """Split into named parts by a task split (:func:`ms_meta.data.split.make_task_split`).

        Every list-valued entry (``train``, ``held_out``) becomes a part. A split is usually
        made over a whole records tree, so its tasks missing from this data set are left out
        with a warning instead of raising, as are this data set's tasks that no part names.

        Returns
        -------
        dict of str to Dataset
            E.g. ``{"train": ..., "held_out": ...}``.
        """
        parts = {k: v for k, v in split.items() if isinstance(v, list)}
        if not parts:
            raise MsMetaError("the split has no task lists (expected 'train' and 'held_out')")
        # Records of one workload measured in different places are separate tasks here, but
        # always on the same side of a split.
        have = {t.split_name for t in self.tasks}
        named: set[str] = set()
        result = {}
        for part, names in parts.items():
            names = {str(n) for n in names}
            named |= names
            missing = names - have
            if missing:
                # Expected for a split of the whole workload library (`db split --library`):
                # tasks not collected yet simply have no records.
                logger.info(
                    "%d %s task(s) of the split are not in the data set: %s",
                    len(missing),
                    part,
                    ", ".join(sorted(missing)[:10]) + (" ..." if len(missing) > 10 else ""),
                )
            tasks = [t for t in self.tasks if t.split_name in names]
            result[part] = Dataset(tasks, self.skips, self.stats)
        unnamed = have - named
        if unnamed:
            logger.info("%d task(s) are in no part of the split", len(unnamed))
        return result

    def flatten(self) -> tuple[list[LoopGraph], np.ndarray, np.ndarray]:
        """All records as the flat ``graphs, labels, groups`` that :func:`ms_meta.model.train.fit`
        takes (``groups`` is the index of each record's task in :attr:`tasks`).

        Shapes: ``graphs [n]``, ``labels [n]`` float32, ``groups [n]`` int64.
        """
        graphs = [g for t in self.tasks for g in t.graphs]
        if not self.tasks:
            return graphs, np.zeros(0, np.float32), np.zeros(0, np.int64)
        labels = np.concatenate([t.labels for t in self.tasks]).astype(np.float32, copy=False)
        groups = np.repeat(np.arange(len(self.tasks), dtype=np.int64), [len(t) for t in self.tasks])
        return graphs, labels, groups

    def summary(self) -> dict[str, Any]:
        """Counts as a JSON-ready dict: totals, per operator kind, skips and cache use."""
        operators: dict[str, dict[str, int]] = {}
        counted: set[str] = set()
        for t in self.tasks:
            entry = operators.setdefault(t.op, {"tasks": 0, "records": 0})
            entry["tasks"] += t.split_name not in counted
            counted.add(t.split_name)
            entry["records"] += len(t)
        return {
            "tasks": len({t.split_name for t in self.tasks}),
            "measurement_groups": len(self.tasks),
            "records": self.num_records,
            "failed": sum(t.num_failed for t in self.tasks),
            "operators": dict(sorted(operators.items())),
            "skipped": self.skips.by_kind(),
            "encoded": self.stats.encoded,
            "cached": self.stats.cached,
            "feature_version": schema.FEATURE_VERSION,
        }


# --------------------------------------------------------------------------------------------
# Reading the record file once, for the cache's prefix check
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Cache files
# --------------------------------------------------------------------------------------------


@dataclass
class _CacheEntry:
    lines: np.ndarray
    graphs: list[LoopGraph]
    latencies: np.ndarray
    task: np.ndarray
    op: str
    covered: int  # every record line <= covered is in ``lines`` or ``skipped`` (or not ours)
    skipped: dict[int, tuple[str, str]]  # line -> (kind, reason)


def _cache_identity(files: DatabaseFiles, group: WorkloadGroup) -> dict[str, Any]:
    records = files.records.resolve() if files.records else None
    return {
        "records": str(records),
        "workload_sha256": hashlib.sha256(group.line_text.encode("utf-8")).hexdigest(),
        "workload_index": group.index,
        "feature_version": schema.FEATURE_VERSION,
        "format_version": DATASET_FORMAT_VERSION,
    }


def _stack_graphs(graphs: Sequence[LoopGraph]) -> dict[str, np.ndarray]:
    """Concatenate graphs (PyG style: offsets into node and edge arrays, local edge indices)."""
    node_ptr = np.zeros(len(graphs) + 1, np.int64)
    edge_ptr = np.zeros(len(graphs) + 1, np.int64)
    np.cumsum([g.num_nodes for g in graphs], out=node_ptr[1:])
    np.cumsum([g.num_edges for g in graphs], out=edge_ptr[1:])
    if not graphs:  # a workload whose every record was skipped: keep the column shapes
        neutral = LoopGraph.neutral()
        graphs = [LoopGraph(neutral.node_type[:0], neutral.x[:0], *astuple(neutral)[2:])]
    return {
        "node_type": np.concatenate([g.node_type for g in graphs]),
        "x": np.concatenate([g.x for g in graphs]),
        "node_ptr": node_ptr,
        "edge_index": np.concatenate([g.edge_index for g in graphs], axis=1),
        "edge_type": np.concatenate([g.edge_type for g in graphs]),
        "edge_attr": np.concatenate([g.edge_attr for g in graphs]),
        "edge_ptr": edge_ptr,
    }


def _unstack_graphs(arrays: Mapping[str, np.ndarray], task: np.ndarray) -> list[LoopGraph]:
    node_ptr, edge_ptr = arrays["node_ptr"], arrays["edge_ptr"]
    node_type, x = arrays["node_type"], arrays["x"]
    edge_index, edge_type = arrays["edge_index"], arrays["edge_type"]
    edge_attr = arrays["edge_attr"]
    graphs = []
    for i in range(len(node_ptr) - 1):
        n0, n1 = int(node_ptr[i]), int(node_ptr[i + 1])
        e0, e1 = int(edge_ptr[i]), int(edge_ptr[i + 1])
        graphs.append(
            LoopGraph(
                node_type=node_type[n0:n1],
                x=x[n0:n1],
                edge_index=np.ascontiguousarray(edge_index[:, e0:e1]),
                edge_type=edge_type[e0:e1],
                edge_attr=edge_attr[e0:e1],
                task=task,
            )
        )
    return graphs


def _load_cache(path: Path, identity: dict[str, Any], snapshot: Snapshot) -> _CacheEntry | None:
    """The cached entry at ``path`` if it belongs to ``identity`` and the file still starts with
    the lines it covers; ``None`` otherwise (a stale or damaged cache is rebuilt, never fatal)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        meta = json.loads(str(arrays["meta"]))
        if not prefix_still_valid(meta, identity, snapshot, path, "re-featurizing"):
            return None
        covered = int(meta["covered_lines"])
        task = arrays["task"].astype(np.float32, copy=False)
        graphs = _unstack_graphs(arrays, task)
        lines = arrays["lines"].astype(np.int64, copy=False)
        if len(graphs) != len(lines) or len(lines) != len(arrays["latencies"]):
            raise ValueError("array lengths disagree")
        skipped = {int(line): (str(kind), str(reason)) for line, kind, reason in meta["skipped"]}
        latencies = arrays["latencies"]
        return _CacheEntry(lines, graphs, latencies, task, str(meta["op"]), covered, skipped)
    except Exception as err:  # a damaged cache file only costs a re-featurization
        logger.warning("ignoring unreadable dataset cache %s: %s", path, err)
        return None


def _write_cache(
    path: Path,
    identity: dict[str, Any],
    entry: _CacheEntry,
    snapshot: Snapshot,
    task_name: str,
) -> bool:
    """Write ``entry`` atomically (temporary file, then ``os.replace``); ``False`` on failure."""
    meta = {
        "identity": identity,
        "task": task_name,
        "op": entry.op,
        "covered_lines": entry.covered,
        "covered_bytes": int(snapshot.ends[entry.covered - 1]) if entry.covered else 0,
        "prefix_sha256": snapshot.digest(entry.covered),
        "skipped": [[line, kind, reason] for line, (kind, reason) in sorted(entry.skipped.items())],
        "num_graphs": len(entry.graphs),
    }
    arrays = _stack_graphs(entry.graphs)
    arrays.update(
        task=np.asarray(entry.task, np.float32),
        lines=np.asarray(entry.lines, np.int64),
        latencies=np.asarray(entry.latencies, np.float64),
        meta=np.array(json.dumps(meta)),
    )
    return write_npz_atomically(path, arrays, "dataset cache")


# --------------------------------------------------------------------------------------------
# Featurizing
# --------------------------------------------------------------------------------------------


def record_latency(run_secs: Sequence[float] | None, failed: bool) -> float:
    """Seconds of one record: the minimum over its repeats, ``inf`` when it failed."""
    if failed or not run_secs:
        return math.inf
    return float(min(run_secs))


class _Featurizer:
    """Replays traces on one workload and encodes the results (imports TVM on first use)."""

    def __init__(self, group: WorkloadGroup, task: np.ndarray | None) -> None:
        import tvm

        from ms_meta.feature.graph import BlockCache
        from ms_meta.feature.task import task_features

        self._tvm = tvm
        self.mod = group.mod  # raises DatabaseError when the workload does not decode
        if task is None:
            try:
                task = task_features(self.mod)
            except Exception as err:  # same fallback as GraphFeatureExtractor at tuning time
                logger.warning("task features unavailable for %s: %s", group.task, err)
                task = LoopGraph.neutral().task
        self.task = np.asarray(task, np.float32)
        self.cache = BlockCache.for_module(self.mod) if SHARE_BLOCK_CACHE else BlockCache(False)

    def scheduled(self, trace_json: Any):
        """The workload scheduled by ``trace_json`` (decisions included).

        The same replay ``TuningRecord.from_json`` does (checks off, as MetaSchedule loads
        records), without building the intermediate ``TuningRecord``: half the cost.
        """
        from tvm.s_tir.schedule import Trace

        sch = self._tvm.s_tir.Schedule(self.mod, seed=1, enable_check=False)
        Trace.apply_json_to_schedule(trace_json, sch)
        mod = sch.mod
        names = [str(g.name_hint) for g in mod.get_global_vars()]
        return mod["main"] if "main" in names else mod[names[0]]

    def encode(self, trace_json: Any) -> tuple[LoopGraph | None, str, str]:
        """``(graph, "", "")`` or ``(None, skip kind, reason)``."""
        from ms_meta.feature.graph import encode_primfunc

        try:
            func = self.scheduled(trace_json)
        except Exception as err:  # TVM raises ScheduleError/TVMError/ValueError for a bad trace
            return None, REBUILD, f"the trace does not replay: {first_line(err)}"
        try:
            return encode_primfunc(func, self.task, self.cache), "", ""
        except Exception as err:  # an unencodable program is a skipped record, not a crash
            return None, ENCODE, f"encoding failed: {type(err).__name__}: {first_line(err)}"


@dataclass
class _Context:
    cache_dir: Path | None
    skips: DatasetSkips
    stats: BuildStats
    progress: ProgressFn | None
    total: int
    done: int = 0

    def advance(self, n: int, note: str) -> None:
        self.done += n
        if self.progress is not None and n:
            self.progress(self.done, self.total, note)


def _covered_lines(
    entry: _CacheEntry | None, group: WorkloadGroup, records: list[Record], snapshot: Snapshot
) -> int:
    """The record line up to which the cache may claim to be complete after this build.

    Every record of the workload up to that line has been handled (from the cache or now), and
    the line is complete in the snapshot, so its bytes are final in an append-only file.
    """
    handled = snapshot.complete_lines if len(records) == len(group.records) else records[-1].line
    return min(max(entry.covered if entry else 0, handled), snapshot.complete_lines)


def _latencies_of(lines: np.ndarray, group: WorkloadGroup, entry: _CacheEntry | None) -> np.ndarray:
    latency = {}
    if entry is not None:
        latency.update(zip(entry.lines.tolist(), entry.latencies.tolist(), strict=True))
    latency.update((r.line, record_latency(r.run_secs, r.failed)) for r in group.records)
    return np.asarray([latency.get(line, math.inf) for line in lines.tolist()], np.float64)


def _build_task(
    db: LoadedDatabase,
    group: WorkloadGroup,
    snapshot: Snapshot,
    limit: int | None,
    ctx: _Context,
) -> list[TaskData]:
    """The records of one workload as tasks: one per measurement source (see
    :func:`measurement_sources`), none when no record is usable."""
    records = group.records if limit is None else group.records[:limit]
    if not records:
        return []
    record_path = db.files.records or db.files.directory
    identity = _cache_identity(db.files, group)
    path = cache_path(ctx.cache_dir, identity, group.task) if ctx.cache_dir else None
    entry = _load_cache(path, identity, snapshot) if path is not None else None

    graphs: dict[int, LoopGraph] = {}
    skipped: dict[int, tuple[str, str]] = {}
    task_vec = None
    if entry is not None:
        graphs = dict(zip(entry.lines.tolist(), entry.graphs, strict=True))
        skipped = dict(entry.skipped)
        task_vec = entry.task
    todo = [r for r in records if r.line not in graphs and r.line not in skipped]
    cached = len(records) - len(todo)
    ctx.stats.cached += cached
    ctx.advance(cached, group.task)

    meta_op = (db.meta or {}).get("op")
    op = meta_op if isinstance(meta_op, str) and meta_op else (entry.op if entry else None)
    if todo:
        try:
            featurizer = _Featurizer(group, task_vec)
        except DatabaseError as err:
            for r in todo:
                ctx.skips.skipped.append(
                    SkippedLine(Path(record_path), r.line, UNDECODABLE_WORKLOAD, str(err))
                )
            ctx.advance(len(todo), group.task)
            featurizer = None
        if featurizer is not None:
            task_vec = featurizer.task
            for r in todo:
                graph, kind, reason = featurizer.encode(r.trace)
                if graph is None:
                    skipped[r.line] = (kind, reason)
                    logger.debug("%s:%d: %s", record_path, r.line, reason)
                else:
                    graphs[r.line] = graph
                ctx.stats.encoded += 1
                ctx.advance(1, group.task)
    if op is None:
        op = group.op_kind

    if path is not None and task_vec is not None:
        covered = _covered_lines(entry, group, records, snapshot)
        if todo or entry is None or covered > entry.covered:
            new = _CacheEntry(
                lines=np.asarray(sorted(line for line in graphs if line <= covered), np.int64),
                graphs=[],
                latencies=np.zeros(0),
                task=task_vec,
                op=op,
                covered=covered,
                skipped={line: s for line, s in skipped.items() if line <= covered},
            )
            new.graphs = [graphs[line] for line in new.lines.tolist()]
            new.latencies = _latencies_of(new.lines, group, entry)
            if _write_cache(path, identity, new, snapshot, group.task):
                ctx.stats.cache_files_written += 1

    disturbed = disturbed_line_mask(db.meta, np.asarray([r.line for r in records], np.int64))
    for r, is_disturbed in zip(records, disturbed.tolist(), strict=True):
        if is_disturbed and r.line in graphs:
            del graphs[r.line]  # the cache keeps it: a later meta.json may judge differently
            skipped[r.line] = (DISTURBED, "timed while other processes took CPU")
    used = [r for r in records if r.line in graphs]
    for r in records:
        if r.line in skipped:
            kind, reason = skipped[r.line]
            ctx.skips.skipped.append(SkippedLine(Path(record_path), r.line, kind, reason))
    logger.info(
        "%s: %d records (%d from cache, %d featurized, %d skipped)",
        group.task,
        len(used),
        cached,
        len(todo),
        sum(r.line in skipped for r in records),
    )
    if not used:
        return []
    latencies = np.asarray([record_latency(r.run_secs, r.failed) for r in used], np.float64)
    ctx.skips.failed_runs += int(np.sum(~np.isfinite(latencies)))
    lines = np.asarray([r.line for r in used], np.int64)
    sources, source_names = measurement_sources(db.meta, lines)
    parts = np.unique(sources)
    tasks = []
    for part in parts.tolist():
        index = np.nonzero(sources == part)[0]
        name = group.task
        if part > 0 and len(parts) > 1:
            name = f"{group.task}@{source_names[part - 1]}"
        tasks.append(
            TaskData(
                name=name,
                op=op,
                graphs=[graphs[used[i].line] for i in index.tolist()],
                latencies=latencies[index],
                labels=normalized_throughput(latencies[index]),
                task_features=np.asarray(task_vec, np.float32),
                source=db.files.directory,
                workload_hash=group.shash,
                lines=lines[index],
                split_name=group.task,
            )
        )
    return tasks


def disturbed_line_mask(meta: Mapping[str, Any] | None, lines: np.ndarray) -> np.ndarray:
    """Which record lines the collector timed only while other processes took CPU.

    ``meta.json``'s ``disturbed_lines`` lists ``[first, last]`` line ranges (1-based,
    inclusive) of batches that its contention guard kept although every attempt was disturbed
    (see :mod:`ms_meta.tuning.contention`).

    Shapes: ``lines [n]`` -> ``[n]`` bool.
    """
    mask = np.zeros(len(lines), bool)
    ranges = (meta or {}).get("disturbed_lines") or []
    if not isinstance(ranges, list):
        return mask
    for item in ranges:
        if isinstance(item, (list, tuple)) and len(item) == 2:
            first, last = int(item[0]), int(item[1])
            mask |= (lines >= first) & (lines <= last)
    return mask


def measurement_sources(
    meta: Mapping[str, Any] | None, lines: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """Which measurement each record line of a task directory comes from.

    Latencies measured on different machines, or at different times on a shared one, are not
    comparable: the seed records, measured on another machine of the same type, time the same
    schedules about 2x faster than this project's collector (median over the 163 schedules
    measured by both), and a later VM of the Zen 4 type timed earlier VMs' records at 0.7-0.8x.
    Normalized labels and ranking pairs must therefore stay within one measurement.

    Source 0 is what was measured into the directory itself by collectors that did not name
    their machine (before session 11). Source ``i >= 1`` is the ``i``-th of the names returned:
    first each entry of ``meta.json``'s ``ingested`` map, whose records occupy the lines from
    its ``first_line`` on (entries written before ``first_line`` was recorded were ingested
    into empty directories, one after another, so they start at line 1); then each distinct
    ``machine`` named by ``meta.json``'s ``sources`` entries (the collector's record of where
    it timed which lines).

    Shapes: ``lines [n]`` (1-based) -> ``sources [n]`` int64, with the other sources' names.
    """
    meta = meta or {}
    ingested = meta.get("ingested") or {}
    sources = np.zeros(len(lines), np.int64)
    names: list[str] = []
    next_first = 1
    if isinstance(ingested, Mapping):
        for name, entry in ingested.items():
            if not isinstance(entry, Mapping):
                continue
            count = int(entry.get("records", 0) or 0)
            first = int(entry.get("first_line", next_first) or next_first)
            names.append(str(name))
            sources[(lines >= first) & (lines < first + count)] = len(names)
            next_first = first + count
    collected = meta.get("sources") or []
    for entry in collected if isinstance(collected, list) else []:
        machine = entry.get("machine") if isinstance(entry, Mapping) else None
        if not machine:
            continue
        if machine not in names:
            names.append(str(machine))
        first, last = entry["lines"]
        sources[(lines >= first) & (lines <= last)] = names.index(machine) + 1
    return sources, names


def _resolve(paths: PathLike | DatabaseFiles | Iterable[PathLike | DatabaseFiles]):
    if isinstance(paths, (str, os.PathLike, DatabaseFiles)):
        paths = [paths]
    seen: set[tuple[Path | None, Path | None]] = set()
    for item in paths:
        found = [item] if isinstance(item, DatabaseFiles) else layout.resolve_databases(Path(item))
        for files in found:
            key = tuple(p.resolve() if p else None for p in (files.workload, files.records))
            if key not in seen:
                seen.add(key)
                yield files


def build_dataset(
    paths: PathLike | DatabaseFiles | Iterable[PathLike | DatabaseFiles],
    *,
    cache_dir: PathLike | None = DEFAULT_CACHE,
    progress: ProgressFn | None = None,
    limit_per_task: int | None = None,
) -> Dataset:
    """Featurize tuning databases into loop-nest graphs and labels, re-using the on-disk cache.

    Each record's trace is replayed on its workload and the scheduled PrimFunc encoded with
    :func:`~ms_meta.feature.graph.encode_primfunc` (one ``BlockCache`` and one set of task
    features per workload, as at tuning time). Labels are the normalized throughput of each
    record's minimum latency within its workload. Input files are only read.

    Parameters
    ----------
    paths : path or DatabaseFiles, or an iterable of them
        Database directories (one MetaSchedule ``JSONDatabase`` work dir, possibly with many
        workloads: one :class:`TaskData` each), trees of them such as ``tuning_records/``, or
        a record or workload file.
    cache_dir : path or None
        Where the ``.npz`` cache lives; by default :func:`default_cache_dir`. ``None``
        disables the cache (nothing is read or written).
    progress : callable, optional
        ``progress(n_done, n_total, note)`` after each featurized record and each cached
        chunk; ``note`` is the task name.
    limit_per_task : int, optional
        Use only the first ``limit_per_task`` records (file order) of each workload.

    Returns
    -------
    Dataset
        One task per workload with at least one usable record. An empty database (no record
        lines) is not an error: it gives no task, so an empty tree gives ``Dataset.tasks == []``
        with the reasons in ``Dataset.skips``.

    Raises
    ------
    DatabaseError
        When a path does not exist or holds no database.
    ValueError
        When ``limit_per_task`` is below 1.
    """
    if limit_per_task is not None and limit_per_task < 1:
        raise ValueError(f"limit_per_task must be at least 1, got {limit_per_task}")
    if isinstance(cache_dir, _DefaultCache):
        cache_dir = default_cache_dir()
    cache = Path(cache_dir).expanduser() if cache_dir is not None else None

    loaded: list[tuple[LoadedDatabase, Snapshot]] = []
    for files in list(_resolve(paths)):
        # Snapshot first: the reader then sees these lines and maybe more, never fewer.
        snapshot = read_snapshot(files.records)
        loaded.append((load_files(files), snapshot))

    def count(group: WorkloadGroup) -> int:
        n = len(group.records)
        return n if limit_per_task is None else min(n, limit_per_task)

    skips = DatasetSkips()
    total = sum(count(g) for db, _ in loaded for g in db.groups)
    ctx = _Context(cache, skips, BuildStats(), progress, total)
    dataset = Dataset(skips=skips, stats=ctx.stats)
    for db, snapshot in loaded:
        skips.skipped.extend(db.skips.skipped)
        for group in db.groups:
            dataset.tasks.extend(_build_task(db, group, snapshot, limit_per_task, ctx))
    if not dataset.tasks:
        logger.warning("no usable tuning records: %s", skips.summary())
    logger.info(
        "dataset: %d tasks, %d records (%d featurized, %d from cache); %s",
        len(dataset.tasks),
        dataset.num_records,
        ctx.stats.encoded,
        ctx.stats.cached,
        skips.summary(),
    )
    return dataset


__all__ = [
    "CACHE_ENV",
    "DEFAULT_CACHE",
    "ENCODE",
    "BuildStats",
    "Dataset",
    "DatasetSkips",
    "ProgressFn",
    "TaskData",
    "build_dataset",
    "default_cache_dir",
    "measurement_sources",
    "record_latency",
]
