"""Prepacked weights: matrix products whose constant weight MetaSchedule may lay out anew.

A dense layer's weight is a constant, so the layout it is read in is the compiler's choice.
oneDNN repacks it once into panels that the inner kernel streams contiguously; a schedule of
the plain ``[K, N]`` weight instead gathers every register tile from ``N``-strided rows.
MetaSchedule can do the same: a PrimFunc argument listed in its ``layout_free_buffers``
attribute may be rewritten by the ``RewriteLayout`` postprocessor into the layout the
schedule's tiling reads, with a preprocessing block that packs it.

* :func:`mark_layout_free` (after fusion, before the tasks are extracted) lists, for every
  fused matrix product, the arguments that are constants of the model. The tasks then differ
  from the plain ones (their structural hash includes the attribute), so their records and
  picks are their own; the library's schedules still transfer, since ``RewriteLayout`` runs
  among the new task's postprocessors after a library trace is replayed.
* :func:`prepack_weights` (after the schedules are applied) splits each packing block into a
  function of its own (``SplitLayoutRewritePreproc``) and folds its call on the constant weight
  (``FoldConstant``): the packed weights are computed once, at compile time.

A 128x768x768 dense layer tuned for 96 trials ran in 0.84 ms with its weight layout-free and
0.95 ms plain (rocketlake, 2 threads, 2026-12-05).
"""

from __future__ import annotations

import tvm

__all__ = [
    "LAYOUT_FREE_DEFAULT",
    "WEIGHTS_ATTR",
    "has_layout_free_buffers",
    "mark_layout_free",
    "prepack_weights",
]

# the module attribute in which prepare_for_inference records whether constant weights are
# layout-free ("prepacked") or read as the model holds them ("plain")
WEIGHTS_ATTR = "ms_meta.weights"
# whether prepare_for_inference marks weights layout-free when not told: One-Shot's BERT-base
# layer ran in 10.50 ms prepacked against 11.41 ms plain with the same schedule library
# (rocketlake, 2 threads, SCHED_FIFO, 2026-12-05; benchmarks/whole_model, "-dense" results)
LAYOUT_FREE_DEFAULT = True


def mark_layout_free(mod: tvm.IRModule) -> tvm.IRModule:
    """List, in the ``layout_free_buffers`` of every matrix-product PrimFunc, the arguments
    that each of its calls passes as a constant (a bound weight, its bias).

    Apply after ``FuseTIR``: the fused function, not the operator it was legalized from, is
    the task that gets a schedule. Only matrix products are marked: a prepacked weight made
    a 3x3 NCHW convolution slower (1.66 against 1.56 ms, :mod:`ms_meta.one_shot.blocked`),
    and the blocked convolutions' weights are packed already. Functions keep their names,
    as Relax's ``AttachAttrLayoutFreeBuffers`` (which marks every function) does not.
    """
    from ms_meta.feature.task import infer_operator_kind

    constant_args = _constant_arguments(mod)
    updates = {}
    for gvar, func in mod.functions.items():
        free = constant_args.get(gvar.name_hint)
        if not free or not isinstance(func, tvm.tirx.PrimFunc):
            continue
        if infer_operator_kind(func) != "dense" or _is_matrix_vector(func):
            continue
        updates[gvar] = func.with_attr("layout_free_buffers", sorted(free))
    for gvar, func in updates.items():
        mod = _with_func(mod, gvar, func)
    return mod


def _is_matrix_vector(func) -> bool:
    """Whether ``func``'s output is one row (a classifier on one sample): every weight is read
    once, so packing it gains nothing, and ResNet-50's 2048-to-1000 classifier, prepacked,
    found no library schedule and ran 5x slower than PyTorch's."""
    try:
        rows = 1
        for extent in list(func.params[-1].shape)[:-1]:
            rows *= int(extent)
    except (AttributeError, IndexError, TypeError, ValueError):
        return False
    return rows == 1


def _constant_arguments(mod: tvm.IRModule) -> dict[str, set[int]]:
    """For every PrimFunc that Relax functions of ``mod`` call with ``call_tir``, the argument
    positions at which every call passes a constant."""
    from tvm import relax

    call_tir = tvm.ir.Op.get("relax.call_tir")
    found: dict[str, set[int]] = {}

    @relax.expr_functor.visitor
    class _Calls(relax.PyExprVisitor):
        def visit_call_(self, call: relax.Call) -> None:
            super().visit_call_(call)
            if call.op != call_tir or not isinstance(call.args[0], tvm.ir.GlobalVar):
                return
            args = call.args[1]
            args = list(args.fields) if isinstance(args, relax.Tuple) else [args]
            constant = {i for i, arg in enumerate(args) if isinstance(arg, tvm.ir.Constant)}
            name = call.args[0].name_hint
            found[name] = found[name] & constant if name in found else constant

    for func in mod.functions.values():
        if isinstance(func, relax.Function):
            _Calls().visit_expr(func)
    return found


def has_layout_free_buffers(mod: tvm.IRModule) -> bool:
    """Whether any PrimFunc of ``mod`` lists layout-free buffers."""
    for func in mod.functions.values():
        if isinstance(func, tvm.tirx.PrimFunc) and func.attrs is not None:
            if len(func.attrs.get("layout_free_buffers", []) or []):
                return True
    return False


def prepack_weights(mod: tvm.IRModule) -> tvm.IRModule:
    """Move the weight packing that ``RewriteLayout`` put into the scheduled functions out to
    functions of their own, and evaluate them on the constant weights at compile time.

    A function whose schedule did not rewrite a layout is left as it is. Weights that are
    still parameters of ``main`` (not bound) are packed at every call instead; One-Shot binds
    them (:func:`~ms_meta.one_shot.relax.prepare_for_inference`).
    """
    from tvm import relax

    packed = tvm.transform.Sequential([
        relax.transform.SplitLayoutRewritePreproc(),
        relax.transform.FoldConstant(),
        relax.transform.DeadCodeElimination(),
    ])(mod)  # fmt: skip
    return _original_names(packed)


# the suffix SplitLayoutRewritePreproc gives a function whose weight packing it split off
_PREPACKED_SUFFIX = "_prepacked"


def _original_names(mod: tvm.IRModule) -> tvm.IRModule:
    """Give the functions ``SplitLayoutRewritePreproc`` renamed (``fused_matmul_add`` became
    ``fused_matmul_add_prepacked``) their names back where the old function is gone: the
    functions a profile names are then the tasks of :func:`~ms_meta.one_shot.prepare_relax`."""
    from tvm import relax

    taken = {gvar.name_hint for gvar in mod.get_global_vars()}
    renamed = False
    for gvar, func in list(mod.functions.items()):
        name = gvar.name_hint
        if not name.endswith(_PREPACKED_SUFFIX) or not isinstance(func, tvm.tirx.PrimFunc):
            continue
        original = name[: -len(_PREPACKED_SUFFIX)]
        if original in taken or (func.attrs is not None and "global_symbol" in func.attrs):
            continue
        mod = _with_func(mod, gvar, func.with_attr("global_symbol", original))
        renamed = True
    return relax.transform.NormalizeGlobalVar()(mod) if renamed else mod


def _with_func(mod: tvm.IRModule, gvar, func) -> tvm.IRModule:
    """A copy of ``mod`` with ``gvar`` bound to ``func`` (``mod`` itself is left as it is)."""
    copy = tvm.IRModule(dict(mod.functions), attrs=mod.attrs, global_infos=mod.global_infos)
    copy.update_func(gvar, func)
    return copy
