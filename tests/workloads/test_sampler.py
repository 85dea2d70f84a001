"""The shape sampler: deterministic, distinct, bounded, buildable tasks of every kind."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import tvm_ffi

from ms_meta.errors import WorkloadSpecError
from ms_meta.workloads import NAMED, PRESETS, parse_spec, resolve, resolve_one
from ms_meta.workloads.sampler import (
    KIND_WEIGHTS,
    MAX_SAMPLED_BYTES,
    MAX_SAMPLED_FLOPS,
    SamplerLimits,
    parse_sampled_spec,
    sample_workloads,
)

COUNT = 300  # enough draws for every kind, conv kernel size and stride to appear


@pytest.fixture(scope="module")
def sampled():
    return sample_workloads(COUNT, seed=7)


def test_same_seed_gives_the_same_tasks_and_a_longer_list_extends_a_shorter_one(sampled):
    assert [w.spec for w in sample_workloads(COUNT, seed=7)] == [w.spec for w in sampled]
    assert [w.spec for w in sample_workloads(40, seed=7)] == [w.spec for w in sampled[:40]]
    other = {w.spec for w in sample_workloads(40, seed=8)}
    assert len(other & {w.spec for w in sampled[:40]}) < 10


def test_tasks_are_structurally_distinct_and_none_is_a_named_task(sampled):
    hashes = [tvm_ffi.structural_hash(w.build()["main"]) for w in sampled]
    assert len(set(hashes)) == len(sampled)
    layers = (*NAMED.values(), *(spec for preset in PRESETS.values() for spec in preset))
    named = {parse_spec(s).spec for s in layers}
    named_hashes = {tvm_ffi.structural_hash(parse_spec(s).build()["main"]) for s in named}
    assert not named & {w.spec for w in sampled}
    assert not named_hashes & set(hashes)


def test_excluded_tasks_are_left_out(sampled):
    again = sample_workloads(20, seed=7, exclude=sampled[:5])
    assert not {w.spec for w in sampled[:5]} & {w.spec for w in again}
    assert [w.spec for w in again[:10]] == [w.spec for w in sampled[5:15]]


def test_every_task_builds_within_the_limits_and_round_trips_its_spec(sampled):
    for workload in sampled:
        mod = workload.build()
        assert [gv.name_hint for gv in mod.get_global_vars()] == ["main"]
        assert workload.flops <= MAX_SAMPLED_FLOPS, workload.spec
        inputs, outputs = workload.shapes
        assert 4 * sum(math.prod(s) for s in (*inputs, *outputs)) <= MAX_SAMPLED_BYTES
        assert resolve_one(workload.name) == workload


def test_every_kind_kernel_size_stride_and_matrix_shape_is_drawn(sampled):
    ops = Counter(w.op for w in sampled)
    assert set(ops) == set(KIND_WEIGHTS)
    convs = [w.params for w in sampled if w.op in ("conv2d_nchw", "conv2d_bias_relu")]
    assert {p[5] for p in convs} == set(range(1, 8))
    assert {p[7] for p in convs} == {1, 2}
    grouped = [w.params for w in sampled if w.op == "group_conv2d_nchw"]
    assert all(p[1] % p[9] == 0 and p[4] % p[9] == 0 for p in grouped)
    dense = [w.params for w in sampled if w.op in ("dense", "matmul_bias")]
    assert any(m == 1 for m, _, _ in dense)  # GEMV
    assert any(m >= 256 and n <= 64 for m, n, _ in dense)  # tall-skinny
    channels = [p[1] for p in convs if p[1] > 4]
    assert sum(c % 8 == 0 for c in channels) > 0.6 * len(channels)
    assert any(c % 8 for c in channels)  # and some odd counts


def test_tighter_limits_bound_every_task():
    limits = SamplerLimits(max_flops=1e6)
    assert all(w.flops <= 1e6 for w in sample_workloads(30, seed=1, limits=limits))


def test_sampled_pseudo_spec_expands_in_resolve():
    assert [w.spec for w in resolve(["sampled:12:7"])] == [
        w.spec for w in sample_workloads(12, seed=7)
    ]
    assert parse_sampled_spec("sampled:5") == (5, 0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sampled:x:1", "must be integers"),
        ("sampled:0:1", "COUNT must be >= 1"),
        ("sampled:1:2:3", "expected sampled:COUNT"),
    ],
)
def test_malformed_sampled_spec_is_refused_in_one_line(text, message):
    with pytest.raises(WorkloadSpecError, match=message) as err:
        resolve([text])
    assert "\n" not in str(err.value)


def test_a_sampled_set_is_not_one_workload():
    with pytest.raises(WorkloadSpecError, match="use resolve"):
        resolve_one("sampled:3:0")


def test_grouped_convolution_checks_divisibility():
    with pytest.raises(WorkloadSpecError, match="divisible by groups"):
        parse_spec("group_conv2d_nchw:1,30,14,14,32,3,3,1,1,4")
    w = parse_spec("group_conv2d_nchw:1,32,14,14,64,3,3,1,1,4")
    assert w.flops == 2 * 64 * 14 * 14 * 8 * 9
    assert w.kind == "conv2d_nchw"


def test_the_version_1_stream_is_pinned():
    # Collections are resumed by name: a change to the stream must come with a new
    # SAMPLER_VERSION (and this list), never silently.
    from ms_meta.workloads.sampler import SAMPLER_VERSION

    assert SAMPLER_VERSION == 1
    assert [w.spec for w in sample_workloads(6, seed=0)] == [
        "batch_matmul:2,307,307,128",
        "softmax:1,6,14,14",
        "dense:38,64,2560",
        "conv2d_bias_relu:1,288,35,35,1024,1,1,2,0",
        "batch_matmul:2,64,14,36",
        "batch_matmul:32,32,77,128",
    ]
