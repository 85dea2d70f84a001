"""Convolutions in a channel-blocked layout (NCHW16c), the layout fast CPU kernels use.

In NCHW, a convolution's only contiguous output axis is the row: a 7x7 or 14x14 feature map
fills a 16-lane AVX-512 vector badly, and the weights of one output channel are read one scalar
at a time. ONNX Runtime and oneDNN convert convolutions to a blocked layout (``NCHW16c`` data,
``OIHW16i16o`` weights), whose innermost axis is 16 channels: one vector per output pixel,
and one contiguous weight vector per input channel. The same rewrite here, before
legalization:

* :func:`to_blocked_layout` converts every ``relax.nn.conv2d`` whose input and output channel
  counts are multiples of the block (Relax's ``ConvertLayout``; the operators around follow
  the layout, and layout transforms are inserted where they cannot), then folds the weight
  transforms into constants, so the blocked weights are computed once, at compile time.
* A convolution whose input channels do not split into blocks (a network's first one, on 3
  color channels) but whose output feeds blocked layers computes its output blocked directly:
  its input is one block of all its channels (``NCHW3c``, a reshape), its weights
  ``OIHW3i16o``, and the bias, activation and pooling after it follow the output layout, as
  ONNX Runtime's first convolution does. Otherwise it would run in NCHW, vectorized along
  its output rows, and a layout transform would follow it.
* A depthwise convolution whose channels split into blocks runs on ``NCHW16c`` data with an
  ``OIHW1i16o`` kernel, and the bias and ReLU6 around it follow
  (:mod:`ms_meta.one_shot.blocked_depthwise`), so MobileNetV2's inverted residual blocks stay
  blocked from the expansion to the projection.
* :func:`legalize_blocked_conv2d` legalizes such a convolution with TOPI's
  ``conv2d_NCHWc`` (a depthwise one with
  :func:`~ms_meta.one_shot.blocked_depthwise.depthwise_conv2d_nchwc`); Relax's default
  legalization knows only the plain layouts.

A 3x3, 256-channel 14x14 convolution tuned for 128 trials (MetaCostModel-guided, timed
SCHED_FIFO) ran in 1.56 ms in NCHW, 1.66 ms in NCHW with layout-free (prepacked) weights, and
1.09 ms blocked (rocketlake, 2 threads, 2026-12-05). ResNet-18's first convolution (7x7, 3 to
64 channels, with its bias and ReLU) took 2.41 ms in NCHW: 98 GFLOP/s, where PyTorch/oneDNN
reaches 259 (its 512 measured NCHW schedules were no faster).
"""

from __future__ import annotations

import numpy as np
import tvm

from ms_meta.errors import first_line
from ms_meta.one_shot.blocked_depthwise import (
    block_depthwise_convolutions,
    depthwise_conv2d_nchwc,
    is_blocked_depthwise,
)
from ms_meta.one_shot.relax_parts import (
    constant_value,
    is_blocking_map,
    op_name,
    static_shape,
    with_main,
)
from ms_meta.one_shot.run import OneShotError

__all__ = [
    "BLOCK",
    "BLOCKED_DEFAULT",
    "blocked_layout_name",
    "legalize_blocked_conv2d",
    "to_blocked_layout",
]

# channels per block: one AVX-512 vector of float32
BLOCK = 16
# whether prepare_for_inference (and so One-Shot's tune_relax and compile_relax) converts
# convolutions when not told: ResNet-18's One-Shot build ran 1.39x faster blocked than plain
# (15.8 against 21.9 ms, rocketlake, 2 threads, 2026-12-05, benchmarks/whole_model)
BLOCKED_DEFAULT = True


def blocked_layout_name(block: int = BLOCK) -> tuple[str, str]:
    """The (data, kernel) layout names of ``block``-channel blocks, e.g. NCHW16c, OIHW16i16o."""
    return f"NCHW{block}c", f"OIHW{block}i{block}o"


def to_blocked_layout(mod: tvm.IRModule, block: int = BLOCK) -> tvm.IRModule:
    """Convert the blockable convolutions of ``mod``'s ``main`` to ``NCHW{block}c``.

    Relax converts a convolution when its channels (per group) split into blocks; a
    network's first one, on 3 color channels, writes blocks when blocked layers read its
    output; depthwise ones whose channels split into blocks, and the elementwise operators
    around them, are blocked too (:mod:`ms_meta.one_shot.blocked_depthwise`); other
    convolutions keep their layout. Weights bound as constants are transformed at compile
    time (``FoldConstant``).
    """
    from tvm import relax

    data_layout, kernel_layout = blocked_layout_name(block)
    if _has_blocked_conv2d(mod):
        return mod  # converted already; Relax's conversion does not apply twice
    try:
        mod = tvm.transform.Sequential([
            # Relax keeps a convolution whose channels do not split into blocks as it is
            relax.transform.ConvertLayout({"relax.nn.conv2d": [data_layout, kernel_layout]}),
            relax.transform.FoldConstant(),
            relax.transform.CanonicalizeBindings(),
        ])(mod)  # fmt: skip
        mod = block_depthwise_convolutions(mod, block)
        return _block_first_convolutions(mod, block)
    except Exception as err:  # TVM's errors carry a C++ backtrace; keep the message
        raise OneShotError(
            f"could not convert the convolutions to {data_layout}: {first_line(err)}"
        ) from None


