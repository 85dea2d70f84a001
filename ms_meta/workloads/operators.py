"""Operator definitions: each builds a TE compute and wraps it as a MetaSchedule task module."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import tvm
from tvm import te, topi

__all__ = [
    "OPERATORS",
    "OperatorDef",
    "Shape",
    "build_module",
    "tensor_shapes",
]

Shape = tuple[int, ...]


@dataclass(frozen=True)
class OperatorDef:
    """How to build one operator kind from a tuple of integer parameters.

    ``fields`` names the parameters in order (what a spec string lists after the colon);
    ``variadic`` operators (softmax) take any number of dimensions instead.
    """

    name: str
    fields: tuple[str, ...]
    description: str
    build_tensors: Callable[..., list[te.Tensor]]
    flops: Callable[..., float]
    kind: str  # the operator kind used by the task features (schema.OPERATOR_KINDS)
    variadic: bool = False


def _conv_out(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


def _conv2d_nchw(n, c, h, w, k, r, s, stride, pad):
    data = te.placeholder((n, c, h, w), name="data")
    weight = te.placeholder((k, c, r, s), name="weight")
    return [data, weight, topi.nn.conv2d_nchw(data, weight, stride, pad, 1)]


def _conv2d_nchw_flops(n, c, h, w, k, r, s, stride, pad):
    return 2.0 * n * k * _conv_out(h, r, stride, pad) * _conv_out(w, s, stride, pad) * c * r * s


# channels per block of conv2d_nchwc (ms_meta.one_shot.blocked.BLOCK)
CHANNEL_BLOCK = 16


def _conv2d_nchwc(n, c, h, w, k, r, s, stride, pad):
    """TOPI's conv2d_NCHWc on 16-channel blocks (NCHW16c data, OIHW16i16o weight): the
    convolutions of a network prepared with ``blocked=True`` (ms_meta.one_shot.blocked). Input
    channels that do not split into blocks (a first convolution's 3) form one block of all
    of them (NCHW3c data, OIHW3i16o weight); the output is blocked all the same."""
    bn = CHANNEL_BLOCK
    in_bn = bn if c % bn == 0 else c
    data = te.placeholder((n, c // in_bn, h, w, in_bn), name="data")
    weight = te.placeholder((k // bn, c // in_bn, r, s, in_bn, bn), name="weight")
    with tvm.target.Target("llvm"):  # TOPI asks for a target; the computation is the same
        data_layout, out_layout = f"NCHW{in_bn}c", f"NCHW{bn}c"
        out = topi.nn.conv2d_NCHWc(data, weight, stride, pad, 1, data_layout, out_layout, "float32")
    return [data, weight, out]


def _conv2d_nhwc(n, h, w, c, k, r, s, stride, pad):
    data = te.placeholder((n, h, w, c), name="data")
    weight = te.placeholder((r, s, c, k), name="weight")
    return [data, weight, topi.nn.conv2d_nhwc(data, weight, stride, pad, 1)]


def _conv2d_nhwc_flops(n, h, w, c, k, r, s, stride, pad):
    return _conv2d_nchw_flops(n, c, h, w, k, r, s, stride, pad)


def _depthwise_conv2d(n, c, h, w, r, s, stride, pad):
    data = te.placeholder((n, c, h, w), name="data")
    weight = te.placeholder((c, 1, r, s), name="weight")
    return [data, weight, topi.nn.depthwise_conv2d_nchw(data, weight, stride, pad, 1)]


def _depthwise_conv2d_flops(n, c, h, w, r, s, stride, pad):
    return 2.0 * n * c * _conv_out(h, r, stride, pad) * _conv_out(w, s, stride, pad) * r * s


def _depthwise_conv2d_nchwc(n, c, h, w, r, s, stride, pad):
    """A depthwise convolution on 16-channel blocks (NCHW16c data, OIHW1i16o weight), as a
    network prepared with ``blocked=True`` runs it (ms_meta.one_shot.blocked_depthwise)."""
    from ms_meta.one_shot.blocked_depthwise import depthwise_conv2d_nchwc

    bn = CHANNEL_BLOCK
    data = te.placeholder((n, c // bn, h, w, bn), name="data")
    weight = te.placeholder((c // bn, 1, r, s, 1, bn), name="weight")
    out = depthwise_conv2d_nchwc(data, weight, (stride, stride), (pad, pad, pad, pad))
    return [data, weight, out]


def _group_conv2d_nchw(n, c, h, w, k, r, s, stride, pad, groups):
    data = te.placeholder((n, c, h, w), name="data")
    weight = te.placeholder((k, c // groups, r, s), name="weight")
    return [data, weight, topi.nn.group_conv2d_nchw(data, weight, stride, pad, 1, groups)]


def _group_conv2d_nchw_flops(n, c, h, w, k, r, s, stride, pad, groups):
    return _conv2d_nchw_flops(n, c // groups, h, w, k, r, s, stride, pad)


def _conv2d_bias_relu(n, c, h, w, k, r, s, stride, pad):
    data = te.placeholder((n, c, h, w), name="data")
    weight = te.placeholder((k, c, r, s), name="weight")
    bias = te.placeholder((1, k, 1, 1), name="bias")
    conv = topi.nn.conv2d_nchw(data, weight, stride, pad, 1)
    return [data, weight, bias, topi.nn.relu(topi.add(conv, bias))]


def _conv2d_bias_relu_flops(n, c, h, w, k, r, s, stride, pad):
    outputs = n * k * _conv_out(h, r, stride, pad) * _conv_out(w, s, stride, pad)
    return _conv2d_nchw_flops(n, c, h, w, k, r, s, stride, pad) + 2.0 * outputs


def _dense(m, n, k):
    # Plain te.compute (not topi.nn.dense, which marks B layout-free): the same definition
    # as the seed records, so their workloads hash identically to these.
    a = te.placeholder((m, k), name="A")
    b = te.placeholder((n, k), name="B")
    r = te.reduce_axis((0, k), name="k")
    out = te.compute((m, n), lambda i, j: te.sum(a[i, r] * b[j, r], axis=r), name="T_dense")
    return [a, b, out]


def _dense_flops(m, n, k):
    return 2.0 * m * n * k


def _batch_matmul(b, m, n, k):
    x = te.placeholder((b, m, k), name="A")
    y = te.placeholder((b, n, k), name="B")
    r = te.reduce_axis((0, k), name="k")
    out = te.compute(
        (b, m, n), lambda bb, i, j: te.sum(x[bb, i, r] * y[bb, j, r], axis=r), name="T_bmm"
    )
    return [x, y, out]


def _batch_matmul_flops(b, m, n, k):
    return 2.0 * b * m * n * k


def _matmul_bias(m, n, k):
    # The dense layer as TVM's Relax frontends import it (torch nn.Linear, ONNX Gemm): the
    # weight is [K, N] (transposed once at import), and the bias add is fused into the task.
    # Its weight access differs from TOPI's dense ([N, K]), so the schedules that are fast differ.
    a = te.placeholder((m, k), name="A")
    b = te.placeholder((k, n), name="B")
    bias = te.placeholder((n,), name="bias")
    r = te.reduce_axis((0, k), name="k")
    mm = te.compute((m, n), lambda i, j: te.sum(a[i, r] * b[r, j], axis=r), name="matmul")
    out = te.compute((m, n), lambda i, j: bias[j] + mm[i, j], name="T_add")
    return [a, b, bias, out]


def _matmul_bias_flops(m, n, k):
    return 2.0 * m * n * k + m * n


def _batch_matmul_nn(b, m, n, k):
    # Attention's batched matmuls as Relax imports them: [B, M, K] x [B, K, N], no transpose.
    x = te.placeholder((b, m, k), name="A")
    y = te.placeholder((b, k, n), name="B")
    r = te.reduce_axis((0, k), name="k")
    out = te.compute(
        (b, m, n), lambda bb, i, j: te.sum(x[bb, i, r] * y[bb, r, j], axis=r), name="matmul"
    )
    return [x, y, out]


def _softmax(*shape):
    a = te.placeholder(tuple(shape), name="A")
    return [a, topi.nn.softmax(a, axis=-1)]


def _softmax_flops(*shape):
    return 5.0 * math.prod(shape)  # max, sub, exp, sum, div per element


def _layer_norm(m, n):
    a = te.placeholder((m, n), name="A")
    gamma = te.placeholder((n,), name="gamma")
    beta = te.placeholder((n,), name="beta")
    return [a, gamma, beta, topi.nn.layer_norm(a, gamma, beta, axis=[1], epsilon=1e-5)]


def _layer_norm_flops(m, n):
    return 8.0 * m * n


def _pool2d(kind: str):
    def build(n, c, h, w, kernel, stride, pad):
        a = te.placeholder((n, c, h, w), name="A")
        out = topi.nn.pool2d(
            a, (kernel, kernel), (stride, stride), (1, 1), (pad, pad, pad, pad), kind,
            layout="NCHW", count_include_pad=True,
        )  # fmt: skip
        return [a, out]

    return build


def _pool2d_flops(n, c, h, w, kernel, stride, pad):
    return (
        1.0
        * n
        * c
        * _conv_out(h, kernel, stride, pad)
        * _conv_out(w, kernel, stride, pad)
        * (kernel * kernel)
    )


def _global_avg_pool(n, c, h, w):
    a = te.placeholder((n, c, h, w), name="A")
    return [a, topi.nn.adaptive_pool(a, (1, 1), "avg", layout="NCHW")]


def _global_avg_pool_flops(n, c, h, w):
    return 1.0 * n * c * h * w


_CONV_FIELDS = ("N", "C", "H", "W", "K", "R", "S", "stride", "pad")
_POOL_FIELDS = ("N", "C", "H", "W", "kernel", "stride", "pad")

OPERATORS: dict[str, OperatorDef] = {
    op.name: op
    for op in (
        OperatorDef(
            "conv2d_nchw", _CONV_FIELDS, "2-D convolution, NCHW data, KCRS weight",
            _conv2d_nchw, _conv2d_nchw_flops, "conv2d_nchw",
        ),
        OperatorDef(
            "conv2d_nhwc", ("N", "H", "W", "C", "K", "R", "S", "stride", "pad"),
            "2-D convolution, NHWC data, RSCK weight", _conv2d_nhwc, _conv2d_nhwc_flops,
            "conv2d_nhwc",
        ),
        OperatorDef(
            "conv2d_nchwc", _CONV_FIELDS,
            "2-D convolution on 16-channel blocks: NCHW16c data, OIHW16i16o weight; K a "
            "multiple of 16, C too or all of C one block", _conv2d_nchwc, _conv2d_nchw_flops,
            "conv2d_nchw",
        ),
        OperatorDef(
            "depthwise_conv2d", ("N", "C", "H", "W", "R", "S", "stride", "pad"),
            "depthwise 2-D convolution, NCHW, channel multiplier 1", _depthwise_conv2d,
            _depthwise_conv2d_flops, "depthwise_conv2d",
        ),
        OperatorDef(
            "depthwise_conv2d_nchwc", ("N", "C", "H", "W", "R", "S", "stride", "pad"),
            "depthwise 2-D convolution on 16-channel blocks: NCHW16c data, OIHW1i16o weight; "
            "C a multiple of 16", _depthwise_conv2d_nchwc, _depthwise_conv2d_flops,
            "depthwise_conv2d",
        ),
        OperatorDef(
            # the block is named group_conv2d_nchw, which the task features read as conv2d_nchw
            "group_conv2d_nchw", (*_CONV_FIELDS, "groups"),
            "grouped 2-D convolution, NCHW (ResNeXt, RegNet); C and K divisible by groups",
            _group_conv2d_nchw, _group_conv2d_nchw_flops, "conv2d_nchw",
        ),
        OperatorDef(
            "conv2d_bias_relu", _CONV_FIELDS, "conv2d_nchw + bias + ReLU fused in one task",
            _conv2d_bias_relu, _conv2d_bias_relu_flops, "conv2d_fused",
        ),
        OperatorDef(
            "dense", ("M", "N", "K"), "dense layer: [M, K] x [N, K]^T", _dense, _dense_flops,
            "dense",
        ),
        OperatorDef(
            "batch_matmul", ("B", "M", "N", "K"), "batched matmul: [B, M, K] x [B, N, K]^T",
            _batch_matmul, _batch_matmul_flops, "batch_matmul",
        ),
        OperatorDef(
            "matmul_bias", ("M", "N", "K"),
            "dense layer as Relax imports it: [M, K] x [K, N] + bias[N], fused",
            _matmul_bias, _matmul_bias_flops, "dense",
        ),
        OperatorDef(
            "batch_matmul_nn", ("B", "M", "N", "K"),
            "batched matmul as Relax imports it: [B, M, K] x [B, K, N]", _batch_matmul_nn,
            # "dense", not "batch_matmul": the task features infer the kind from block names,
            # and Relax names its batched matmul block "matmul", as it names the dense one.
            # Telling them apart by rank needs a new encoding version (and retrained weights).
            _batch_matmul_flops, "dense",
        ),
        OperatorDef(
            "softmax", ("D0", "D1", "..."), "softmax over the last axis of any shape",
            _softmax, _softmax_flops, "softmax", variadic=True,
        ),
        OperatorDef(
            "layer_norm", ("M", "N"), "layer normalization of [M, N] over axis 1",
            _layer_norm, _layer_norm_flops, "layer_norm",
        ),
        OperatorDef(
            "max_pool2d", _POOL_FIELDS, "2-D max pooling, NCHW", _pool2d("max"),
            _pool2d_flops, "pool",
        ),
        OperatorDef(
            "avg_pool2d", _POOL_FIELDS, "2-D average pooling, NCHW", _pool2d("avg"),
            _pool2d_flops, "pool",
        ),
        OperatorDef(
            "global_avg_pool", ("N", "C", "H", "W"), "global average pooling, NCHW",
            _global_avg_pool, _global_avg_pool_flops, "pool",
        ),
    )
}  # fmt: skip


def build_module(op: OperatorDef, params: tuple[int, ...]) -> tvm.IRModule:
    """The task module MetaSchedule tunes: one PrimFunc named ``main``."""
    tensors = op.build_tensors(*params)
    func = te.create_prim_func(tensors)
    return tvm.IRModule({"main": func})


def tensor_shapes(op: OperatorDef, params: tuple[int, ...]) -> tuple[list[Shape], list[Shape]]:
    """Input and output shapes, without building a PrimFunc."""
    tensors = op.build_tensors(*params)
    shapes = [tuple(int(d) for d in t.shape) for t in tensors]
    return shapes[:-1], shapes[-1:]
