"""Task-level features: operator kind, FLOPs, input and output shapes of the unscheduled task.

One-Shot Tuner found that a predictor needs to know *which* task a program belongs to, not only
its loop nest; these features travel with every graph of the task.
"""

from __future__ import annotations

import math

import numpy as np
import tvm

from ms_meta.feature.graph import block_summary
from ms_meta.feature.schema import NUM_TASK_FEATURES, OPERATOR_KINDS, TASK_FEATURE_INDEX

_T = TASK_FEATURE_INDEX

# Block-name fragments MetaSchedule/TOPI/Relax legalization give each operator (checked in order).
_NAME_RULES = (
    ("depthwise", "depthwise_conv2d"),
    ("conv2d_nhwc", "conv2d_nhwc"),
    ("conv2d_nchw", "conv2d_nchw"),
    ("conv2d", "conv2d_nchw"),
    ("batch_matmul", "batch_matmul"),
    ("bmm", "batch_matmul"),
    ("softmax", "softmax"),
    ("layer_norm", "layer_norm"),
    ("pool", "pool"),
    ("dense", "dense"),
    ("matmul", "dense"),
)
_ELEMENTWISE_NAMES = ("add", "relu", "compute", "multiply", "subtract", "bias", "clip", "cast")


def _main_func(mod):
    if isinstance(mod, tvm.IRModule):
        funcs = [f for _, f in mod.functions.items() if isinstance(f, tvm.tirx.PrimFunc)]
        if not funcs:
            raise ValueError("the module has no PrimFunc")
        return mod["main"] if any(str(g.name_hint) == "main" for g in mod.get_global_vars()) \
            else funcs[0]  # fmt: skip
    return mod


def infer_operator_kind(mod) -> str:
    """Operator kind (one of ``schema.OPERATOR_KINDS``) of a task module, from its blocks."""
    blocks = block_summary(_main_func(mod))
    names = [name.lower() for name, _, _ in blocks]
    kind = None
    for fragment, op in _NAME_RULES:
        if any(fragment in name for name in names):
            kind = op
            break
    if kind is None:
        matmul_like = [b for b in blocks if b[2].num_reduce > 0 and b[2].ops.float_mul > 0]
        if matmul_like:
            dims = matmul_like[0][2].num_spatial
            kind = "batch_matmul" if dims >= 3 else "dense"
        elif all(not b[2].is_reduction for b in blocks):
            return "elementwise"
        else:
            return "other"
    if kind == "conv2d_nchw" and _one_channel_per_group(_main_func(mod)):
        kind = "depthwise_conv2d"
    if kind in ("conv2d_nchw", "conv2d_nhwc"):
        extra = [n for n in names if any(e in n for e in _ELEMENTWISE_NAMES)]
        if extra:
            return "conv2d_fused"
    return kind


def _one_channel_per_group(func) -> bool:
    """Whether ``func`` holds a grouped convolution (Relax legalizes a ``groups`` = channels
    ``conv2d`` to TOPI's ``group_conv2d_nchw``) whose reduction over a group's input channels
    has extent 1: a depthwise convolution, whatever its block is named."""
    sch = tvm.s_tir.Schedule(func)
    for block_rv in sch.get_child_blocks(sch.get_sblock("root")):
        block = sch.get(block_rv)
        if "group_conv2d" not in str(block.name_hint).lower():
            continue
        reduce = [iv for iv in block.iter_vars if iv.iter_type == tvm.tirx.IterVar.CommReduce]
        if len(reduce) == 3 and int(reduce[0].dom.extent) == 1:
            return True
    return False


def _log_dims(shape, width: int = 6) -> list[float]:
    dims = [math.log2(1.0 + d) for d in shape][-width:]
    return [0.0] * (width - len(dims)) + dims


def _shape_of(buffer) -> list[int]:
    return [int(d.value) if hasattr(d, "value") else 1 for d in buffer.shape]


def task_features(mod) -> np.ndarray:
    """``[NUM_TASK_FEATURES]`` float32 features of an unscheduled task module."""
    func = _main_func(mod)
    blocks = block_summary(func)
    out = np.zeros(NUM_TASK_FEATURES, np.float32)
    kind = infer_operator_kind(func)
    out[_T[f"op_{kind}"] if kind in OPERATOR_KINDS else _T["op_other"]] = 1.0
    flops = sum(trips * static.float_ops for _, trips, static in blocks)
    out[_T["log_flops"]] = math.log2(1.0 + flops)
    params = list(func.params)
    shapes = []
    for param in params:
        try:
            shapes.append((_shape_of(param), str(param.dtype)))
        except AttributeError:  # a scalar parameter
            continue
    if shapes:
        inputs, outputs = shapes[:-1], shapes[-1:]

        def nbytes(items):
            return sum(math.prod(s) * max(1, int("".join(c for c in d if c.isdigit()) or 32) // 8)
                       for s, d in items)  # fmt: skip

        out[_T["log_input_bytes"]] = math.log2(1.0 + nbytes(inputs))
        out[_T["log_output_bytes"]] = math.log2(1.0 + nbytes(outputs))
        out[_T["num_inputs"]] = float(len(inputs))
        for prefix, shape in (("out", outputs[0][0]), ("in0", None), ("in1", None)):
            if prefix == "in0" and len(inputs) > 0:
                shape = inputs[0][0]
            if prefix == "in1" and len(inputs) > 1:
                shape = inputs[1][0]
            if shape is None:
                continue
            for i, value in enumerate(_log_dims(shape)):
                out[_T[f"{prefix}_dim{i}"]] = value
    out[_T["num_blocks"]] = float(len(blocks))
    if blocks:
        main = max(blocks, key=lambda b: b[1] * max(1, b[2].float_ops))
        _, trips, static = main
        out[_T["log_spatial_extent"]] = math.log2(1.0 + trips / static.reduce_extent)
        out[_T["log_reduce_extent"]] = math.log2(1.0 + static.reduce_extent)
    return out
