"""One-Shot tuning of a Relax model: every TIR task it holds, tuned by the cost model alone.

:func:`prepare_for_inference` binds the weights and rewrites the graph for inference (batch
norm folded into the convolution before it), :func:`prepare_relax` then legalizes and fuses it
exactly as :func:`compile_relax` does before it applies a database, :func:`relax_tasks` extracts
the TIR tasks of the result, and :func:`run_relax` / :func:`tune_relax` search them one by one as
:mod:`ms_meta.one_shot.tir` does and commit every pick to one database.
"""

from __future__ import annotations

import logging
import os

import tvm
from tvm.s_tir import meta_schedule as ms

from ms_meta.errors import MsMetaError
from ms_meta.one_shot.blocked import BLOCKED_DEFAULT, legalize_blocked_conv2d, to_blocked_layout
from ms_meta.one_shot.layout_free import (
    LAYOUT_FREE_DEFAULT,
    WEIGHTS_ATTR,
    mark_layout_free,
    prepack_weights,
)
from ms_meta.one_shot.library import DEFAULT_NEIGHBOURS
from ms_meta.one_shot.result import OneShotResult
from ms_meta.one_shot.run import (
    Library,
    NothingToTuneError,
    OneShotError,
    OneShotRun,
    Task,
    Weights,
    check_static,
    check_target,
    first_line,
    symbolic_dims,
)
from ms_meta.one_shot.settings import SearchSettings
from ms_meta.tuning.measure import MeasureSettings

__all__ = [
    "compile_relax",
    "prepare_for_inference",
    "prepare_relax",
    "relax_tasks",
    "run_relax",
    "tune_relax",
]

logger = logging.getLogger(__name__)


def _as_module(mod, params) -> tvm.IRModule:
    from tvm import relax

    if isinstance(mod, relax.Function):
        mod = tvm.IRModule({"main": mod})
    if not isinstance(mod, tvm.IRModule):
        raise NothingToTuneError(
            f"expected a Relax IRModule or relax.Function, got {type(mod).__name__}"
        )
    if params and "main" not in [gv.name_hint for gv in mod.get_global_vars()]:
        raise NothingToTuneError("params are given, but the module has no 'main' function")
    return mod


def prepare_for_inference(
    mod, params=None, *, blocked: bool | None = None, layout_free: bool | None = None
) -> tvm.IRModule:
    """Bind ``params`` as constants and rewrite training-form operators for inference.

    Batch norm after a convolution is folded into the convolution's weights and a bias
    (``FoldBatchnormToConv2D``): the fused task is then a convolution with a bias epilogue, as
    the schedule library's tasks are, instead of four elementwise operations per output. What
    is left of batch norm, layer norm and the like is decomposed into elementwise operations
    (``DecomposeOpsForInference``) that ``FuseOps`` merges into the kernel before them. With
    ``blocked``, convolutions whose channels split into 16-channel blocks run in the NCHW16c
    layout (:mod:`ms_meta.one_shot.blocked`), their weights transformed at compile time. With
    ``layout_free``, :func:`prepare_relax` marks the constant weights of the matrix products
    layout-free, so that their schedules may prepack them (:mod:`ms_meta.one_shot.layout_free`).
    Idempotent: preparing a prepared module changes nothing.

    Parameters
    ----------
    mod : IRModule or relax.Function
        The Relax model, as imported.
    params : dict of name to Tensor, optional
        Weights to bind to ``main``'s parameters.
    blocked : bool, optional
        Convert convolutions to NCHW16c. Default: the choice made when ``mod`` was prepared
        before (recorded in the module attribute ``ms_meta.layout``), else
        :data:`~ms_meta.one_shot.blocked.BLOCKED_DEFAULT`.
    layout_free : bool, optional
        Let schedules repack constant weights (recorded in the module attribute
        ``ms_meta.weights``: ``"prepacked"`` or ``"plain"``). Default: the choice made when
        ``mod`` was prepared before, else
        :data:`~ms_meta.one_shot.layout_free.LAYOUT_FREE_DEFAULT`.

    Returns
    -------
    IRModule
        The module :func:`prepare_relax` legalizes and fuses.
    """
    from tvm import relax

    mod = _as_module(mod, params)
    try:
        if params:
            mod = relax.transform.BindParams("main", params)(mod)
        mod = tvm.transform.Sequential([
            relax.transform.FoldBatchnormToConv2D(),
            relax.transform.FoldConstant(),
            relax.transform.DecomposeOpsForInference(),
            relax.transform.CanonicalizeBindings(),
        ])(mod)  # fmt: skip
        if blocked is None:  # a module prepared before keeps the layout chosen then
            chosen = (mod.attrs or {}).get(LAYOUT_ATTR)
            blocked = BLOCKED_DEFAULT if chosen is None else str(chosen) == "blocked"
        if layout_free is None:
            chosen = (mod.attrs or {}).get(WEIGHTS_ATTR)
            layout_free = LAYOUT_FREE_DEFAULT if chosen is None else str(chosen) == "prepacked"
        mod = to_blocked_layout(mod) if blocked else mod
        mod = mod.with_attr(LAYOUT_ATTR, "blocked" if blocked else "plain")
        return mod.with_attr(WEIGHTS_ATTR, "prepacked" if layout_free else "plain")
    except MsMetaError:
        raise
    except Exception as err:  # TVM's errors carry a C++ backtrace; keep the message
        raise OneShotError(f"could not prepare the Relax module: {first_line(err)}") from None


