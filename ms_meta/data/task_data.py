"""The featurized data set as the model sees it: one :class:`TaskData` per workload and
measurement, with what was left out and why.

Built by :func:`ms_meta.data.dataset.build_dataset`; split by task with
:meth:`Dataset.split` and flattened for training with :meth:`Dataset.flatten`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ms_meta.data.records import SKIP_KINDS, SkippedLine
from ms_meta.errors import MsMetaError
from ms_meta.feature import schema
from ms_meta.feature.schema import LoopGraph

__all__ = [
    "DATASET_SKIP_KINDS",
    "DISTURBED",
    "ENCODE",
    "BuildStats",
    "Dataset",
    "DatasetSkips",
    "TaskData",
]

logger = logging.getLogger(__name__)

#: Skip kind of a record whose scheduled function the encoder could not encode.
ENCODE = "encode"

# Records the collector's contention guard could not time undisturbed (meta.json's
# ``disturbed_lines``): other processes took CPU during every attempt.
DISTURBED = "disturbed"

DATASET_SKIP_KINDS = (*SKIP_KINDS, ENCODE, DISTURBED)


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
