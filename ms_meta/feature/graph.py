"""Encode a scheduled TIR PrimFunc as a loop-nest graph (a :class:`LoopGraph`).

The walk runs for every candidate the evolutionary search scores (thousands per iteration), so it
is written for speed: dispatch on ``type()`` (an ``isinstance`` on an FFI class costs ~4 us), read
each FFI attribute once, and cache per task what tiling cannot change (a block's arithmetic and
its buffer accesses in terms of the block's own iteration variables: :mod:`ms_meta.feature.blocks`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import chain

import numpy as np
from tvm.s_tir.stmt import SBlockRealize

from ms_meta.feature.blocks import (
    _ACCESS_STATIC_COLUMNS,
    _BLOCK_COLUMNS,
    _F,
    _LOOP_KIND_COLUMNS,
    POW2_FACTOR_CAP,
    BlockCache,
    _array_size,
    _BlockStatic,
    _BufferStore,
    _For,
    _IfThenElse,
    _int_value,
    _IntImm,
    _items,
    _linear_form,
    _map_size,
    _SeqStmt,
)
from ms_meta.feature.schema import (
    EDGE_ACCESS,
    EDGE_DATAFLOW,
    EDGE_NEST,
    EDGE_SEQ,
    NODE_BLOCK,
    NODE_LOOP,
    NODE_READ,
    NODE_TASK,
    NODE_WRITE,
    NUM_EDGE_FEATURES,
    NUM_NODE_FEATURES,
    LoopGraph,
)

__all__ = ["BlockCache", "EncodedBatch", "block_summary", "encode_primfunc", "encode_primfuncs"]


class _GraphBuilder:
    """Collects raw facts during the walk; features and edges are built in bulk at the end."""

    def __init__(self) -> None:
        self.node_type: list[int] = []
        self.depth: list[int] = []
        # structural edges (nest, seq, dataflow) as flat lists
        self.src: list[int] = []
        self.dst: list[int] = []
        self.etype: list[int] = []
        # loops: (node, extent, kind, auto_unroll, unroll_explicit, other_ann, outer_trips, tag,
        # inner_trips)
        self.loops: list[tuple] = []
        self.innermost: list[int] = []
        self.innermost_trips: list[int] = []  # outer_trips of each innermost loop
        # blocks: (node, trips, static, name)
        self.blocks: list[tuple] = []
        # access groups, one per block:
        # (block node, first access node, loop nodes, loop extents, strides, static)
        self.access_groups: list[tuple] = []
        self.last_writer: dict[str, int] = {}
        self.layout_key: tuple = ()  # names and shapes of the buffers the function allocates
        # depth of each enclosing loop, by the handle of its variable (kept by the walk)
        self.loop_position: dict[int, int] = {}

    def start_graph(self) -> int:
        """Begin the next candidate of a batch: its task node, and fresh per-program state."""
        self.layout_key = ()
        self.last_writer = {}
        self.loop_position = {}
        return self.add_node(NODE_TASK, 0)

    def mark(self) -> tuple[int, ...]:
        return (len(self.node_type), len(self.src), len(self.loops), len(self.innermost),
                len(self.blocks), len(self.access_groups))  # fmt: skip

    def rollback(self, mark: tuple[int, ...]) -> None:
        """Forget a candidate whose walk failed half-way."""
        nodes, edges, loops, innermost, blocks, groups = mark
        del self.node_type[nodes:], self.depth[nodes:]
        del self.src[edges:], self.dst[edges:], self.etype[edges:]
        del self.loops[loops:], self.innermost[innermost:], self.innermost_trips[innermost:]
        del self.blocks[blocks:], self.access_groups[groups:]

    def add_node(self, node_type: int, depth: int) -> int:
        self.node_type.append(node_type)
        self.depth.append(depth)
        return len(self.node_type) - 1

    def edge(self, src: int, dst: int, edge_type: int) -> None:
        self.src.append(src)
        self.dst.append(dst)
        self.etype.append(edge_type)


# The loops enclosing the statement being visited, outermost first, as tuples
# (node, key, extent, trips): the loop's graph node, the handle of its variable, its extent, and
# the product of its extent and those of the loops enclosing it. Tuples rather than objects,
# and the builder's lists appended to directly: the walk runs once per loop of every candidate
# the search scores, and it is Python-bound.
_NODE, _KEY, _EXTENT, _TRIPS = range(4)


def _visit(stmt, parent: int, loops: list[tuple], g: _GraphBuilder, cache: BlockCache) -> int:
    """Add ``stmt`` under ``parent``; return the first node it created (or -1)."""
    kind = type(stmt)
    if kind is _For:
        return _visit_loop(stmt, parent, loops, g, cache)
    if kind is _SeqStmt:
        first, previous = -1, -1
        for child in _items(stmt.seq):
            node = _visit(child, parent, loops, g, cache)
            if node < 0:
                continue
            if previous >= 0:
                g.edge(previous, node, EDGE_SEQ)
            else:
                first = node
            previous = node
        return first
    if kind is SBlockRealize:
        return _visit_block(stmt, parent, loops, g, cache)
    if kind is _IfThenElse:
        first = _visit(stmt.then_case, parent, loops, g, cache)
        if stmt.else_case is not None:
            other = _visit(stmt.else_case, parent, loops, g, cache)
            first = first if first >= 0 else other
        return first
    body = getattr(stmt, "body", None)  # AttrStmt, Allocate and other wrappers
    if body is not None and kind is not _BufferStore:
        return _visit(body, parent, loops, g, cache)
    return -1


_THREAD_TAG_CODES = {"blockIdx": 1, "threadIdx": 2, "vthread": 3}


def _visit_loop(loop, parent: int, loops: list[tuple], g: _GraphBuilder, cache) -> int:
    extent = loop.extent
    extent = (extent.value or 1) if type(extent) is _IntImm else 1
    node_type = g.node_type
    node = len(node_type)
    node_type.append(NODE_LOOP)
    g.depth.append(len(loops))
    g.src.append(parent)
    g.dst.append(node)
    g.etype.append(EDGE_NEST)
    loop_kind = int(loop.kind)
    tag = 0
    if loop_kind == 4 and loop.thread_binding is not None:
        text = str(loop.thread_binding.thread_tag)
        tag = next((code for p, code in _THREAD_TAG_CODES.items() if text.startswith(p)), 0)
    auto_unroll = explicit = other = 0
    annotations = loop.annotations
    if _map_size(annotations):
        for key, value in annotations.items():
            if key == "pragma_auto_unroll_max_step":
                auto_unroll = int(value)
            elif key == "pragma_unroll_explicit":
                explicit = int(value)
            else:
                other += 1
    outer_trips = extent * loops[-1][_TRIPS] if loops else extent
    index = len(g.loops)
    g.loops.append(None)  # filled in below, once the loops inside are known
    first_innermost = len(g.innermost)
    key = hash(loop.loop_var)
    g.loop_position[key] = len(loops)
    loops.append((node, key, extent, outer_trips))
    body = loop.body
    if type(body) is _For:  # the common case, and its first node is a loop: not innermost
        _visit_loop(body, node, loops, g, cache)
    else:
        body_first = _visit(body, node, loops, g, cache)
        if body_first < 0 or node_type[body_first] != NODE_LOOP:
            g.innermost.append(node)
            g.innermost_trips.append(outer_trips)
    # iterations of this loop and the loops inside it, along the deepest-running path: for
    # the innermost tile loops of a GEMM, the size of the register tile
    deepest = max(g.innermost_trips[first_innermost:], default=outer_trips)
    inner_trips = deepest * extent // outer_trips
    g.loops[index] = (
        node, extent, loop_kind, auto_unroll, explicit, other, outer_trips, tag, inner_trips
    )  # fmt: skip
    loops.pop()
    del g.loop_position[key]
    return node


def _add_allocations(block, g: _GraphBuilder) -> None:
    """Extend the candidate's layout key with the buffers a block allocates (name and shape):
    which intermediate buffers exist, and how big, depends on the schedule's decisions."""
    allocs = block.alloc_buffers
    if _array_size(allocs):
        g.layout_key += tuple(
            (str(a.name), *(_int_value(d) or -1 for d in _items(a.shape))) for a in _items(allocs)
        )