# the module attribute in which prepare_for_inference records its layout choice
LAYOUT_ATTR = "ms_meta.layout"


def _prepacked(mod: tvm.IRModule) -> bool:
    """Whether ``mod`` was prepared with layout-free weights."""
    return str((mod.attrs or {}).get(WEIGHTS_ATTR, "plain")) == "prepacked"


def _gelu_with_fast_erf(bb, call):
    """``relax.nn.gelu`` (the exact, erf form) with TVM's polynomial ``fast_erf``: the default
    legalization calls libm's scalar ``erff`` per element, which LLVM cannot vectorize (a
    BERT-base layer spent 7% of its time there). ``fast_erf`` is accurate to a few float32
    ulps; other dtypes keep the default."""
    from tvm import te, tirx, topi
    from tvm.relax.transform.legalize_ops.nn import _nn_gelu

    if call.args[0].ty.dtype != "float32":
        return _nn_gelu(bb, call)

    def gelu(x: te.Tensor) -> te.Tensor:
        erf = topi.fast_erf(x * tirx.const(0.5**0.5, "float32"))
        return x * (tirx.const(0.5, "float32") + erf * tirx.const(0.5, "float32"))

    return bb.call_te(gelu, call.args[0], primfunc_name_hint="gelu")


# operators legalized otherwise than by Relax's default, for speed on CPUs
_LEGALIZE = {"relax.nn.gelu": _gelu_with_fast_erf, "relax.nn.conv2d": legalize_blocked_conv2d}


def prepare_relax(mod, params, target: tvm.target.Target) -> tvm.IRModule:
    """:func:`prepare_for_inference`, then legalize + fuse ``mod`` exactly as
    :func:`compile_relax` does before it applies a database, so that the tasks found here are
    the functions it looks up; constant weights marked layout-free when the module was
    prepared so (:func:`~ms_meta.one_shot.layout_free.mark_layout_free`)."""
    from tvm import relax
    from tvm.relax import pipeline as relax_pipeline

    mod = prepare_for_inference(mod, params)
    try:
        try:
            dispatch = list(relax_pipeline.library_dispatch_passes(target))
        except (ValueError, AttributeError):  # targets without a registered pipeline
            dispatch = []
        fused = tvm.transform.Sequential([
            *dispatch,
            relax.transform.LegalizeOps(customize_legalize_map=_LEGALIZE),
            relax.transform.AnnotateTIROpPattern(),
            relax.transform.FoldConstant(),
            relax.transform.FuseOps(),
            relax.transform.FuseTIR(),
        ])(mod)  # fmt: skip
        return mark_layout_free(fused) if _prepacked(mod) else fused
    except MsMetaError:
        raise
    except Exception as err:  # TVM's errors carry a C++ backtrace; keep the message
        raise OneShotError(
            f"could not legalize and fuse the Relax module: {first_line(err)}"
        ) from None


def compile_relax(database, mod, params=None, target=None):
    """Compile a Relax model with the schedules of ``database`` (from :func:`tune_relax`, or
    any MetaSchedule database of the same tasks).

    The model goes through :func:`prepare_relax`, as in tuning, so every tuned task is found;
    MetaSchedule's own ``compile_relax`` skips :func:`prepare_for_inference` and would miss the
    tasks whose batch norm was folded. Functions the database lacks keep their default schedule.
    Weights that the applied schedules repack are packed at compile time
    (:func:`~ms_meta.one_shot.layout_free.prepack_weights`).

    Parameters
    ----------
    database : Database
        The tuning database.
    mod : IRModule or relax.Function
        The Relax model, as imported.
    params : dict of name to Tensor, optional
        Weights to bind to ``main``'s parameters.
    target : Target, dict, str or None
        As in :func:`tune_relax` (None: this machine's CPU).

    Returns
    -------
    relax.VMExecutable
        Run it with ``relax.VirtualMachine(executable, tvm.cpu())``.
    """
    from tvm import relax

    target = check_target(target)
    prepared = prepare_relax(mod, params, target)
    try:
        with target, database, tvm.transform.PassContext(opt_level=3):
            applied = relax.transform.MetaScheduleApplyDatabase()(prepared)
            if _prepacked(prepared):
                applied = prepack_weights(applied)
            return tvm.compile(applied, target=target)
    except MsMetaError:
        raise
    except Exception as err:  # TVM's errors carry a C++ backtrace; keep the message
        raise OneShotError(f"could not compile the Relax module: {first_line(err)}") from None


