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
* :func:`legalize_blocked_conv2d` legalizes such a convolution with TOPI's
  ``conv2d_NCHWc``; Relax's default legalization knows only the plain layouts.

A 3x3, 256-channel 14x14 convolution tuned for 128 trials (MetaCostModel-guided, timed
SCHED_FIFO) ran in 1.56 ms in NCHW, 1.66 ms in NCHW with layout-free (prepacked) weights, and
1.09 ms blocked (rocketlake, 2 threads, 2026-12-05).
"""

from __future__ import annotations

import tvm

from ms_meta.errors import first_line
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

    Relax converts a convolution when its channels (per group) split into blocks; others (a
    network's first one, on 3 color channels; depthwise ones) keep their layout. Weights
    bound as constants are transformed at compile time (``FoldConstant``).
    """
    from tvm import relax

    data_layout, kernel_layout = blocked_layout_name(block)
    if _has_blocked_conv2d(mod):
        return mod  # converted already; Relax's conversion does not apply twice
    try:
        return tvm.transform.Sequential([
            # Relax keeps a convolution whose channels do not split into blocks as it is
            relax.transform.ConvertLayout({"relax.nn.conv2d": [data_layout, kernel_layout]}),
            relax.transform.FoldConstant(),
            relax.transform.CanonicalizeBindings(),
        ])(mod)  # fmt: skip
    except Exception as err:  # TVM's errors carry a C++ backtrace; keep the message
        raise OneShotError(
            f"could not convert the convolutions to {data_layout}: {first_line(err)}"
        ) from None


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
    data_layout = str(attrs.data_layout)
    blocked = (
        _is_blocked(data_layout)
        and str(attrs.out_layout) == data_layout
        and str(attrs.kernel_layout).startswith("OIHW")
    )
    if not blocked:
        return _nn_conv2d(bb, call)
    out_dtype = str(attrs.out_dtype) if attrs.out_dtype is not None else ""
    if out_dtype in ("", "None", "void"):
        out_dtype = call.args[0].ty.dtype

    def conv(data, kernel):
        # TOPI asks the current target for its vector width; any CPU target answers
        with tvm.target.Target.current(allow_none=True) or tvm.target.Target("llvm"):
            return topi.nn.conv2d_NCHWc(
                data, kernel, [int(s) for s in attrs.strides], [int(p) for p in attrs.padding],
                [int(d) for d in attrs.dilation], data_layout, data_layout, out_dtype,
            )  # fmt: skip

    return bb.call_te(conv, call.args[0], call.args[1], primfunc_name_hint="conv2d_NCHWc")
