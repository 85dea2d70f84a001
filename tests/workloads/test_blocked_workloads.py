"""conv2d_nchwc workloads: the blocked convolutions a network prepared with ``blocked=True``
runs, as tasks the collector can measure."""

from __future__ import annotations

import pytest

from ms_meta.feature.task import infer_operator_kind
from ms_meta.workloads import resolve, resolve_one
from ms_meta.workloads.spec import WorkloadSpecError


def test_a_blocked_convolution_builds_on_16_channel_blocks():
    workload = resolve_one("conv2d_nchwc:1,32,14,14,64,3,3,1,1")
    inputs, outputs = workload.shapes
    assert [*inputs, *outputs] == [(1, 2, 14, 14, 16), (4, 2, 3, 3, 16, 16), (1, 4, 14, 14, 16)]
    assert workload.flops == 2 * 64 * 14 * 14 * 32 * 9
    assert infer_operator_kind(workload.build()) == "conv2d_nchw"


def test_first_convolution_reads_all_its_channels_as_one_block():
    workload = resolve_one("conv2d_nchwc:1,3,224,224,64,7,7,2,3")
    inputs, outputs = workload.shapes
    assert [*inputs, *outputs] == [(1, 1, 224, 224, 3), (4, 1, 7, 7, 3, 16), (1, 4, 112, 112, 16)]
    assert workload.flops == 2 * 64 * 112 * 112 * 3 * 49


def test_output_channels_that_do_not_split_into_blocks_are_refused():
    with pytest.raises(WorkloadSpecError, match="multiple of 16"):
        resolve_one("conv2d_nchwc:1,16,28,28,24,3,3,1,1")


def test_blocked_presets_hold_the_blockable_convolutions_only():
    blocked = [w.spec for w in resolve(["resnet18-blocked"])]
    assert len(blocked) == 11 and all(s.startswith("conv2d_nchwc:") for s in blocked)
    assert "conv2d_nchwc:1,512,7,7,512,3,3,1,1" in blocked
    assert "conv2d_nchwc:1,3,224,224,64,7,7,2,3" in blocked  # the stem writes blocks
