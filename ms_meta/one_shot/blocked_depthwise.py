"""Depthwise convolutions in the channel-blocked layout (NCHW16c), so that blocked networks stay
blocked through them.

Relax's ``ConvertLayout`` converts only the convolutions whose channels per group split into
blocks: a depthwise convolution (``groups`` = input = output channels, one channel per group)
keeps NCHW, and MobileNetV2's inverted residual blocks (1x1 expansion -> 3x3 depthwise -> 1x1
projection) leave the blocked layout before every depthwise convolution and enter it again
after: 14 layout-transform tasks, and the ReLU6 (``clip``, which ``ConvertLayout`` does not move
into the blocked layout) a task of its own after each expansion, about 20% of the network's
run (rocketlake, 2 threads, 2026-12-05, benchmarks/whole_model/2026-12-05-rocketlake-unseen).

:func:`block_depthwise_convolutions` rewrites, after ``ConvertLayout``:

* every depthwise convolution whose channels split into blocks into one on ``NCHW{b}c`` data
  with an ``OIHW1i{b}o`` kernel (folded at compile time), whose input is the blocked tensor
  the producer computed (no transform) when there is one;
* every elementwise operator (``add``, ``multiply``, ``relu``, ``clip``) whose tensor operands
  are blocked, or per-channel constants, into its blocked form: a layout transform back to
  NCHW moves past it, so that it fuses into the convolution before it;
* every transform of such a tensor to ``NCHW{b}c`` into the blocked tensor itself.

Plain forms that are still used become a layout transform of the blocked one; the others are
dead code. :func:`depthwise_conv2d_nchwc` is the computation the blocked depthwise convolution
is legalized with (the ``depthwise_conv2d_nchwc`` workload builds the same), TOPI's
``depthwise_conv2d_NCHWc`` having no implementation registered in TVM 0.27.
"""

from __future__ import annotations

import numpy as np
import tvm

from ms_meta.one_shot.relax_parts import (
    constant_value,
    is_blocking_map,
    op_name,
    static_shape,
    with_main,
)

__all__ = [
    "block_depthwise_convolutions",
    "depthwise_conv2d_nchwc",
    "is_blocked_depthwise",
]

# elementwise operators that may run on blocked tensors
_ELEMENTWISE = ("relax.add", "relax.multiply", "relax.nn.relu", "relax.clip")


def depthwise_conv2d_nchwc(data, kernel, strides, padding, out_dtype: str = "float32"):
    """Depthwise convolution of ``NCHW{b}c`` data with an ``OIHW1i{b}o`` kernel.

    Parameters
    ----------
    data : te.Tensor
        ``[N, C // b, H, W, b]``.
    kernel : te.Tensor
        ``[C // b, 1, R, S, 1, b]``: channel multiplier 1.
    strides : (int, int)
        Vertical and horizontal stride.
    padding : sequence of int
        ``(top, left, bottom, right)``, or ``(vertical, horizontal)``.
    out_dtype : str
        Accumulation and output type.

    Returns
    -------
    te.Tensor
        ``[N, C // b, P, Q, b]``, computed by the block ``depthwise_conv2d_NCHWc``.
    """
    from tvm import te, topi

    batch, chunks, height, width, block = (int(d) for d in data.shape)
    _, _, kh, kw, _, _ = (int(d) for d in kernel.shape)
    sh, sw = (int(s) for s in strides)
    pad = [int(p) for p in padding]
    top, left, bottom, right = pad if len(pad) == 4 else (pad[0], pad[1], pad[0], pad[1])
    out_h = (height + top + bottom - kh) // sh + 1
    out_w = (width + left + right - kw) // sw + 1
    if top or left or bottom or right:
        padded = topi.nn.pad(data, (0, 0, top, left, 0), (0, 0, bottom, right, 0), name="data_pad")
    else:
        padded = data
    r = te.reduce_axis((0, kh), name="kh")
    s = te.reduce_axis((0, kw), name="kw")
    return te.compute(
        (batch, chunks, out_h, out_w, block),
        lambda n, c, h, w, cb: te.sum(
            padded[n, c, h * sh + r, w * sw + s, cb].astype(out_dtype)
            * kernel[c, 0, r, s, 0, cb].astype(out_dtype),
            axis=[r, s],
        ),
        name="depthwise_conv2d_NCHWc",
        tag="depthwise_conv2d_NCHWc",
    )


def is_blocked_depthwise(call) -> bool:
    """Whether the ``relax.nn.conv2d`` ``call`` is a depthwise one in a blocked layout (the
    form :func:`block_depthwise_convolutions` writes)."""
    attrs = call.attrs
    layout = str(attrs.data_layout)
    if not (layout.startswith("NCHW") and layout.endswith("c") and layout != "NCHW"):
        return False
    try:
        channels = int(call.args[0].ty.shape[1]) * int(call.args[0].ty.shape[4])
    except (AttributeError, TypeError, IndexError):
        return False
    return int(attrs.groups) == channels and channels > 1


def _qualifies(call, block: int) -> bool:
    """A plain depthwise convolution whose channels split into blocks, weights constant."""
    attrs = call.attrs
    data, weight = static_shape(call.args[0]), static_shape(call.args[1])
    return (
        str(attrs.data_layout) == "NCHW"
        and str(attrs.kernel_layout) == "OIHW"
        and str(attrs.out_layout) == "NCHW"
        and data is not None
        and weight is not None
        and len(data) == 4
        and data[1] % block == 0
        and int(attrs.groups) == data[1] == weight[0]
        and weight[1] == 1
        and all(int(d) == 1 for d in attrs.dilation)
        and constant_value(call.args[1]) is not None
    )