def relax_tasks(mod, params, target, op_names: list[str] | None = None) -> list[Task]:
    fused = prepare_relax(mod, params, target)
    extracted = ms.relax_integration.extract_tasks(fused, target)
    tasks, dynamic = [], []
    for task in extracted:
        if op_names and not any(op in task.task_name for op in op_names):
            continue
        if task.mod.attrs and task.mod.attrs.get("tirx.is_scheduled", False):
            continue  # scheduled already (e.g. by a library dispatch): nothing to search
        if symbolic_dims(task.dispatched[0]):
            dynamic.append(task)
            continue  # MetaSchedule's rules and the model need concrete loop extents
        tasks.append(Task(task.task_name, task.dispatched[0], float(task.weight)))
    if dynamic and not tasks:
        check_static(dynamic[0].task_name, dynamic[0].dispatched[0])  # raises
    if dynamic:
        logger.warning("%d tasks with dynamic shapes are left untuned: %s",
                       len(dynamic), ", ".join(t.task_name for t in dynamic))  # fmt: skip
    if not tasks:
        which = f" matching {op_names}" if op_names else ""
        raise NothingToTuneError(
            f"the Relax module has no TIR task to tune{which} (found {len(extracted)} tasks)"
        )
    return tasks


def run_relax(
    mod,
    params,
    target=None,
    work_dir: str | os.PathLike | None = None,
    *,
    weights: Weights = "default",
    library: Library = "default",
    neighbours: int = DEFAULT_NEIGHBOURS,
    verify: int = 0,
    seed: int = 0,
    settings: SearchSettings | None = None,
    cost_model=None,
    allow_other_cpu: bool = False,
    builder: ms.builder.Builder | None = None,
    runner: ms.runner.Runner | None = None,
    measure_settings: MeasureSettings | None = None,
    op_names: list[str] | None = None,
    store: str | os.PathLike | None = "default",
) -> OneShotResult:
    """:func:`tune_relax`, returning the full :class:`~ms_meta.one_shot.result.OneShotResult`
    (per-task scores and timings) instead of the database only."""
    target = check_target(target)
    tasks = relax_tasks(mod, params, target, op_names)
    return OneShotRun(
        target=target, work_dir=work_dir, weights=weights, library=library,
        neighbours=neighbours, verify=verify, seed=seed,
        settings=settings, cost_model=cost_model, allow_other_cpu=allow_other_cpu,
        builder=builder, runner=runner,
        measure_settings=measure_settings, store=store,
    ).run(tasks, "relax")  # fmt: skip


def tune_relax(
    mod,
    params,
    target=None,
    work_dir: str | os.PathLike | None = None,
    *,
    weights: Weights = "default",
    library: Library = "default",
    neighbours: int = DEFAULT_NEIGHBOURS,
    verify: int = 0,
    seed: int = 0,
    settings: SearchSettings | None = None,
    cost_model=None,
    allow_other_cpu: bool = False,
    builder: ms.builder.Builder | None = None,
    runner: ms.runner.Runner | None = None,
    measure_settings: MeasureSettings | None = None,
    op_names: list[str] | None = None,
    store: str | os.PathLike | None = "default",
) -> ms.database.Database:
    """One-shot tuning of every TIR task of a Relax model.

    Tasks are extracted with ``ms.relax_integration.extract_tasks`` after the same
    legalization and fusion ``compile_relax`` applies, searched one by one as in
    :func:`tune_tir`, and committed to one database. Apply it with
    :func:`compile_relax` (``database, mod, params, target``; the *un-fused* ``mod``):
    MetaSchedule's own ``compile_relax`` neither prepares the model nor prepacks the weights,
    so it misses the tasks whose weights are layout-free. Per-task scores and timings:
    :func:`run_relax`, or ``one_shot_summary.json`` in ``work_dir``
    (:func:`~ms_meta.one_shot.store.read_summary`).

    Parameters
    ----------
    mod : IRModule or relax.Function
        The Relax model, as imported (not yet legalized or fused).
    params : dict of name to Tensor, or None
        Weights to bind to ``main``'s parameters (as ``compile_relax`` does).
    op_names : list of str, optional
        Tune only tasks whose name contains one of these.
    store : "default", path or None
        The record store to learn from and record ``verify``'s measurements into, as in
        :func:`tune_tir`.

    Other parameters are those of :func:`tune_tir`. A task whose search fails is logged and
    left untuned (``compile_relax`` then compiles it with its default schedule).
    """
    return run_relax(
        mod, params, target, work_dir, weights=weights, library=library,
        neighbours=neighbours, verify=verify, seed=seed,
        settings=settings, cost_model=cost_model, allow_other_cpu=allow_other_cpu,
        builder=builder, runner=runner,
        measure_settings=measure_settings, op_names=op_names, store=store,
    ).database  # fmt: skip
