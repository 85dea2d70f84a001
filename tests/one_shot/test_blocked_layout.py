"""Convolutions in the NCHW16c layout: which ones are converted, that the compiled model
computes what the plain one does, and that the tasks are blocked convolutions."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.s_tir import meta_schedule as ms
from tvm.script import relax as R

from ms_meta.one_shot.blocked import to_blocked_layout
from ms_meta.one_shot.relax import compile_relax, prepare_for_inference, prepare_relax


def _model() -> tuple[tvm.IRModule, dict[str, np.ndarray]]:
    """A 3-channel stem convolution, then a 16 -> 32 channel convolution with bias and ReLU,
    and a residual-free 32 -> 32 one: the stem's input cannot be split into blocks, the
    others' can."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", R.Tensor((1, 3, 12, 12), "float32"))
    w0 = relax.Var("w0", R.Tensor((16, 3, 3, 3), "float32"))
    w1 = relax.Var("w1", R.Tensor((32, 16, 3, 3), "float32"))
    b1 = relax.Var("b1", R.Tensor((1, 32, 1, 1), "float32"))
    w2 = relax.Var("w2", R.Tensor((32, 32, 1, 1), "float32"))
    with bb.function("main", [x, w0, w1, b1, w2]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.conv2d(x, w0, padding=1))
            y = bb.emit(relax.op.nn.conv2d(y, w1, strides=2, padding=1))
            y = bb.emit(relax.op.nn.relu(relax.op.add(y, b1)))
            y = bb.emit(relax.op.nn.conv2d(y, w2))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    rng = np.random.default_rng(0)
    params = {
        "w0": rng.standard_normal((16, 3, 3, 3)).astype("float32"),
        "w1": rng.standard_normal((32, 16, 3, 3)).astype("float32"),
        "b1": rng.standard_normal((1, 32, 1, 1)).astype("float32"),
        "w2": rng.standard_normal((32, 32, 1, 1)).astype("float32"),
    }
    return bb.get(), {k: tvm.runtime.tensor(v) for k, v in params.items()}


def _layouts(mod: tvm.IRModule) -> list[str]:
    lines = mod.script(show_meta=False).splitlines()
    return [ln.split('data_layout="')[1].split('"')[0] for ln in lines if "R.nn.conv2d(" in ln]


def test_convolutions_whose_channels_split_into_blocks_are_blocked_and_others_kept():
    mod, params = _model()
    prepared = prepare_for_inference(mod, params, blocked=True)
    # the stem reads its 3 channels as one block and writes 16-channel blocks
    assert _layouts(prepared) == ["NCHW3c", "NCHW16c", "NCHW16c"]
    # the weights' layout transforms were folded into constants at compile time
    assert prepared.script(show_meta=False).count("R.layout_transform(") == 2  # data in, out
    assert _layouts(prepare_for_inference(mod, params, blocked=False)) == ["NCHW"] * 3
    assert _layouts(to_blocked_layout(prepared)) == _layouts(prepared)  # idempotent


def test_blocked_model_computes_what_the_plain_one_does(target):
    mod, params = _model()
    x = np.random.default_rng(1).standard_normal((1, 3, 12, 12)).astype("float32")
    outputs = []
    for blocked in (False, True):
        prepared = prepare_for_inference(mod, params, blocked=blocked)
        executable = compile_relax(ms.database.MemoryDatabase(), prepared, None, target)
        vm = relax.VirtualMachine(executable, tvm.cpu())
        outputs.append(vm["main"](tvm.runtime.tensor(x)).numpy())
    assert outputs[1].shape == (1, 32, 6, 6)
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-4, atol=1e-4)


def test_blocked_convolutions_are_tasks_of_their_own(target):
    mod, params = _model()
    prepared = prepare_for_inference(mod, params, blocked=True)
    tasks = ms.relax_integration.extract_tasks(prepare_relax(prepared, None, target), target)
    names = sorted(t.task_name for t in tasks)
    assert sum("conv2d_NCHWc" in n for n in names) == 3, names  # the stem's too
    assert any(n.startswith("fused_conv2d_NCHWc") and "relu" in n for n in names), names


