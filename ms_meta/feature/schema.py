"""The loop-nest graph: node, edge and task feature layout, shared by encoder and model.

This module has no TVM import: the learnable core depends only on these constants and on
:class:`LoopGraph`, a plain-numpy graph in PyTorch Geometric's layout.

A graph has one node per loop, block and buffer access, plus one ``task`` root node:

* ``nest`` edges run from a parent (task root, loop or block) to what it directly contains;
* ``seq`` edges join statements that follow each other in the same body;
* ``access`` edges run from every enclosing loop to each buffer access of a block, and carry
  the access's stride with respect to that loop (the reuse/locality information);
* ``dataflow`` edges run from a block's write access to later reads of the same buffer.

The model adds the reverse of every edge type itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Bump whenever the meaning or order of any feature changes: weights and cached data sets
# record the version they were built with and are rejected on mismatch.
FEATURE_VERSION = 4

NODE_TYPES = ("task", "loop", "block", "read", "write")
NODE_TASK, NODE_LOOP, NODE_BLOCK, NODE_READ, NODE_WRITE = range(len(NODE_TYPES))

EDGE_TYPES = ("nest", "seq", "access", "dataflow")
EDGE_NEST, EDGE_SEQ, EDGE_ACCESS, EDGE_DATAFLOW = range(len(EDGE_TYPES))

LOOP_KINDS = ("serial", "parallel", "vectorized", "unrolled", "thread_binding")
THREAD_TAGS = ("blockIdx", "threadIdx", "vthread")
BUFFER_SCOPES = ("global", "local", "shared", "other")

OPERATOR_KINDS = (
    "conv2d_nchw",
    "conv2d_nhwc",
    "depthwise_conv2d",
    "conv2d_fused",
    "dense",
    "batch_matmul",
    "softmax",
    "layer_norm",
    "pool",
    "elementwise",
    "other",
)

# Every node has every column; columns that do not apply to its type are zero. Log-scaled
# columns hold log2(1 + value).
NODE_FEATURES = (
    *(f"type_{t}" for t in NODE_TYPES),
    "depth",  # number of enclosing loops / 8
    # loops
    "loop_log_extent",
    # log2 of the largest power of two dividing the extent, / 6 (capped): whether a vectorized
    # loop fills whole vector registers (12 float32 lanes under AVX2 leave half a register, and
    # such dense schedules ran 10x slower than their neighbours; a log extent cannot tell).
    "loop_pow2_factor",
    *(f"loop_kind_{k}" for k in LOOP_KINDS),
    *(f"loop_thread_{t}" for t in THREAD_TAGS),
    "loop_log_auto_unroll",  # pragma_auto_unroll_max_step
    "loop_unroll_explicit",  # pragma_unroll_explicit
    "loop_other_annotations",
    "loop_is_innermost",
    "loop_log_outer_trips",  # product of the extents of the enclosing loops, this one included
    # product of the extents of this loop and those inside it (the deepest-running path): for
    # the innermost tile loops of a GEMM, the register tile, whose size decides spills
    "loop_log_inner_trips",
    # blocks
    "block_log_trips",  # times the block body runs
    "block_log_float_add",  # arithmetic per body execution, by kind
    "block_log_float_mul",
    "block_log_float_div",
    "block_log_float_math",  # exp, sqrt, max, min, select and other calls
    "block_log_int_ops",
    "block_is_reduction",
    "block_num_spatial_iters",
    "block_num_reduce_iters",
    "block_log_total_flops",  # trips x float ops
    # buffer accesses
    "access_log_buffer_bytes",
    "access_dtype_bytes",
    *(f"access_scope_{s}" for s in BUFFER_SCOPES),
    "access_ndim",
    "access_log_innermost_stride",  # stride w.r.t. the innermost non-unit loop, in elements
    "access_contiguous",  # that stride is 1
    "access_reused",  # that stride is 0
    "access_log_touched_bytes",  # bytes covered by the loops with a non-zero stride
    "access_log_reuse",  # product of extents of the loops the access does not depend on
    "access_is_rewritten_layout",
)

EDGE_FEATURES = (
    "log_abs_stride",  # log2(1 + |stride in elements|)
    "stride_zero",
    "stride_one",
    "loop_log_extent",
    "loops_below",  # how many loops lie between this loop and the access / 8
    "log_footprint_bytes",  # bytes the access touches inside this loop (this and inner loops)
    "log_reuse_below",  # product of extents of this and inner loops the access does not move with
)

TASK_FEATURES = (
    *(f"op_{k}" for k in OPERATOR_KINDS),
    "log_flops",
    "log_input_bytes",
    "log_output_bytes",
    "num_inputs",
    *(f"out_dim{i}" for i in range(6)),  # log2 of each output dimension, last-aligned
    *(f"in0_dim{i}" for i in range(6)),
    *(f"in1_dim{i}" for i in range(6)),
    "num_blocks",
    "log_spatial_extent",
    "log_reduce_extent",
)

NUM_NODE_FEATURES = len(NODE_FEATURES)
NUM_EDGE_FEATURES = len(EDGE_FEATURES)
NUM_TASK_FEATURES = len(TASK_FEATURES)
NODE_FEATURE_INDEX = {name: i for i, name in enumerate(NODE_FEATURES)}
EDGE_FEATURE_INDEX = {name: i for i, name in enumerate(EDGE_FEATURES)}
TASK_FEATURE_INDEX = {name: i for i, name in enumerate(TASK_FEATURES)}

# Packed layout, used where MetaSchedule's FeatureExtractor interface wants one 2-D float32 array
# per candidate: a header row, then one row per node, then one row per edge.
_PACK_WIDTH = max(NUM_NODE_FEATURES + 1, NUM_EDGE_FEATURES + 3, NUM_TASK_FEATURES)


@dataclass
class LoopGraph:
    """One scheduled program as a graph (numpy arrays, PyTorch Geometric layout).

    Shapes: ``node_type [N]`` int64, ``x [N, NUM_NODE_FEATURES]`` float32,
    ``edge_index [2, E]`` int64 (source, destination), ``edge_type [E]`` int64,
    ``edge_attr [E, NUM_EDGE_FEATURES]`` float32, ``task [NUM_TASK_FEATURES]`` float32.
    """

    node_type: np.ndarray
    x: np.ndarray
    edge_index: np.ndarray
    edge_type: np.ndarray
    edge_attr: np.ndarray
    task: np.ndarray

    @property
    def num_nodes(self) -> int:
        return int(self.node_type.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.edge_type.shape[0])

    @classmethod
    def neutral(cls, task: np.ndarray | None = None) -> LoopGraph:
        """The encoding of a candidate that could not be encoded: a lone task node."""
        x = np.zeros((1, NUM_NODE_FEATURES), np.float32)
        x[0, NODE_FEATURE_INDEX["type_task"]] = 1.0
        return cls(
            node_type=np.zeros(1, np.int64),
            x=x,
            edge_index=np.zeros((2, 0), np.int64),
            edge_type=np.zeros(0, np.int64),
            edge_attr=np.zeros((0, NUM_EDGE_FEATURES), np.float32),
            task=np.zeros(NUM_TASK_FEATURES, np.float32) if task is None else task,
        )

    def pack(self) -> np.ndarray:
        """One 2-D float32 array holding the whole graph (see :meth:`unpack`).

        Row 0 holds ``[num_nodes, num_edges, FEATURE_VERSION]``, row 1 the task features, then
        ``num_nodes`` rows ``[node_type, *x]`` and ``num_edges`` rows
        ``[source, destination, edge_type, *edge_attr]``.
        """
        n, e = self.num_nodes, self.num_edges
        out = np.zeros((2 + n + e, _PACK_WIDTH), np.float32)
        out[0, :3] = (n, e, FEATURE_VERSION)
        out[1, :NUM_TASK_FEATURES] = self.task
        out[2 : 2 + n, 0] = self.node_type
        out[2 : 2 + n, 1 : 1 + NUM_NODE_FEATURES] = self.x
        edges = out[2 + n :]
        edges[:, 0:2] = self.edge_index.T
        edges[:, 2] = self.edge_type
        edges[:, 3 : 3 + NUM_EDGE_FEATURES] = self.edge_attr
        return out

    @classmethod
    def unpack(cls, packed: np.ndarray) -> LoopGraph:
        """Inverse of :meth:`pack`."""
        packed = np.asarray(packed, np.float32)
        n, e, version = (int(v) for v in packed[0, :3])
        if version != FEATURE_VERSION:
            raise ValueError(
                f"packed graph has feature version {version}, this build uses {FEATURE_VERSION}"
            )
        nodes = packed[2 : 2 + n]
        edges = packed[2 + n : 2 + n + e]
        return cls(
            node_type=nodes[:, 0].astype(np.int64),
            x=np.ascontiguousarray(nodes[:, 1 : 1 + NUM_NODE_FEATURES]),
            edge_index=np.ascontiguousarray(edges[:, 0:2].T.astype(np.int64)),
            edge_type=edges[:, 2].astype(np.int64),
            edge_attr=np.ascontiguousarray(edges[:, 3 : 3 + NUM_EDGE_FEATURES]),
            task=packed[1, :NUM_TASK_FEATURES].copy(),
        )
