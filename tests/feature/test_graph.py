"""The loop-nest graph of known schedules, and encoding of every workload kind."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm.s_tir import Schedule

from ms_meta.feature.graph import BlockCache, encode_primfunc
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
    NODE_WRITE,
    NUM_TASK_FEATURES,
    LoopGraph,
)
from ms_meta.workloads import OPERATORS, resolve_one

F = NODE_FEATURE_INDEX
NO_TASK = np.zeros(NUM_TASK_FEATURES, np.float32)


def _loops(graph: LoopGraph):
    return np.nonzero(graph.node_type == NODE_LOOP)[0]


def _extents(graph: LoopGraph) -> list[int]:
    return [round(2 ** graph.x[i, F["loop_log_extent"]] - 1) for i in _loops(graph)]


@pytest.fixture()
def matmul_schedule():
    """dense 64x64x64 (C[i, j] += A[i, k] * B[j, k]) split, reordered, parallel, vectorized."""
    sch = Schedule(resolve_one("dense:64,64,64").build())
    block = sch.get_sblock("T_dense")
    i, j, k = sch.get_loops(block)
    i0, i1 = sch.split(i, [4, 16])
    j0, j1 = sch.split(j, [None, 8])
    sch.reorder(i0, j0, k, i1, j1)
    sch.parallel(i0)
    sch.vectorize(j1)
    return sch


def test_untiled_matmul_nodes_and_edges():
    graph = encode_primfunc(resolve_one("dense:64,64,64").build()["main"], NO_TASK)
    counts = np.bincount(graph.node_type, minlength=5)
    assert counts[NODE_TASK] == 1
    assert counts[NODE_LOOP] == 3
    assert counts[NODE_BLOCK] == 1
    # an unscheduled reduction block (with T.init) declares reads of A and B, writes C
    assert counts[NODE_READ] == 2 and counts[NODE_WRITE] == 1
    assert _extents(graph) == [64, 64, 64]
    # 3 loops x 3 accesses access edges, each carrying a stride
    assert int((graph.edge_type == EDGE_ACCESS).sum()) == 9


def test_split_extents_kinds_and_strides(matmul_schedule):
    graph = encode_primfunc(matmul_schedule.mod["main"], NO_TASK)
    loops = _loops(graph)
    assert _extents(graph) == [4, 8, 64, 16, 8]
    kinds = graph.x[loops][:, [F["loop_kind_serial"], F["loop_kind_parallel"],
                               F["loop_kind_vectorized"]]]  # fmt: skip
    assert kinds.tolist() == [[0, 1, 0], [1, 0, 0], [1, 0, 0], [1, 0, 0], [0, 0, 1]]
    assert graph.x[loops[-1], F["loop_is_innermost"]] == 1.0
    assert graph.x[loops[:-1], F["loop_is_innermost"]].sum() == 0.0
    # A[i, k]: stride 64 w.r.t. i1 (row-major 64x64), 1 w.r.t. k, 0 w.r.t. j1 (reused)
    access = graph.edge_type == EDGE_ACCESS
    src, dst = graph.edge_index[:, access]
    log_stride = graph.edge_attr[access, 0]
    reads = np.nonzero(graph.node_type == NODE_READ)[0]
    strides = {}
    for s, d, v in zip(src, dst, log_stride, strict=True):
        strides[(int(s), int(d))] = round(2**v - 1)
    loop_i1, loop_j1, loop_k = loops[3], loops[4], loops[2]
    a_node = [r for r in reads if strides[(loop_k, r)] == 1 and strides[(loop_i1, r)] == 64]
    assert len(a_node) == 1
    assert strides[(loop_j1, a_node[0])] == 0
    assert graph.x[a_node[0], F["access_reused"]] == 1.0  # innermost (vectorized j1) stride 0

    # Footprint of A[i, k] (float32) inside each loop: j1 touches 1 element (stride 0), i1 x j1
    # 16, k x i1 x j1 16x64; reuse below j1 is its extent 8, below k 8 too (i1 and k move A).
    footprint = {
        (int(s), int(d)): v
        for s, d, v in zip(
            src,
            dst,
            graph.edge_attr[access, EDGE_FEATURE_INDEX["log_footprint_bytes"]],
            strict=True,
        )
    }
    reuse = {
        (int(s), int(d)): v
        for s, d, v in zip(
            src, dst, graph.edge_attr[access, EDGE_FEATURE_INDEX["log_reuse_below"]], strict=True
        )
    }
    a = a_node[0]
    assert [round(2 ** footprint[(loop, a)] - 1) for loop in (loop_j1, loop_i1, loop_k)] == [
        4,
        16 * 4,
        16 * 64 * 4,
    ]
    assert round(2 ** reuse[(loop_j1, a)] - 1) == 8 and round(2 ** reuse[(loop_k, a)] - 1) == 8


def test_power_of_two_factor_of_each_loop_extent():
    """A 12-wide vectorized loop has a log extent between those of 8 and 16; the power of two
    dividing it (4, where 8 and 16 give 8 and 16) is what says it leaves a vector register
    half filled."""
    sch = Schedule(resolve_one("dense:48,48,48").build())
    _, j, _ = sch.get_loops(sch.get_sblock("T_dense"))
    _, j1 = sch.split(j, [None, 12])
    sch.vectorize(j1)
    graph = encode_primfunc(sch.mod["main"], NO_TASK)
    loops = _loops(graph)
    assert _extents(graph) == [48, 4, 12, 48]
    factors = graph.x[loops, F["loop_pow2_factor"]] * 6  # log2 of the factor, cap 6
    assert factors.round(6).tolist() == [4.0, 2.0, 2.0, 4.0]
    assert graph.x[loops[2], F["loop_kind_vectorized"]] == 1.0


def test_inner_trips_of_each_loop(matmul_schedule):
    """Loops i0 j0 k i1 j1 (4, 8, 64, 16, 8): each loop's iterations together with the loops
    inside it; i1 x j1 = 128 is the register tile."""
    graph = encode_primfunc(matmul_schedule.mod["main"], NO_TASK)
    loops = _loops(graph)
    inner = [round(2 ** graph.x[i, F["loop_log_inner_trips"]] - 1) for i in loops]
    assert inner == [4 * 8 * 64 * 16 * 8, 8 * 64 * 16 * 8, 64 * 16 * 8, 16 * 8, 8]


def test_edge_types_and_sequence(sample_candidates):
    _, candidates = sample_candidates("conv2d_bias_relu:1,16,14,14,16,3,3,1,1", count=4)
    for cand in candidates:
        graph = encode_primfunc(cand.sch.mod["main"], NO_TASK)
        types = set(graph.edge_type.tolist())
        assert {EDGE_NEST, EDGE_ACCESS, EDGE_DATAFLOW} <= types
        assert EDGE_SEQ in types  # several blocks follow one another
        assert graph.edge_index.max() < graph.num_nodes
        assert np.isfinite(graph.x).all() and np.isfinite(graph.edge_attr).all()


@pytest.mark.parametrize(
    "spec",
    [
        "conv2d_nchw:1,16,14,14,32,3,3,1,1",
        "conv2d_nchw:1,16,14,14,32,1,1,2,0",
        "conv2d_nchw:1,3,32,32,16,7,7,2,3",
        "conv2d_nhwc:1,14,14,16,32,3,3,1,1",
        "depthwise_conv2d:1,32,14,14,3,3,1,1",
        "group_conv2d_nchw:1,16,14,14,32,3,3,1,1,4",
        "conv2d_nchwc:1,16,14,14,32,3,3,1,1",
        "depthwise_conv2d_nchwc:1,32,14,14,3,3,1,1",
        "conv2d_bias_relu:1,16,14,14,16,3,3,1,1",
        "dense:32,64,48",
        "batch_matmul:4,32,32,16",
        "matmul_bias:32,64,48",
        "batch_matmul_nn:4,32,32,16",
        "softmax:4,32,32",
        "layer_norm:32,64",
        "max_pool2d:1,16,28,28,3,2,1",
        "avg_pool2d:1,16,28,28,2,2,0",
        "global_avg_pool:1,64,7,7",
    ],
)
def test_every_workload_kind_encodes(sample_candidates, spec):
    _, candidates = sample_candidates(spec, count=4)
    cache = BlockCache()
    for cand in candidates:
        graph = encode_primfunc(cand.sch.mod["main"], NO_TASK, cache)
        assert graph.num_nodes > 3
        assert (graph.node_type == NODE_BLOCK).any()
        unpacked = LoopGraph.unpack(graph.pack())
        assert np.array_equal(unpacked.x, graph.x)
        assert np.array_equal(unpacked.edge_index, graph.edge_index)
        assert np.array_equal(unpacked.edge_attr, graph.edge_attr)


def test_operator_list_is_covered():
    # the parametrized list above names every operator of the library
    import inspect

    source = inspect.getsource(test_every_workload_kind_encodes)
    assert all(f'"{op}:' in source for op in OPERATORS)


def test_thread_bound_loops_on_cuda_schedule():
    sch = Schedule(resolve_one("dense:64,64,64").build())
    block = sch.get_sblock("T_dense")
    i, j, _ = sch.get_loops(block)
    sch.bind(i, "blockIdx.x")
    sch.bind(j, "threadIdx.x")
    graph = encode_primfunc(sch.mod["main"], NO_TASK)
    loops = _loops(graph)
    assert graph.x[loops[0], F["loop_kind_thread_binding"]] == 1.0
    assert graph.x[loops[0], F["loop_thread_blockIdx"]] == 1.0
    assert graph.x[loops[1], F["loop_thread_threadIdx"]] == 1.0


def test_unroll_annotation_is_a_feature(sample_candidates):
    _, candidates = sample_candidates("dense:64,64,64", count=16)
    unroll = [
        encode_primfunc(c.sch.mod["main"], NO_TASK).x[:, F["loop_log_auto_unroll"]].max()
        for c in candidates
    ]
    assert max(unroll) > 0  # MetaSchedule samples unroll steps in {0, 16, 64, 512}


def test_neutral_graph_and_version_check():
    graph = LoopGraph.neutral()
    assert graph.num_nodes == 1 and graph.num_edges == 0
    packed = graph.pack()
    packed[0, 2] = 999
    with pytest.raises(ValueError, match="feature version"):
        LoopGraph.unpack(packed)


def test_tvm_ir_roundtrip_gives_same_graph(matmul_schedule):
    func = matmul_schedule.mod["main"]
    again = tvm.ir.load_json(tvm.ir.save_json(func))
    a = encode_primfunc(func, NO_TASK)
    b = encode_primfunc(again, NO_TASK)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.edge_attr, b.edge_attr)


@pytest.mark.parametrize(
    "spec",
    ["dense:64,96,48", "softmax:4,32,64", "layer_norm:32,96", "batch_matmul:4,32,48,16",
     "conv2d_nchw:1,16,14,14,32,3,3,1,1"],
)  # fmt: skip
def test_shared_block_cache_gives_the_same_graphs_as_fresh_encoding(sample_candidates, spec):
    """The per-task cache must never change a graph: tiling reshapes cache buffers."""
    _, candidates = sample_candidates(spec, count=24, seed=5)
    shared = BlockCache()
    for cand in candidates:
        func = cand.sch.mod["main"]
        a = encode_primfunc(func, NO_TASK, shared)
        b = encode_primfunc(func, NO_TASK, BlockCache())
        assert np.array_equal(a.x, b.x)
        assert np.array_equal(a.edge_index, b.edge_index)
        assert np.array_equal(a.edge_attr, b.edge_attr)
