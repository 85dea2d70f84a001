"""Depthwise convolutions in the NCHW16c layout: an inverted residual block (1x1 expansion,
3x3 depthwise, 1x1 projection, each with bias and ReLU6) stays blocked from end to end,
computes what eager PyTorch does, and its depthwise task is the ``depthwise_conv2d_nchwc``
workload of the same shape."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tvm
from torch import nn
from tvm import relax
from tvm.s_tir import meta_schedule as ms

from ms_meta.feature.task import infer_operator_kind
from ms_meta.networks import import_torch_module
from ms_meta.one_shot.library import task_signature
from ms_meta.one_shot.relax import compile_relax, prepare_for_inference, prepare_relax
from ms_meta.workloads import resolve, resolve_one
from ms_meta.workloads.spec import WorkloadSpecError


def _inverted_residual() -> tuple[nn.Module, torch.Tensor]:
    """16 -> 32 channels 1x1, batch norm, ReLU6; 32-channel 3x3 depthwise with stride 2,
    batch norm, ReLU6; 32 -> 16 1x1 and batch norm: MobileNetV2's block, small."""
    torch.manual_seed(0)

    def bn(c):
        layer = nn.BatchNorm2d(c)
        layer.running_mean.uniform_(-0.5, 0.5)
        layer.running_var.uniform_(0.5, 1.5)
        layer.weight.data.uniform_(0.5, 1.5)
        layer.bias.data.uniform_(-0.5, 0.5)
        return layer

    block = nn.Sequential(
        nn.Conv2d(16, 32, 1, bias=False), bn(32), nn.ReLU6(),
        nn.Conv2d(32, 32, 3, stride=2, padding=1, groups=32, bias=False), bn(32), nn.ReLU6(),
        nn.Conv2d(32, 16, 1, bias=False), bn(16),
    ).eval()  # fmt: skip
    return block, torch.randn(1, 16, 14, 14)


def _conv_layouts(mod: tvm.IRModule) -> list[tuple[str, str]]:
    lines = mod.script(show_meta=False).splitlines()
    found = []
    for line in lines:
        if "R.nn.conv2d(" in line:
            data = line.split('data_layout="')[1].split('"')[0]
            groups = line.split("groups=")[1].split(",")[0]
            found.append((data, groups))
    return found


def test_inverted_residual_block_stays_blocked_from_end_to_end():
    block, x = _inverted_residual()
    mod, params = import_torch_module(block, (x,))
    prepared = prepare_for_inference(mod, params, blocked=True)
    assert _conv_layouts(prepared) == [("NCHW16c", "1"), ("NCHW16c", "32"), ("NCHW16c", "1")]
    text = prepared.script(show_meta=False)
    assert 'kernel_layout="OIHW1i16o"' in text
    assert text.count("R.layout_transform(") == 2  # the input in, the output out
    # both ReLU6 run on blocks, so each fuses into its convolution
    assert text.count("R.clip(") == 2 and "R.Tensor((1, 2, 7, 7, 16)" in text


def test_blocked_depthwise_block_computes_what_eager_pytorch_does(target):
    block, x = _inverted_residual()
    with torch.no_grad():
        expected = block(x).numpy()
    mod, params = import_torch_module(block, (x,))
    prepared = prepare_for_inference(mod, params, blocked=True)
    executable = compile_relax(ms.database.MemoryDatabase(), prepared, None, target)
    got = relax.VirtualMachine(executable, tvm.cpu())["main"](tvm.runtime.tensor(x.numpy()))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-4)


def test_depthwise_task_is_the_blocked_depthwise_workload_with_its_epilogue(target):
    block, x = _inverted_residual()
    mod, params = import_torch_module(block, (x,))
    fused = prepare_relax(prepare_for_inference(mod, params, blocked=True), None, target)
    tasks = ms.relax_integration.extract_tasks(fused, target)
    (task,) = [t for t in tasks if "depthwise_conv2d_NCHWc" in t.task_name]
    assert "clip" in task.task_name  # ReLU6 fused into the convolution
    assert infer_operator_kind(task.dispatched[0]) == "depthwise_conv2d"
    workload = resolve_one("depthwise_conv2d_nchwc:1,32,14,14,3,3,2,1").build()
    assert infer_operator_kind(workload) == "depthwise_conv2d"
    # the same main block: the same loop extents, the library's test for an exact match
    assert task_signature(task.dispatched[0])[-7:] == task_signature(workload)[-7:]


def test_blocked_depthwise_workload_shapes_and_refusals():
    workload = resolve_one("depthwise_conv2d_nchwc:1,96,112,112,3,3,2,1")
    inputs, outputs = workload.shapes
    assert [*inputs, *outputs] == [(1, 6, 112, 112, 16), (6, 1, 3, 3, 1, 16), (1, 6, 56, 56, 16)]
    assert workload.flops == 2 * 96 * 56 * 56 * 9
    with pytest.raises(WorkloadSpecError, match="multiple of 16"):
        resolve_one("depthwise_conv2d_nchwc:1,24,56,56,3,3,1,1")


def test_mobilenet_blocked_preset_lists_depthwise_then_blocked_convolutions():
    specs = [w.spec for w in resolve(["mobilenet-v2-blocked"])]
    depthwise = [s for s in specs if s.startswith("depthwise_conv2d_nchwc:")]
    assert len(depthwise) == 10 and specs[:10] == depthwise
    assert "conv2d_nchwc:1,24,56,56,144,1,1,1,0" in specs  # 24 channels in as one block
    assert not any(",24,1,1,1,0" in s for s in specs)  # 24 channels out are not blocked


def test_grouped_convolution_with_one_channel_per_group_is_depthwise():
    assert infer_operator_kind(resolve_one("group_conv2d_nchw:1,32,28,28,32,3,3,1,1,32").build()) \
        == "depthwise_conv2d"  # fmt: skip
    assert infer_operator_kind(resolve_one("group_conv2d_nchw:1,64,28,28,64,3,3,1,1,4").build()) \
        == "conv2d_nchw"  # fmt: skip