@pytest.mark.parametrize(("groups", "layout"), [(2, "NCHW16c"), (4, "NCHW"), (32, "NCHW16c")])
def test_grouped_convolutions_are_blocked_when_each_group_splits_into_blocks(
    groups, layout, target
):
    """32 channels in 2 groups of 16 are blocked, and depthwise ones; 4 groups of 8 are not."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", R.Tensor((1, 32, 8, 8), "float32"))
    w = relax.Var("w", R.Tensor((32, 32 // groups, 3, 3), "float32"))
    with bb.function("main", [x, w]):
        with bb.dataflow():
            y = bb.emit_output(relax.op.nn.conv2d(x, w, padding=1, groups=groups))
        bb.emit_func_output(y)
    rng = np.random.default_rng(2)
    params = {"w": tvm.runtime.tensor(rng.standard_normal((32, 32 // groups, 3, 3), "float32"))}
    data = tvm.runtime.tensor(rng.standard_normal((1, 32, 8, 8), "float32"))
    outputs = []
    for blocked in (False, True):
        prepared = prepare_for_inference(bb.get(), params, blocked=blocked)
        assert _layouts(prepared) == [layout if blocked else "NCHW"]
        executable = compile_relax(ms.database.MemoryDatabase(), prepared, None, target)
        outputs.append(relax.VirtualMachine(executable, tvm.cpu())["main"](data).numpy())
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-4, atol=1e-4)


def _stem_model(also_plain: bool) -> tuple[tvm.IRModule, dict]:
    """A first convolution with bias, ReLU and max pooling, as ResNet's, feeding a 16-channel
    convolution; with ``also_plain`` the pooled result is also an output in NCHW."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", R.Tensor((1, 3, 20, 20), "float32"))
    w0 = relax.Var("w0", R.Tensor((16, 3, 7, 7), "float32"))
    b0 = relax.Var("b0", R.Tensor((1, 16, 1, 1), "float32"))
    w1 = relax.Var("w1", R.Tensor((16, 16, 3, 3), "float32"))
    with bb.function("main", [x, w0, b0, w1]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.conv2d(x, w0, strides=2, padding=3))
            y = bb.emit(relax.op.nn.relu(relax.op.add(y, b0)))
            pooled = bb.emit(relax.op.nn.max_pool2d(y, 3, strides=2, padding=1))
            z = bb.emit(relax.op.nn.conv2d(pooled, w1, padding=1))
            out = bb.emit_output(relax.Tuple([z, pooled]) if also_plain else z)
        bb.emit_func_output(out)
    rng = np.random.default_rng(3)
    shapes = {"w0": (16, 3, 7, 7), "b0": (1, 16, 1, 1), "w1": (16, 16, 3, 3)}
    params = {
        k: tvm.runtime.tensor(rng.standard_normal(v).astype("float32")) for k, v in shapes.items()
    }
    return bb.get(), params


def test_first_convolution_writes_blocks_through_bias_activation_and_pooling(target):
    mod, params = _stem_model(also_plain=False)
    data = tvm.runtime.tensor(np.random.default_rng(4).standard_normal((1, 3, 20, 20), "float32"))
    outputs = []
    for blocked in (False, True):
        prepared = prepare_for_inference(mod, params, blocked=blocked)
        executable = compile_relax(ms.database.MemoryDatabase(), prepared, None, target)
        outputs.append(relax.VirtualMachine(executable, tvm.cpu())["main"](data).numpy())
    blocked_text = prepared.script(show_meta=False)
    assert _layouts(prepared) == ["NCHW3c", "NCHW16c"]
    assert 'layout="NCHW16c", out_layout="NCHW16c"' in blocked_text  # the pooling follows
    # one transform in (a reshape of the 3 channels) and one out: none after the stem
    assert blocked_text.count("R.layout_transform(") == 2
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-4, atol=1e-4)


def test_first_convolution_whose_result_is_also_used_plain_keeps_its_layout():
    mod, params = _stem_model(also_plain=True)
    assert _layouts(prepare_for_inference(mod, params, blocked=True)) == ["NCHW", "NCHW16c"]
