"""The workload library: specs, presets, named tasks and their TE definitions."""

from __future__ import annotations

import json
import math
import re

import pytest

from ms_meta.errors import WorkloadSpecError
from ms_meta.workloads import NAMED, OPERATORS, PRESETS, all_named, parse_spec, resolve, resolve_one
from ms_meta.workloads.spec import MAX_FLOPS, MAX_TENSOR_BYTES

from ..conftest import SEED_RECORDS


def test_spec_round_trip_and_names():
    w = parse_spec("conv2d_nchw:1,64,56,56,64,3,3,1,1")
    assert w.spec == "conv2d_nchw:1,64,56,56,64,3,3,1,1"
    assert w.name == "conv2d_nchw_1_64_56_56_64_3_3_1_1"
    assert resolve_one(w.name) == w
    assert w.flops == 2 * 64 * 56 * 56 * 64 * 9
    assert resolve_one("r18_c1_3x3_64") == w
    assert "r18_c1_3x3_64" in resolve_one(w.spec).aliases


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("conv2d_nchw:1,64,56", "expected 9 fields conv2d_nchw:N,C,H,W,K,R,S,stride,pad"),
        ("dense:128,x,768", "fields must be integers"),
        ("dense:0,768,768", "field M must be >= 1"),
        ("nosuchop:1,2", "unknown operator 'nosuchop'"),
        ("dense", "unknown workload"),
        ("conv2d_nchw:1,3,2,2,8,7,7,1,0", "kernel is larger than the padded input"),
    ],
)
def test_malformed_spec_names_expected_fields(spec, message):
    with pytest.raises(WorkloadSpecError, match=message.replace("(", r"\(")):
        resolve_one(spec)


def test_presets_cover_models_and_operators():
    assert {"resnet18", "resnet50", "mobilenetv2", "bert-base"} <= set(PRESETS)
    resnet18 = resolve(["resnet18"])
    assert len(resnet18) == len(set(w.spec for w in resnet18)) == 14
    kinds = {w.op for w in all_named()}
    # grouped convolutions come only from the shape sampler (tests/workloads/test_sampler.py)
    assert kinds == set(OPERATORS) - {"group_conv2d_nchw"}


def test_every_operator_builds_a_primfunc():
    for op in OPERATORS.values():
        params = {"softmax": (4, 16), "group_conv2d_nchw": (1, 32, 14, 14, 32, 3, 3, 1, 1, 4)}.get(
            op.name
        )
        spec = None if params else next(w for w in all_named() if w.op == op.name)
        mod = (parse_spec(f"{op.name}:{','.join(map(str, params))}") if params else spec).build()
        assert "main" in [gv.name_hint for gv in mod.get_global_vars()]


def test_named_tasks_match_the_seed_records_structurally():
    import tvm_ffi
    from tvm.s_tir import meta_schedule as ms

    # The fixture holds a seed task of every operator kind in NAMED, each named by its alias.
    aliases = sorted(p.parent.name for p in SEED_RECORDS.glob("*/database_workload.json"))
    assert set(aliases) <= set(NAMED)
    assert {resolve_one(a).op for a in aliases} == {resolve_one(a).op for a in NAMED}
    for alias in aliases:
        line = (SEED_RECORDS / alias / "database_workload.json").read_text().splitlines()[0]
        seed = ms.database.Workload.from_json(json.loads(line))
        assert tvm_ffi.structural_equal(resolve_one(alias).build(), seed.mod), alias


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("dense:100000,100000,100000", "float32 tensors take 111.8 GiB, the limit is 4 GiB"),
        ("softmax:100000,100000", "the limit is 4 GiB"),
        ("conv2d_nchw:1,1024,256,256,1024,9,9,1,4", "1.11e+13 FLOPs, the limit is 1e+13"),
    ],
)
def test_workloads_too_large_to_tune_are_refused_with_the_limit(spec, message):
    with pytest.raises(WorkloadSpecError, match=re.escape(message)):
        resolve_one(spec)


def test_the_largest_shipped_workloads_are_within_the_limits():
    for workload in all_named():
        inputs, outputs = workload.shapes
        nbytes = 4 * sum(math.prod(shape) for shape in [*inputs, *outputs])
        assert nbytes <= MAX_TENSOR_BYTES and workload.flops <= MAX_FLOPS, workload.spec
