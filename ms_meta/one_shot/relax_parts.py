"""Small readers of Relax expressions, shared by the layout rewrites of One-Shot's inference
preparation (:mod:`ms_meta.one_shot.blocked`, :mod:`ms_meta.one_shot.blocked_depthwise`): the
operator a call makes, a tensor's static shape, a constant's value, and whether a layout
transform is the NCHW <-> ``NCHW{block}c`` one. Each answers None or False for anything it does
not recognise, so that a rewrite leaves such bindings alone."""

from __future__ import annotations

import numpy as np
import tvm

__all__ = ["constant_value", "is_blocking_map", "op_name", "static_shape", "with_main"]


def op_name(expr) -> str | None:
    """The operator name of a Relax call (``relax.add``, ...), None for anything else."""
    from tvm import relax

    if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
        return expr.op.name
    return None


def static_shape(expr) -> tuple[int, ...] | None:
    """The static shape of a tensor expression, None when it has none."""
    try:
        return tuple(int(d) for d in expr.ty.shape)
    except (AttributeError, TypeError, ValueError):
        return None


def constant_value(expr) -> np.ndarray | None:
    """The value of a Relax constant, None for any other expression."""
    if not isinstance(expr, tvm.ir.expr.GenericConst):
        return None
    try:
        return expr.value.numpy()
    except AttributeError:
        return None


def is_blocking_map(index_map, block: int, to_blocks: bool = True) -> bool:
    """Whether ``index_map`` is NCHW -> ``NCHW{block}c`` (``to_blocks``) or back, checked on
    sample indices: the frontend's maps and those built here may differ in their index types."""
    samples = ((0, 0, 0, 0), (1, block + 3, 5, 7), (0, 3 * block - 1, 2, 9))
    try:
        if len(index_map.initial_indices) != (4 if to_blocks else 5):
            return False
        for n, c, h, w in samples:
            blocked = [n, c // block, h, w, c % block]
            if to_blocks:
                got, want = index_map.map_indices([n, c, h, w]), blocked
            else:
                got, want = index_map.map_indices(blocked), [n, c, h, w]
            if [int(v) for v in got] != want:
                return False
    except (AttributeError, TypeError, ValueError, RuntimeError):  # RuntimeError: from TVM
        return False
    return True


def with_main(mod: tvm.IRModule, new_main) -> tvm.IRModule:
    """A copy of ``mod`` (the caller's module stays as it was) whose ``main`` is ``new_main``,
    with the bindings a rewrite left unused removed and the rest canonicalized."""
    from tvm import relax

    mod = mod.clone()
    mod["main"] = new_main
    return tvm.transform.Sequential([
        relax.transform.DeadCodeElimination(),
        relax.transform.CanonicalizeBindings(),
    ])(mod)  # fmt: skip