# ---- a first convolution that writes the blocked layout ------------------------------------

# operators between a first convolution and the layout transform after it that can follow the
# blocked output layout: elementwise with a per-channel constant, and pooling
_FOLLOWERS = ("relax.add", "relax.multiply", "relax.nn.relu", "relax.clip", "relax.nn.max_pool2d")


def _to_blocks(block: int):
    return tvm.tirx.IndexMap.from_func(lambda n, c, h, w: (n, c // block, h, w, c % block))


def _channel_constant(expr, channels: int):
    """``expr``'s value when it is a constant that broadcasts along channels: a scalar or
    ``[1, C, 1, 1]``; None otherwise."""
    value = constant_value(expr)
    if value is None:
        return None
    if value.ndim == 0 or value.shape == (1, channels, 1, 1):
        return value
    return None


def _first_convolution(bindings, uses, var, block: int):
    """The chain ``conv2d -> followers -> var`` that ends in ``var`` (bound in ``bindings``):
    a plain convolution whose input channels do not split into ``block``-channel blocks,
    whose output channels do, and whose intermediate results have no other use; None when
    ``var`` is not the end of such a chain."""
    chain = []
    current = var
    while True:
        call = bindings.get(current)
        name = op_name(call)
        if name == "relax.nn.conv2d":
            break
        if name not in _FOLLOWERS:
            return None
        if name == "relax.nn.max_pool2d" and str(call.attrs.layout) != "NCHW":
            return None
        if current is not var and uses.get(current, 0) != 1:
            return None
        chain.append((current, call))
        current = call.args[0]
    attrs = call.attrs
    data_shape, weight_shape = static_shape(call.args[0]), static_shape(call.args[1])
    if (
        (current is not var and uses.get(current, 0) != 1)
        or str(attrs.data_layout) != "NCHW"
        or str(attrs.kernel_layout) != "OIHW"
        or str(attrs.out_layout) != "NCHW"
        or int(attrs.groups) != 1
        or data_shape is None
        or weight_shape is None
        or data_shape[1] % block == 0
        or weight_shape[0] % block
        or constant_value(call.args[1]) is None
    ):
        return None
    for _, follower in chain:
        if op_name(follower) in ("relax.add", "relax.multiply"):
            if _channel_constant(follower.args[1], weight_shape[0]) is None:
                return None
    return call, [follower for _, follower in reversed(chain)]


def _emit_blocked_chain(builder, data, conv, followers, block: int):
    """Emit ``conv`` (input ``data``, already visited) and its ``followers`` in the blocked
    layout; returns the last emitted variable, of the ``NCHW{block}c`` layout."""
    from tvm import relax

    attrs = conv.attrs
    weight = constant_value(conv.args[1])
    out_channels, in_channels, kh, kw = weight.shape
    chunks = out_channels // block
    # OIHW -> OIHW{C}i{block}o: all input channels in one block
    blocked_weight = weight.reshape(chunks, block, 1, in_channels, kh, kw).transpose(
        0, 2, 4, 5, 3, 1
    )
    data_layout = f"NCHW{in_channels}c"
    out_layout = f"NCHW{block}c"
    blocked_data = builder.emit(relax.op.layout_transform(data, index_map=_to_blocks(in_channels)))
    out_dtype = attrs.out_dtype if str(attrs.out_dtype) not in ("", "void") else None
    current = builder.emit(
        relax.op.nn.conv2d(
            blocked_data,
            relax.const(np.ascontiguousarray(blocked_weight)),
            strides=attrs.strides,
            padding=attrs.padding,
            dilation=attrs.dilation,
            groups=1,
            data_layout=data_layout,
            kernel_layout=f"OIHW{in_channels}i{block}o",
            out_layout=out_layout,
            out_dtype=out_dtype,
        )
    )
    for follower in followers:
        name = op_name(follower)
        if name == "relax.nn.relu":
            current = builder.emit(relax.op.nn.relu(current))
        elif name == "relax.clip":
            current = builder.emit(relax.op.clip(current, follower.args[1], follower.args[2]))
        elif name == "relax.nn.max_pool2d":
            a = follower.attrs
            pool = relax.op.nn.max_pool2d(
                current, a.pool_size, a.strides, a.padding, a.dilation, a.ceil_mode,
                a.count_include_pad, layout=out_layout, out_layout=out_layout,
            )  # fmt: skip
            current = builder.emit(pool)
        else:
            value = _channel_constant(follower.args[1], out_channels)
            if value.ndim:
                value = value.reshape(1, chunks, block, 1, 1).transpose(0, 1, 3, 4, 2)
            op = relax.op.add if name == "relax.add" else relax.op.multiply
            current = builder.emit(op(current, relax.const(np.ascontiguousarray(value))))
    return current


def _block_first_convolutions(mod: tvm.IRModule, block: int) -> tvm.IRModule:
    """Give every first convolution whose output is converted to ``NCHW{block}c`` (with the
    bias, activation and pooling between) a blocked output of its own (see the module's
    docstring); the plain chain is then dead and removed."""
    from tvm import relax

    func = mod["main"] if "main" in [gv.name_hint for gv in mod.get_global_vars()] else None
    if not isinstance(func, relax.Function):
        return mod
    bindings, uses = {}, {}

    @relax.expr_functor.visitor
    class _Uses(relax.PyExprVisitor):
        def visit_var_binding_(self, binding) -> None:
            bindings[binding.var] = binding.value
            super().visit_var_binding_(binding)

        def visit_var_(self, var) -> None:
            uses[var] = uses.get(var, 0) + 1

        def visit_dataflow_var_(self, var) -> None:
            uses[var] = uses.get(var, 0) + 1

    _Uses().visit_expr(func)
    plans = {}
    for var, value in bindings.items():
        if op_name(value) != "relax.layout_transform":
            continue
        if not is_blocking_map(value.attrs.index_map, block):
            continue
        source = value.args[0]
        found = _first_convolution(bindings, uses, source, block)
        if found is None:
            continue
        # every use of the chain's end is such a layout transform (it may be repeated)
        transforms = [
            v
            for v, e in bindings.items()
            if op_name(e) == "relax.layout_transform" and e.args[0].same_as(source)
        ]
        if uses.get(source, 0) != len(transforms):
            continue
        plans[var] = (source, found)
    if not plans:
        return mod

    @relax.expr_functor.mutator
    class _Rewrite(relax.PyExprMutator):
        def __init__(self, module):
            super().__init__(module)
            self.emitted = {}

        def visit_var_binding_(self, binding) -> None:
            plan = plans.get(binding.var)
            if plan is None:
                super().visit_var_binding_(binding)
                return
            source, (conv, followers) = plan
            if source not in self.emitted:
                data = self.visit_expr(conv.args[0])
                self.emitted[source] = _emit_blocked_chain(
                    self.builder_, data, conv, followers, block
                )
            self.set_var_remap(binding.var, self.emitted[source])

    rewriter = _Rewrite(mod)
    new_func = rewriter.visit_expr(func)
    return with_main(mod, new_func)


def _is_blocked(layout: str) -> bool:
    return layout.startswith("NCHW") and layout.endswith("c") and layout != "NCHW"


def _has_blocked_conv2d(mod: tvm.IRModule) -> bool:
    from tvm import relax

    found = []

    @relax.expr_functor.visitor
    class _Find(relax.PyExprVisitor):
        def visit_call_(self, call) -> None:
            op = call.op
            if isinstance(op, tvm.ir.Op) and op.name == "relax.nn.conv2d":
                found.append(_is_blocked(str(call.attrs.data_layout)))
            super().visit_call_(call)

    for _, func in mod.functions.items():
        if isinstance(func, relax.Function):
            _Find().visit_expr(func)
    return any(found)


def legalize_blocked_conv2d(bb, call):
    """Legalize ``relax.nn.conv2d`` in an ``NCHW{b}c`` / ``OIHW{b}i{b}o`` layout with TOPI's
    ``conv2d_NCHWc``; every other convolution gets Relax's default legalization."""
    from tvm import topi
    from tvm.relax.transform.legalize_ops.nn import _nn_conv2d

    attrs = call.attrs
    data_layout, out_layout = str(attrs.data_layout), str(attrs.out_layout)
    blocked = (
        _is_blocked(data_layout)
        and _is_blocked(out_layout)
        and str(attrs.kernel_layout).startswith("OIHW")
    )
    if not blocked:
        return _nn_conv2d(bb, call)
    out_dtype = str(attrs.out_dtype) if attrs.out_dtype is not None else ""
    if out_dtype in ("", "None", "void"):
        out_dtype = call.args[0].ty.dtype
    if is_blocked_depthwise(call):
        return bb.call_te(
            lambda data, kernel: depthwise_conv2d_nchwc(
                data, kernel, attrs.strides, attrs.padding, out_dtype
            ),
            call.args[0], call.args[1], primfunc_name_hint="depthwise_conv2d_NCHWc",
        )  # fmt: skip

    def conv(data, kernel):
        # TOPI asks the current target for its vector width; any CPU target answers
        with tvm.target.Target.current(allow_none=True) or tvm.target.Target("llvm"):
            return topi.nn.conv2d_NCHWc(
                data, kernel, [int(s) for s in attrs.strides], [int(p) for p in attrs.padding],
                [int(d) for d in attrs.dilation], data_layout, out_layout, out_dtype,
            )  # fmt: skip

    return bb.call_te(conv, call.args[0], call.args[1], primfunc_name_hint="conv2d_NCHWc")
