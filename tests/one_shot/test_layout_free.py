"""Prepacked weights: which functions get layout-free weights, that the packing is folded into
constants at compile time, and that the compiled model computes what the plain one does."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.s_tir import meta_schedule as ms
from tvm.script import relax as R

from ms_meta.one_shot.layout_free import WEIGHTS_ATTR, has_layout_free_buffers, prepack_weights
from ms_meta.one_shot.relax import (
    compile_relax,
    prepare_for_inference,
    prepare_relax,
    relax_tasks,
)

TOKENS, HIDDEN, FFN = 8, 32, 64


def _model() -> tuple[tvm.IRModule, dict[str, tvm.runtime.Tensor]]:
    """A BERT-like block in small: attention-like products of activations (no weight), a
    dense layer with bias and GELU, and a second dense layer with bias."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", R.Tensor((TOKENS, HIDDEN), "float32"))
    w1 = relax.Var("w1", R.Tensor((HIDDEN, FFN), "float32"))
    b1 = relax.Var("b1", R.Tensor((FFN,), "float32"))
    w2 = relax.Var("w2", R.Tensor((FFN, HIDDEN), "float32"))
    b2 = relax.Var("b2", R.Tensor((HIDDEN,), "float32"))
    with bb.function("main", [x, w1, b1, w2, b2]):
        with bb.dataflow():
            scores = bb.emit(relax.op.matmul(x, relax.op.permute_dims(x)))
            mixed = bb.emit(relax.op.matmul(relax.op.nn.softmax(scores), x))
            y = bb.emit(relax.op.add(relax.op.matmul(mixed, w1), b1))
            y = bb.emit(relax.op.nn.gelu(y))
            y = bb.emit(relax.op.add(relax.op.matmul(y, w2), b2))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    rng = np.random.default_rng(0)
    params = {
        "w1": rng.standard_normal((HIDDEN, FFN)).astype("float32") * 0.1,
        "b1": rng.standard_normal((FFN,)).astype("float32"),
        "w2": rng.standard_normal((FFN, HIDDEN)).astype("float32") * 0.1,
        "b2": rng.standard_normal((HIDDEN,)).astype("float32"),
    }
    mod = bb.get()
    mod["main"] = mod["main"].with_attr("num_input", 1)
    return mod, {k: tvm.runtime.tensor(v) for k, v in params.items()}


def _layout_free(mod: tvm.IRModule) -> dict[str, list[int]]:
    found = {}
    for gvar, func in mod.functions.items():
        if isinstance(func, tvm.tirx.PrimFunc) and func.attrs is not None:
            free = func.attrs.get("layout_free_buffers")
            if free is not None:
                found[gvar.name_hint] = [int(i) for i in free]
    return found


def _sampled_database(prepared: tvm.IRModule, target) -> ms.database.Database:
    """A database holding, for every matrix product, one schedule sampled from MetaSchedule's
    design space and post-processed (``RewriteLayout`` among the postprocessors), as a One-Shot
    pick is; no measurement."""
    database = ms.database.MemoryDatabase()
    for task in relax_tasks(prepared, None, target):
        if "matmul" not in task.name:
            continue
        context = ms.TuneContext(mod=task.mod, target=target, space_generator="post-order-apply",
                                 task_name=task.name, rand_state=1)  # fmt: skip
        sch = context.generate_design_space()[0]
        for postproc in context.space_generator.postprocs:
            assert postproc.apply(sch), (task.name, postproc)
        workload = database.commit_workload(context.mod)
        database.commit_tuning_record(
            ms.database.TuningRecord(sch.trace, workload, [1e-3], target,
                                     ms.arg_info.ArgInfo.from_prim_func(context.mod["main"]))
        )  # fmt: skip
    return database


def test_only_matrix_products_with_constant_weights_get_layout_free_buffers(target):
    mod, params = _model()
    fused = prepare_relax(prepare_for_inference(mod, params, layout_free=True), None, target)
    free = _layout_free(fused)
    # the two dense layers, their weight (1) and bias (2); the attention products read no
    # constant and keep their layout
    assert sorted(free) == ["fused_matmul2_add_gelu", "fused_matmul3_add1"], free
    assert all(v == [1, 2] for v in free.values()), free
    plain = prepare_relax(prepare_for_inference(mod, params, layout_free=False), None, target)
    assert not has_layout_free_buffers(plain)


def test_weights_choice_is_recorded_and_kept_when_prepared_again():
    mod, params = _model()
    prepared = prepare_for_inference(mod, params, layout_free=False)
    assert str(prepared.attrs[WEIGHTS_ATTR]) == "plain"
    assert str(prepare_for_inference(prepared).attrs[WEIGHTS_ATTR]) == "plain"
    prepacked = prepare_for_inference(mod, params, layout_free=True)
    assert str(prepare_for_inference(prepacked).attrs[WEIGHTS_ATTR]) == "prepacked"


def test_packing_is_folded_into_constants_at_compile_time(target):
    mod, params = _model()
    prepared = prepare_for_inference(mod, params, layout_free=True)
    database = _sampled_database(prepared, target)
    with target, database, tvm.transform.PassContext(opt_level=3):
        applied = relax.transform.MetaScheduleApplyDatabase()(prepare_relax(prepared, None, target))
    assert "layout_rewrite_preproc" in applied.script(show_meta=False)
    packed = prepack_weights(applied)
    text = packed.script(show_meta=False)
    assert "layout_rewrite_preproc" not in text
    # the dense layers now read weights of another shape than [K, N]: the packed constants
    for name in ("fused_matmul2_add_gelu", "fused_matmul3_add1"):
        weight = packed[name].params[1]
        assert [int(d) for d in weight.shape] not in ([HIDDEN, FFN], [FFN, HIDDEN]), name


def test_prepacked_model_computes_what_the_plain_one_does(target):
    mod, params = _model()
    x = np.random.default_rng(1).standard_normal((TOKENS, HIDDEN)).astype("float32")
    outputs = {}
    for layout_free in (False, True):
        prepared = prepare_for_inference(mod, params, layout_free=layout_free)
        executable = compile_relax(_sampled_database(prepared, target), prepared, None, target)
        vm = relax.VirtualMachine(executable, tvm.cpu())
        outputs[layout_free] = vm["main"](tvm.runtime.tensor(x)).numpy()
    assert outputs[True].shape == (TOKENS, HIDDEN)
    np.testing.assert_allclose(outputs[True], outputs[False], rtol=1e-4, atol=1e-4)


def test_a_matrix_vector_product_keeps_its_weight_layout(target):
    """A classifier on one sample reads each weight once: nothing to gain from packing."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", R.Tensor((1, HIDDEN), "float32"))
    w = relax.Var("w", R.Tensor((HIDDEN, FFN), "float32"))
    b = relax.Var("b", R.Tensor((FFN,), "float32"))
    with bb.function("main", [x, w, b]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.add(relax.op.matmul(x, w), b))
        bb.emit_func_output(out)
    rng = np.random.default_rng(1)
    params = {
        "w": tvm.runtime.tensor(rng.standard_normal((HIDDEN, FFN)).astype("float32")),
        "b": tvm.runtime.tensor(rng.standard_normal((FFN,)).astype("float32")),
    }
    fused = prepare_relax(prepare_for_inference(bb.get(), params, layout_free=True), None, target)
    assert not has_layout_free_buffers(fused)
