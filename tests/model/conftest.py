"""Synthetic loop-nest graphs for the learnable core's tests (no TVM).

Each group is one synthetic task: a fixed number of blocks, each under its own chain of loops
and reading/writing a few buffers. Candidates of a task differ in their "schedule": loop
extents, which loops are parallel / vectorized / unrolled, and which accesses are contiguous.
A hidden latency model rewards contiguous innermost accesses, a vectorized innermost loop and
a parallel outer loop, so a model that reads those features can learn to rank candidates.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from ms_meta.feature.schema import (
    EDGE_ACCESS,
    EDGE_DATAFLOW,
    EDGE_FEATURE_INDEX,
    EDGE_NEST,
    EDGE_SEQ,
    NODE_BLOCK,
    NODE_FEATURE_INDEX,
    NODE_LOOP,
    NODE_READ,
    NODE_TASK,
    NODE_TYPES,
    NODE_WRITE,
    NUM_EDGE_FEATURES,
    NUM_NODE_FEATURES,
    NUM_TASK_FEATURES,
    TASK_FEATURE_INDEX,
    LoopGraph,
)

_N = NODE_FEATURE_INDEX
_E = EDGE_FEATURE_INDEX


@dataclass(frozen=True)
class SyntheticTask:
    """Shape of one synthetic task: every candidate of the task has this many nodes."""

    num_blocks: int
    loops_per_block: int
    accesses_per_block: int
    log_flops: float


def random_task(
    rng: np.random.Generator,
    *,
    blocks: tuple[int, int] = (1, 2),
    loops: tuple[int, int] = (3, 6),
    accesses: tuple[int, int] = (2, 3),
) -> SyntheticTask:
    """A task with sizes drawn uniformly from the inclusive ranges given."""
    return SyntheticTask(
        num_blocks=int(rng.integers(blocks[0], blocks[1] + 1)),
        loops_per_block=int(rng.integers(loops[0], loops[1] + 1)),
        accesses_per_block=int(rng.integers(accesses[0], accesses[1] + 1)),
        log_flops=float(rng.uniform(15.0, 30.0)),
    )


def random_candidate(rng: np.random.Generator, task: SyntheticTask) -> tuple[LoopGraph, float]:
    """One random schedule of ``task``: its graph and its (hidden) latency in seconds."""
    node_type: list[int] = [NODE_TASK]
    rows: list[np.ndarray] = [_node_row(NODE_TASK)]
    edges: list[tuple[int, int, int]] = []
    edge_rows: list[np.ndarray] = []
    speedup = 0.0
    top_loops: list[int] = []
    writes: list[int] = []  # per block: its write access
    first_reads: list[int | None] = []  # per block: its first read access, if any

    def add_node(kind: int, row: np.ndarray) -> int:
        node_type.append(kind)
        rows.append(row)
        return len(node_type) - 1

    def add_edge(src: int, dst: int, kind: int, attr: np.ndarray | None = None) -> None:
        edges.append((src, dst, kind))
        edge_rows.append(np.zeros(NUM_EDGE_FEATURES, np.float32) if attr is None else attr)

    for _ in range(task.num_blocks):
        num_loops = task.loops_per_block
        log_extents = rng.uniform(0.0, 7.0, num_loops)
        parallel = bool(rng.random() < 0.5)
        vectorized = bool(rng.random() < 0.5)
        unrolled = rng.random(num_loops) < 0.2
        loop_ids: list[int] = []
        parent = 0
        outer = 0.0
        for depth, log_extent in enumerate(log_extents):
            row = _node_row(NODE_LOOP)
            row[_N["depth"]] = depth / 8
            row[_N["loop_log_extent"]] = log_extent
            innermost = depth == num_loops - 1
            if depth == 0 and parallel:
                row[_N["loop_kind_parallel"]] = 1.0
            elif innermost and vectorized:
                row[_N["loop_kind_vectorized"]] = 1.0
            elif unrolled[depth]:
                row[_N["loop_kind_unrolled"]] = 1.0
            else:
                row[_N["loop_kind_serial"]] = 1.0
            row[_N["loop_is_innermost"]] = float(innermost)
            outer += log_extent
            row[_N["loop_log_outer_trips"]] = outer
            loop = add_node(NODE_LOOP, row)
            add_edge(parent, loop, EDGE_NEST)
            loop_ids.append(loop)
            parent = loop
        top_loops.append(loop_ids[0])

        row = _node_row(NODE_BLOCK)
        row[_N["depth"]] = num_loops / 8
        row[_N["block_log_trips"]] = outer
        row[_N["block_log_float_mul"]] = 1.0
        row[_N["block_log_float_add"]] = 1.0
        row[_N["block_log_total_flops"]] = outer + 1.0
        block = add_node(NODE_BLOCK, row)
        add_edge(parent, block, EDGE_NEST)

        first_reads.append(None)
        contiguous = rng.random(task.accesses_per_block) < 0.5
        for a in range(task.accesses_per_block):
            kind = NODE_WRITE if a == 0 else NODE_READ
            row = _node_row(kind)
            row[_N["depth"]] = num_loops / 8
            row[_N["access_log_buffer_bytes"]] = rng.uniform(10.0, 20.0)
            row[_N["access_dtype_bytes"]] = 4.0
            row[_N["access_scope_global"]] = 1.0
            row[_N["access_ndim"]] = 4.0
            stride = 1.0 if contiguous[a] else float(rng.integers(2, 512))
            row[_N["access_log_innermost_stride"]] = np.log2(1.0 + stride)
            row[_N["access_contiguous"]] = float(contiguous[a])
            access = add_node(kind, row)
            add_edge(block, access, EDGE_NEST)
            for depth, loop in enumerate(loop_ids):
                innermost = depth == num_loops - 1
                loop_stride = stride if innermost else float(rng.integers(0, 64))
                attr = np.zeros(NUM_EDGE_FEATURES, np.float32)
                attr[_E["log_abs_stride"]] = np.log2(1.0 + loop_stride)
                attr[_E["stride_zero"]] = float(loop_stride == 0)
                attr[_E["stride_one"]] = float(loop_stride == 1)
                attr[_E["loop_log_extent"]] = log_extents[depth]
                attr[_E["loops_below"]] = (num_loops - 1 - depth) / 8
                add_edge(loop, access, EDGE_ACCESS, attr)
            if kind == NODE_WRITE:
                writes.append(access)
            elif a == 1:
                first_reads[-1] = access

        # The hidden latency model: what a schedule gains over a naive one, in log2 units.
        speedup += 1.5 * contiguous.mean() + 1.0 * (vectorized and contiguous[0])
        speedup += 0.8 * parallel + 0.1 * log_extents[-1] - 0.3 * unrolled.mean()

    for a, b in itertools.pairwise(top_loops):
        add_edge(a, b, EDGE_SEQ)
    for w, r in zip(writes[:-1], first_reads[1:], strict=True):
        if r is not None:
            add_edge(w, r, EDGE_DATAFLOW)

    task_row = np.zeros(NUM_TASK_FEATURES, np.float32)
    task_row[TASK_FEATURE_INDEX["op_dense"]] = 1.0
    task_row[TASK_FEATURE_INDEX["log_flops"]] = task.log_flops
    task_row[TASK_FEATURE_INDEX["num_blocks"]] = task.num_blocks
    graph = LoopGraph(
        node_type=np.asarray(node_type, np.int64),
        x=np.stack(rows).astype(np.float32),
        edge_index=np.asarray([e[:2] for e in edges], np.int64).reshape(-1, 2).T.copy(),
        edge_type=np.asarray([e[2] for e in edges], np.int64),
        edge_attr=np.stack(edge_rows).astype(np.float32).reshape(-1, NUM_EDGE_FEATURES),
        task=task_row,
    )
    latency = 2.0 ** (task.log_flops - 30.0 - speedup / task.num_blocks)
    return graph, float(latency)


def _node_row(kind: int) -> np.ndarray:
    row = np.zeros(NUM_NODE_FEATURES, np.float32)
    row[_N[f"type_{NODE_TYPES[kind]}"]] = 1.0
    return row


@dataclass
class SyntheticDataset:
    """Flat candidates of several tasks; ``labels`` are per-task normalized throughputs."""

    graphs: list[LoopGraph]
    latencies: np.ndarray
    labels: np.ndarray
    groups: np.ndarray


def make_dataset(
    seed: int,
    *,
    num_groups: int = 8,
    per_group: int = 24,
    fail_rate: float = 0.05,
    **task_sizes: tuple[int, int],
) -> SyntheticDataset:
    """``num_groups`` tasks with ``per_group`` candidates each, deterministic in ``seed``.

    A ``fail_rate`` fraction of candidates "failed": latency ``inf``, label 0.
    """
    rng = np.random.default_rng(seed)
    graphs, latencies, groups = [], [], []
    for g in range(num_groups):
        task = random_task(rng, **task_sizes)
        for _ in range(per_group):
            graph, latency = random_candidate(rng, task)
            if rng.random() < fail_rate:
                latency = np.inf
            graphs.append(graph)
            latencies.append(latency)
            groups.append(g)
    latencies_arr = np.asarray(latencies, np.float64)
    groups_arr = np.asarray(groups, np.int64)
    labels = np.zeros_like(latencies_arr)
    for g in range(num_groups):
        mask = groups_arr == g
        finite = latencies_arr[mask][np.isfinite(latencies_arr[mask])]
        if finite.size:  # labels stay 0 in a group where every run failed
            labels[mask] = finite.min() / latencies_arr[mask]
    return SyntheticDataset(graphs, latencies_arr, labels, groups_arr)


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    # These models are tiny: one thread is faster than two, and immune to a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def train_set() -> SyntheticDataset:
    return make_dataset(0, num_groups=16, per_group=24)


@pytest.fixture(scope="session")
def test_set() -> SyntheticDataset:
    return make_dataset(1, num_groups=8, per_group=24)


@pytest.fixture(scope="session")
def small_graphs() -> list[LoopGraph]:
    return make_dataset(2, num_groups=2, per_group=6).graphs
