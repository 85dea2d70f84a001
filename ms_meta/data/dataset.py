"""Training data: tuning records replayed into loop-nest graphs with labels, cached on disk.

Each record's trace is replayed on its workload and the scheduled PrimFunc encoded with
:func:`~ms_meta.feature.graph.encode_primfunc`. Featurizing is the slow part (3 to 30 ms per
record), so the graphs of every workload are cached in one ``.npz`` file (no pickle) and
rebuilding from unchanged records featurizes nothing.

The cache (:mod:`ms_meta.data.graph_cache`) is keyed so that a record file that only grew
re-uses the cached prefix and featurizes only the new lines.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ms_meta.data import layout
from ms_meta.data.graph_cache import CacheEntry, cache_identity, load_cache, write_cache
from ms_meta.data.layout import DatabaseFiles
from ms_meta.data.measurements import disturbed_line_mask, measurement_sources, record_latency
from ms_meta.data.prefix_cache import Snapshot, cache_path, read_snapshot
from ms_meta.data.records import (
    REBUILD,
    UNDECODABLE_WORKLOAD,
    LoadedDatabase,
    Record,
    SkippedLine,
    WorkloadGroup,
    load_files,
)
from ms_meta.data.task_data import (
    DATASET_SKIP_KINDS,
    DISTURBED,
    ENCODE,
    BuildStats,
    Dataset,
    DatasetSkips,
    TaskData,
)
from ms_meta.errors import DatabaseError, first_line
from ms_meta.feature.schema import LoopGraph
from ms_meta.labels import normalized_throughput

__all__ = [
    "CACHE_ENV",
    "DATASET_SKIP_KINDS",
    "DEFAULT_CACHE",
    "DISTURBED",
    "ENCODE",
    "BuildStats",
    "Dataset",
    "DatasetSkips",
    "ProgressFn",
    "TaskData",
    "build_dataset",
    "default_cache_dir",
    "disturbed_line_mask",
    "measurement_sources",
    "record_latency",
]

logger = logging.getLogger(__name__)

#: Environment variable naming the dataset cache directory.
CACHE_ENV = "MS_META_CACHE"


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
    entry: CacheEntry | None, group: WorkloadGroup, records: list[Record], snapshot: Snapshot
) -> int:
    """The record line up to which the cache may claim to be complete after this build.

    Every record of the workload up to that line has been handled (from the cache or now), and
    the line is complete in the snapshot, so its bytes are final in an append-only file.
    """
    handled = snapshot.complete_lines if len(records) == len(group.records) else records[-1].line
    return min(max(entry.covered if entry else 0, handled), snapshot.complete_lines)


def _latencies_of(lines: np.ndarray, group: WorkloadGroup, entry: CacheEntry | None) -> np.ndarray:
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
    identity = cache_identity(db.files, group)
    path = cache_path(ctx.cache_dir, identity, group.task) if ctx.cache_dir else None
    entry = load_cache(path, identity, snapshot) if path is not None else None

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
            new = CacheEntry(
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
            if write_cache(path, identity, new, snapshot, group.task):
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