def _visit_block(realize, parent: int, loops: list[tuple], g: _GraphBuilder, cache) -> int:
    block = realize.block
    iter_vars = block.iter_vars
    num_iters = _array_size(iter_vars)
    if not loops and num_iters == 0 and _array_size(block.reads) == 0:
        # The root block only groups the function body; it allocates the intermediate buffers.
        _add_allocations(block, g)
        return _visit(block.body, parent, loops, g, cache)
    name = str(block.name_hint)
    _add_allocations(block, g)
    if "_rf" in name:
        # An rfactor block's accesses depend on which split loop was factored out (and with
        # which factor), which neither its name nor the buffer shapes tell: it is cached by
        # its structure instead (a hash costs ~7 us, the analysis ~120 us).
        static = cache.get_by_structure(name, block, iter_vars)
    else:
        static = cache.get(name, block, iter_vars, g.layout_key, num_iters)
    depth = len(loops)
    node = g.add_node(NODE_BLOCK, depth)
    g.edge(parent, node, EDGE_NEST)
    g.blocks.append((node, loops[-1][_TRIPS] if loops else 1, static, name))
    accesses = static.accesses
    if accesses:
        if loops:
            # binding[l, j]: how far block iter var j moves per step of enclosing loop l.
            position = g.loop_position
            binding = np.zeros((depth, num_iters), np.float64)
            for j, value in enumerate(_items(realize.iter_values)):
                coeffs: dict[int, float] = {}
                _linear_form(value, 1.0, coeffs)
                for key, coef in coeffs.items():
                    i = position.get(key)
                    if i is not None:
                        binding[i, j] = coef
            strides = binding @ static.weights  # [loops, accesses], in elements
        else:
            strides = np.zeros((0, len(accesses)))
        first = len(g.node_type)
        for access in accesses:
            access_node = g.add_node(NODE_WRITE if access.is_write else NODE_READ, depth)
            if access.is_write:
                g.last_writer[access.buffer_name] = access_node
            else:
                writer = g.last_writer.get(access.buffer_name)
                if writer is not None:
                    g.edge(writer, access_node, EDGE_DATAFLOW)
        g.access_groups.append((node, first, tuple(loops), strides, static))
    if static.has_nested_stmts:
        _visit(block.body, node, loops, g, cache)
    return node