def block_depthwise_convolutions(mod: tvm.IRModule, block: int) -> tvm.IRModule:
    """Run ``mod``'s depthwise convolutions, and the elementwise operators around them, in
    ``NCHW{block}c`` (see the module's docstring); ``mod`` itself is not changed."""
    from tvm import relax

    names = [gv.name_hint for gv in mod.get_global_vars()]
    func = mod["main"] if "main" in names else None
    if not isinstance(func, relax.Function):
        return mod

    def to_blocks():
        return tvm.tirx.IndexMap.from_func(lambda n, c, h, w: (n, c // block, h, w, c % block))

    def from_blocks():
        return tvm.tirx.IndexMap.from_func(lambda n, c, h, w, b: (n, c * block + b, h, w))

    @relax.expr_functor.mutator
    class _Rewrite(relax.PyExprMutator):
        def __init__(self, module):
            super().__init__(module)
            self.blocked = {}  # plain variable -> its blocked form, emitted
            self.changed = False

        def blocked_operand(self, expr, channels: int):
            """``expr`` for a blocked operator: its blocked form, a scalar, or a per-channel
            constant in blocks; None when it has none."""
            if isinstance(expr, relax.Var) and expr in self.blocked:
                return self.blocked[expr]
            value = constant_value(expr)
            if value is None:
                return None
            if value.ndim == 0:
                return expr
            if value.shape == (1, channels, 1, 1):
                chunks = channels // block
                value = value.reshape(1, chunks, block, 1, 1).transpose(0, 1, 3, 4, 2)
                return relax.const(np.ascontiguousarray(value))
            return None

        def emit_plain(self, var, blocked_value):
            """Record ``blocked_value`` as ``var``'s blocked form; ``var`` itself becomes its
            transform back to NCHW (dead code when nothing needs it)."""
            self.blocked[var] = self.builder_.emit(blocked_value)
            plain = self.builder_.emit(relax.op.layout_transform(self.blocked[var], from_blocks()))
            self.set_var_remap(var, plain)
            self.changed = True

        def visit_var_binding_(self, binding) -> None:
            var, value = binding.var, binding.value
            name = op_name(value)
            if name == "relax.layout_transform":
                source = self.visit_expr(value.args[0])
                shape = static_shape(value.args[0])
                index_map = value.attrs.index_map
                if value.args[0] in self.blocked and is_blocking_map(index_map, block, True):
                    self.set_var_remap(var, self.blocked[value.args[0]])
                    self.changed = True
                    return
                if shape and len(shape) == 5 and shape[4] == block:
                    if is_blocking_map(index_map, block, False):
                        super().visit_var_binding_(binding)
                        self.blocked[var] = source
                        return
            elif name == "relax.nn.conv2d" and _qualifies(value, block):
                data = value.args[0]
                blocked_data = self.blocked.get(data)
                if blocked_data is None:
                    visited = self.visit_expr(data)
                    blocked_data = self.builder_.emit(
                        relax.op.layout_transform(visited, to_blocks())
                    )
                self.emit_plain(var, _blocked_depthwise(value, blocked_data, block))
                return
            elif name in _ELEMENTWISE:
                shape = static_shape(var)
                if shape and len(shape) == 4 and shape[1] % block == 0:
                    channels = shape[1]
                    tensors = [a for a in value.args if isinstance(a.ty, relax.TensorType)]
                    operands = [self.blocked_operand(a, channels) for a in tensors]
                    if all(o is not None for o in operands) and value.args[0] in self.blocked:
                        self.emit_plain(var, _blocked_elementwise(value, operands))
                        return
            super().visit_var_binding_(binding)

    rewriter = _Rewrite(mod)
    new_func = rewriter.visit_expr(func)
    if not rewriter.changed:
        return mod
    return with_main(mod, new_func)


def _blocked_depthwise(call, data, block: int):
    """``call`` (a plain depthwise convolution) on the blocked ``data``, its kernel blocked."""
    from tvm import relax

    attrs = call.attrs
    weight = constant_value(call.args[1])
    channels, _, kh, kw = weight.shape
    # OIHW [C, 1, R, S] -> OIHW1i{b}o [C / b, 1, R, S, 1, b]
    blocked = weight.reshape(channels // block, block, 1, kh, kw).transpose(0, 2, 3, 4, 1)
    blocked = blocked.reshape(channels // block, 1, kh, kw, 1, block)
    layout = f"NCHW{block}c"
    out_dtype = attrs.out_dtype if str(attrs.out_dtype) not in ("", "void") else None
    return relax.op.nn.conv2d(
        data,
        relax.const(np.ascontiguousarray(blocked)),
        strides=attrs.strides,
        padding=attrs.padding,
        dilation=attrs.dilation,
        groups=int(attrs.groups),
        data_layout=layout,
        kernel_layout=f"OIHW1i{block}o",
        out_layout=layout,
        out_dtype=out_dtype,
    )


def _blocked_elementwise(call, operands):
    """The elementwise ``call`` on blocked ``operands`` (its tensor arguments, in order)."""
    from tvm import relax

    name = op_name(call)
    if name == "relax.nn.relu":
        return relax.op.nn.relu(operands[0])
    if name == "relax.clip":
        return relax.op.clip(operands[0], call.args[1], call.args[2])
    op = relax.op.add if name == "relax.add" else relax.op.multiply
    return op(operands[0], operands[1])
