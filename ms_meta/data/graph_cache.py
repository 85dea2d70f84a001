"""The on-disk cache of featurized records: one ``.npz`` file (no pickle) per workload.

Featurizing is the slow part of building a data set (3 to 30 ms per record), so
:mod:`ms_meta.data.dataset` keeps the graphs of every workload here and rebuilding from
unchanged records featurizes nothing.

Cache layout
------------
One file per workload of a database, ``<cache_dir>/<task>-<key>.npz``. ``key`` hashes the
absolute path of the record file, the workload line, :data:`~ms_meta.feature.schema.FEATURE_VERSION`
and :data:`~ms_meta.data.layout.DATASET_FORMAT_VERSION`: a new encoding gets new files and never
reads old ones. The name does *not* depend on the record file's contents, because record files
are append-only (the collector adds lines while others read them): the file stores how many
record lines it covers and the SHA-256 of those lines' bytes, so a file that only grew re-uses
the cached prefix and featurizes only the new lines, and a file that was rewritten is
featurized again.

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
from collections.abc import Mapping, Sequence
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ms_meta.data.layout import DATASET_FORMAT_VERSION, DatabaseFiles
from ms_meta.data.prefix_cache import Snapshot, prefix_still_valid, write_npz_atomically
from ms_meta.data.records import WorkloadGroup
from ms_meta.feature import schema
from ms_meta.feature.schema import LoopGraph

__all__ = ["CacheEntry", "cache_identity", "load_cache", "write_cache"]

logger = logging.getLogger(__name__)


@dataclass
class CacheEntry:
    lines: np.ndarray
    graphs: list[LoopGraph]
    latencies: np.ndarray
    task: np.ndarray
    op: str
    # every record line <= covered is in ``lines`` or ``skipped``, or belongs to another workload
    covered: int
    skipped: dict[int, tuple[str, str]]  # line -> (kind, reason)


def cache_identity(files: DatabaseFiles, group: WorkloadGroup) -> dict[str, Any]:
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


def load_cache(path: Path, identity: dict[str, Any], snapshot: Snapshot) -> CacheEntry | None:
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
        return CacheEntry(lines, graphs, latencies, task, str(meta["op"]), covered, skipped)
    except Exception as err:  # a damaged cache file only costs a re-featurization
        logger.warning("ignoring unreadable dataset cache %s: %s", path, err)
        return None


def write_cache(
    path: Path,
    identity: dict[str, Any],
    entry: CacheEntry,
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