def _log2p_array(values: np.ndarray) -> np.ndarray:
    return np.log2(1.0 + np.abs(values))


def _pow2_factor(extents: np.ndarray) -> np.ndarray:
    """log2 of the largest power of two dividing each extent, capped at 6 and scaled to [0, 1];
    0 for an extent that is not a positive integer."""
    ints = extents.astype(np.int64)
    ints = np.where((ints > 0) & (ints == extents), ints, 0)
    lowest_bit = ints & -ints
    factor = np.log2(np.maximum(lowest_bit, 1)).astype(np.float64)
    return np.minimum(factor, POW2_FACTOR_CAP) / POW2_FACTOR_CAP


def _loop_features(x: np.ndarray, g: _GraphBuilder) -> None:
    if not g.loops:
        return
    # (fromiter over the flattened tuples is several times faster than asarray of tuples)
    info = np.fromiter(chain.from_iterable(g.loops), np.float64, 9 * len(g.loops)).reshape(-1, 9)
    nodes = info[:, 0].astype(np.int64)
    x[nodes, _F["loop_log_extent"]] = _log2p_array(info[:, 1])
    x[nodes, _F["loop_pow2_factor"]] = _pow2_factor(info[:, 1])
    kinds = np.minimum(info[:, 2].astype(np.int64), 4)
    x[nodes, np.asarray(_LOOP_KIND_COLUMNS)[kinds]] = 1.0
    x[nodes, _F["loop_log_auto_unroll"]] = _log2p_array(info[:, 3])
    x[nodes, _F["loop_unroll_explicit"]] = info[:, 4]
    x[nodes, _F["loop_other_annotations"]] = info[:, 5]
    x[nodes, _F["loop_log_outer_trips"]] = _log2p_array(info[:, 6])
    x[nodes, _F["loop_log_inner_trips"]] = _log2p_array(info[:, 8])
    tags = info[:, 7].astype(np.int64)
    for code, prefix in enumerate(("blockIdx", "threadIdx", "vthread"), start=1):
        x[nodes[tags == code], _F[f"loop_thread_{prefix}"]] = 1.0
    x[np.asarray(g.innermost, np.int64), _F["loop_is_innermost"]] = 1.0


def _block_features(x: np.ndarray, g: _GraphBuilder) -> None:
    for node, trips, static, _ in g.blocks:
        row = x[node]
        row[_BLOCK_COLUMNS] = static.block_row
        log_trips = math.log2(1.0 + trips)
        row[_F["block_log_trips"]] = log_trips
        row[_F["block_log_total_flops"]] = math.log2(1.0 + trips * static.float_ops)


def _sum_inner_loops(dst: np.ndarray, rel: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For each (loop, access) entry: the sum of ``values`` over the entries of the same access
    at this loop and every loop inside it (``rel`` counts loops from the innermost out)."""
    order = np.lexsort((rel, dst))
    ordered = values[order]
    running = np.cumsum(ordered)
    dst_sorted = dst[order]
    starts = np.ones(len(order), bool)
    starts[1:] = dst_sorted[1:] != dst_sorted[:-1]
    before_segment = (running - ordered)[starts][np.cumsum(starts) - 1]
    out = np.empty_like(running)
    out[order] = running - before_segment
    return out


def _access_features(x: np.ndarray, g: _GraphBuilder, chunks: list) -> None:
    """Access-node features and loop->access edges for all blocks at once."""
    if not g.access_groups:
        return
    groups = g.access_groups
    statics = [group[4] for group in groups]
    counts = np.fromiter((len(st.accesses) for st in statics), np.int64, len(groups))
    depths = np.fromiter((len(group[2]) for group in groups), np.int64, len(groups))
    firsts = np.fromiter((group[1] for group in groups), np.int64, len(groups))
    block_nodes = np.fromiter((group[0] for group in groups), np.int64, len(groups))
    # access nodes: each block's accesses are consecutive nodes from its first one
    num_access = int(counts.sum())
    group_start = np.cumsum(counts) - counts
    local = np.arange(num_access) - np.repeat(group_start, counts)
    access_nodes = np.repeat(firsts, counts) + local
    x[access_nodes[:, None], _ACCESS_STATIC_COLUMNS] = np.concatenate(
        [s.access_rows for s in statics]
    )
    chunks.append((np.repeat(block_nodes, counts), access_nodes, EDGE_NEST))
    # (loop, access) entries run loop-major within a block: for loop i (outer to inner), every
    # access of the block; rel counts loops from the innermost out.
    enclosing = [loop for group in groups for loop in group[2]]
    if not enclosing:
        return
    loop_info = np.fromiter(chain.from_iterable(enclosing), np.int64, 4 * len(enclosing))
    loop_info = loop_info.reshape(-1, 4)[:, [_NODE, _EXTENT]]
    per_loop_count = np.repeat(counts, depths)
    src = np.repeat(loop_info[:, 0], per_loop_count)
    ext = np.repeat(loop_info[:, 1].astype(np.float64), per_loop_count)
    loop_start = np.cumsum(depths) - depths
    loop_in_block = np.arange(len(loop_info)) - np.repeat(loop_start, depths)
    rel = np.repeat(np.repeat(depths, depths) - 1 - loop_in_block, per_loop_count)
    entries = depths * counts
    entry_local = np.arange(int(entries.sum())) - np.repeat(np.cumsum(entries) - entries, entries)
    dst = np.repeat(firsts, entries) + entry_local % np.repeat(counts, entries)
    stride = np.concatenate([group[3].reshape(-1) for group in groups])
    abs_stride = np.abs(stride)
    log_ext = np.log2(np.maximum(ext, 1.0))
    moving = stride != 0
    n = x.shape[0]
    touched_log = np.bincount(dst, weights=log_ext * moving, minlength=n)[access_nodes]
    reuse_log = np.bincount(dst, weights=log_ext * ~moving, minlength=n)[access_nodes]
    dtype_bytes = np.concatenate([s.dtype_bytes for s in statics])
    buffer_bytes = np.concatenate([s.buffer_bytes for s in statics])
    touched_bytes = np.minimum(np.exp2(touched_log) * dtype_bytes, buffer_bytes)
    x[access_nodes, _F["access_log_touched_bytes"]] = np.log2(1.0 + touched_bytes)
    x[access_nodes, _F["access_log_reuse"]] = np.log2(1.0 + np.exp2(reuse_log))
    # innermost non-unit loop of each access: its last entry with extent > 1
    sel = np.nonzero(ext > 1)[0]
    if sel.size:
        rev = sel[::-1]
        nodes, first_in_rev = np.unique(dst[rev], return_index=True)
        inner = stride[rev[first_in_rev]]
        x[nodes, _F["access_log_innermost_stride"]] = np.log2(1.0 + np.abs(inner))
        x[nodes, _F["access_contiguous"]] = np.abs(inner) == 1
        x[nodes, _F["access_reused"]] = inner == 0
    attr = np.empty((src.shape[0], NUM_EDGE_FEATURES), np.float32)
    attr[:, 0] = np.log2(1.0 + abs_stride)
    attr[:, 1] = ~moving
    attr[:, 2] = abs_stride == 1
    attr[:, 3] = np.log2(1.0 + ext)
    attr[:, 4] = rel.astype(np.float32) / 8.0
    # Footprint of each access inside each loop (that loop and all inner ones): the log
    # extents of the loops it moves with, summed from the innermost loop outwards; whether a
    # tile fits a cache level is what separates good tilings from bad.
    moving_below = _sum_inner_loops(dst, rel, log_ext * moving)
    still_below = _sum_inner_loops(dst, rel, log_ext * ~moving)
    node_dtype_bytes = np.zeros(n)
    node_dtype_bytes[access_nodes] = dtype_bytes
    node_buffer_bytes = np.zeros(n)
    node_buffer_bytes[access_nodes] = buffer_bytes
    footprint = np.minimum(np.exp2(moving_below) * node_dtype_bytes[dst], node_buffer_bytes[dst])
    attr[:, 5] = np.log2(1.0 + footprint)
    attr[:, 6] = np.log2(1.0 + np.exp2(still_below))
    chunks.append((src, dst, EDGE_ACCESS, attr))


@dataclass
class EncodedBatch:
    """Graphs of many candidates as one disconnected graph (numpy, PyG layout).

    Shapes: ``x [N, F_node]``, ``node_type [N]``, ``edge_index [2, E]``, ``edge_type [E]``,
    ``edge_attr [E, F_edge]``, ``batch [N]`` (graph of each node), ``task [B, F_task]``;
    ``failed [B]`` marks candidates that could not be encoded (a lone task node each).
    """

    x: np.ndarray
    node_type: np.ndarray
    edge_index: np.ndarray
    edge_type: np.ndarray
    edge_attr: np.ndarray
    batch: np.ndarray
    task: np.ndarray
    failed: np.ndarray

    @property
    def num_graphs(self) -> int:
        return int(self.task.shape[0])

    def graphs(self) -> list[LoopGraph]:
        """Split into one :class:`LoopGraph` per candidate."""
        n = self.num_graphs
        node_counts = np.bincount(self.batch, minlength=n)
        node_start = np.zeros(n + 1, np.int64)
        np.cumsum(node_counts, out=node_start[1:])
        edge_graph = self.batch[self.edge_index[0]] if self.edge_index.size else np.zeros(0, int)
        order = np.argsort(edge_graph, kind="stable")
        edge_counts = np.bincount(edge_graph, minlength=n)
        edge_start = np.zeros(n + 1, np.int64)
        np.cumsum(edge_counts, out=edge_start[1:])
        edge_index = self.edge_index[:, order]
        edge_type = self.edge_type[order]
        edge_attr = self.edge_attr[order]
        out = []
        for i in range(n):
            a, b = node_start[i], node_start[i + 1]
            c, d = edge_start[i], edge_start[i + 1]
            out.append(
                LoopGraph(
                    node_type=self.node_type[a:b],
                    x=self.x[a:b],
                    edge_index=edge_index[:, c:d] - a,
                    edge_type=edge_type[c:d],
                    edge_attr=edge_attr[c:d],
                    task=self.task[i],
                )
            )
        return out


def encode_primfuncs(funcs, task_features: np.ndarray, cache: BlockCache | None = None,
                     on_error=None) -> EncodedBatch:  # fmt: skip
    """Encode many scheduled PrimFuncs of one task in one pass.

    The walk is per candidate; features and edges are then built for the whole batch at once,
    which is what makes scoring thousands of candidates per second possible.

    Parameters
    ----------
    funcs : sequence of tvm.tirx.PrimFunc
        Scheduled functions (``candidate.sch.mod["main"]``).
    task_features : np.ndarray
        ``[NUM_TASK_FEATURES]`` features of the task (see :mod:`ms_meta.feature.task`).
    cache : BlockCache, optional
        Per-task cache of block facts; pass the same one for all candidates of a task.
    on_error : callable, optional
        ``on_error(index, exception)`` for a candidate that cannot be encoded; it then gets a
        neutral graph (its task node alone). Without it, the exception propagates.
    """
    cache = cache or BlockCache()
    g = _GraphBuilder()
    failed = np.zeros(len(funcs), bool)
    for i, func in enumerate(funcs):
        mark = g.mark()
        root = g.start_graph()
        try:
            if func is None:
                raise ValueError("the candidate's module has no 'main' PrimFunc")
            _visit(func.body, root, [], g, cache)
        except Exception as err:
            if on_error is None:
                raise
            g.rollback(mark)
            g.start_graph()
            failed[i] = True
            on_error(i, err)
    n = len(g.node_type)
    node_type = np.asarray(g.node_type, np.int64)
    x = np.zeros((n, NUM_NODE_FEATURES), np.float32)
    x[np.arange(n), node_type] = 1.0  # type one-hot columns come first in the schema
    x[:, _F["depth"]] = np.asarray(g.depth, np.float32) / 8.0
    _loop_features(x, g)
    _block_features(x, g)
    chunks: list = [(np.asarray(g.src, np.int64), np.asarray(g.dst, np.int64), g.etype)]
    _access_features(x, g, chunks)
    srcs, dsts, types, attrs = [], [], [], []
    for chunk in chunks:
        src, dst, etype = chunk[0], chunk[1], chunk[2]
        srcs.append(src)
        dsts.append(dst)
        types.append(np.asarray(etype, np.int64) if isinstance(etype, list)
                     else np.full(len(src), etype, np.int64))  # fmt: skip
        attrs.append(chunk[3] if len(chunk) > 3 else np.zeros((len(src), NUM_EDGE_FEATURES),
                                                               np.float32))  # fmt: skip
    is_root = node_type == NODE_TASK
    batch = np.cumsum(is_root) - 1
    task = np.repeat(np.asarray(task_features, np.float32)[None, :], len(funcs), axis=0)
    return EncodedBatch(
        x=x,
        node_type=node_type,
        edge_index=np.stack([np.concatenate(srcs), np.concatenate(dsts)]).astype(np.int64),
        edge_type=np.concatenate(types),
        edge_attr=np.concatenate(attrs).astype(np.float32, copy=False),
        batch=batch.astype(np.int64),
        task=task,
        failed=failed,
    )


def encode_primfunc(func, task_features: np.ndarray, cache: BlockCache | None = None) -> LoopGraph:
    """Encode one scheduled PrimFunc as a :class:`LoopGraph` (see :func:`encode_primfuncs`)."""
    return encode_primfuncs([func], task_features, cache).graphs()[0]


def block_summary(func, cache: BlockCache | None = None) -> list[tuple[str, int, _BlockStatic]]:
    """(name, trips, static facts) of every block of ``func``, in program order."""
    g = _GraphBuilder()
    _visit(func.body, g.start_graph(), [], g, cache or BlockCache())
    return [(name, trips, static) for _, trips, static, name in g.blocks]
