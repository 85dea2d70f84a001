"""The per-operator gap table on the registry's small conv net, with real TVM and torch."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from ms_meta.bench.gap import (
    build_rows,
    cpu_peak_gflops,
    describe_functions,
    format_gap_table,
    match_torch_op,
    operator_kind,
    profile_tvm,
    time_torch_ops,
)
from ms_meta.cli.main import cli

NETWORK = "small-convnet"


def test_torch_ops_are_captured_once_each_with_their_flops():
    ops = time_torch_ops(NETWORK, threads=1, runs=2, warmup=1)["ops"]
    assert sorted(op["op"] for op in ops) == ["conv2d", "conv2d", "linear"]
    first = next(op for op in ops if op["arg_shapes"][0] == [1, 3, 32, 32])
    # 8 output channels of 32x32, each a 3x3x3 window: 2 flops per multiply-add
    assert first["flops"] == 2 * 8 * 32 * 32 * 3 * 3 * 3
    assert first["out_shape"] == [1, 8, 32, 32] and first["calls"] == 1
    assert all(op["us_per_call"] > 0 for op in ops)


def test_tvm_functions_map_to_tasks_and_to_the_same_torch_op(target, tmp_path):
    from tvm.s_tir import meta_schedule as ms

    from ms_meta.networks import bind_for_inference, import_model
    from ms_meta.one_shot import compile_relax, prepare_relax

    mod, params, inputs = import_model(NETWORK)
    bound = bind_for_inference(mod, params)
    prepared = prepare_relax(bound, None, target)
    described = describe_functions(prepared, target)
    convs = {name: d for name, d in described.items() if d["kind"] == "conv2d"}
    assert len(convs) == 2 and all(d["task"] and d["flops"] > 0 for d in convs.values())
    library = tmp_path / "model.so"
    compile_relax(ms.database.MemoryDatabase(), bound, None, target).export_library(str(library))
    profile = profile_tvm(library, [x.numpy() for x in inputs], runs=2, warmup=1)
    assert set(convs) <= set(profile["functions"])
    assert all(profile["functions"][name]["calls_per_run"] == 1 for name in convs)
    ops = time_torch_ops(NETWORK, threads=1, runs=2, warmup=1)["ops"]
    rows, builtin_share = build_rows(profile, described, {}, ops)
    by_kind = {}
    for row in rows:
        by_kind.setdefault(row["kind"], []).append(row)
    assert [r["torch_op"] for r in by_kind["conv2d"]] == ["conv2d", "conv2d"]
    assert by_kind["matmul"][0]["torch_op"] == "linear"  # the weight is transposed in TVM
    assert all(r["origin"] == "never tuned" for r in rows)  # no One-Shot outcomes given
    assert sum(r["share"] for r in rows) + builtin_share == pytest.approx(1.0)
    assert rows == sorted(rows, key=lambda r: -r["share"])


def test_torch_op_matching_needs_kind_and_output_shape():
    conv = {"op": "conv2d", "arg_shapes": [[1, 64, 56, 56], [128, 64, 1, 1]],
            "out_shape": [1, 128, 28, 28]}  # fmt: skip
    other = {"op": "conv2d", "arg_shapes": [[1, 64, 56, 56], [128, 64, 3, 3]],
             "out_shape": [1, 128, 28, 28]}  # fmt: skip
    shapes = [[1, 64, 56, 56], [128, 64, 1, 1], [1, 128, 1, 1], [1, 128, 28, 28]]
    assert match_torch_op("conv2d", shapes, [other, conv]) is conv
    assert match_torch_op("matmul", shapes, [conv]) is None
    assert match_torch_op("elementwise/other", shapes, [conv]) is None
    # TVM's frontend drops the unit batch dimension around a linear layer and transposes W
    linear = {"op": "linear", "arg_shapes": [[1, 128, 3072], [768, 3072], [768]],
              "out_shape": [1, 128, 768]}  # fmt: skip
    tvm_shapes = [[128, 3072], [3072, 768], [768], [128, 768]]
    assert match_torch_op("matmul", tvm_shapes, [conv, linear]) is linear
    assert operator_kind("fused_conv2d3_add_relu") == "conv2d"
    assert operator_kind("fused_NT_matmul1_add") == "matmul"


def test_prepacked_matrix_product_matches_by_its_data_and_output():
    qkv = {"op": "linear", "arg_shapes": [[1, 128, 768], [768, 768], [768]],
           "out_shape": [1, 128, 768]}  # fmt: skip
    ffn1 = {"op": "linear", "arg_shapes": [[1, 128, 768], [3072, 768], [3072]],
            "out_shape": [1, 128, 3072]}  # fmt: skip
    ffn2 = {"op": "linear", "arg_shapes": [[1, 128, 3072], [768, 3072], [768]],
            "out_shape": [1, 128, 768]}  # fmt: skip
    ops = [qkv, ffn1, ffn2]
    # prepacked weights and biases keep none of the plain shapes
    assert (
        match_torch_op("matmul", [[128, 768], [8, 3, 16, 4, 48, 32], [8, 3, 128], [128, 3072]], ops)
        is ffn1
    )
    assert (
        match_torch_op("matmul", [[128, 3072], [12, 64, 4, 48, 16], [12, 64], [128, 768]], ops)
        is ffn2
    )
    assert (
        match_torch_op("matmul", [[128, 768], [8, 16, 6, 48, 16], [8, 96], [128, 768]], ops) is qkv
    )


def test_blocked_convolution_matches_the_plain_torch_convolution():
    conv = {"op": "conv2d", "arg_shapes": [[1, 64, 56, 56], [128, 64, 1, 1]],
            "out_shape": [1, 128, 28, 28]}  # fmt: skip
    other = {"op": "conv2d", "arg_shapes": [[1, 64, 56, 56], [128, 64, 3, 3]],
             "out_shape": [1, 128, 28, 28]}  # fmt: skip
    # NCHW16c data, OIHW16i16o weights, a blocked bias and the blocked output
    blocked = [[1, 4, 56, 56, 16], [8, 4, 1, 1, 16, 16], [1, 8, 1, 1, 16], [1, 8, 28, 28, 16]]
    assert match_torch_op("conv2d", blocked, [other, conv]) is conv


def test_cpu_peak_follows_the_stated_formula(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: X\ncpu MHz\t\t: 2600.000\nflags\t\t: fpu avx2 avx512f\n")
    peak = cpu_peak_gflops(2, str(cpuinfo))
    assert peak["gflops"] == pytest.approx(2 * 2.6 * 2 * 16 * 2)
    cpuinfo.write_text("cpu MHz\t\t: 3000.000\nflags\t\t: fpu avx2\n")
    assert cpu_peak_gflops(1, str(cpuinfo))["gflops"] == pytest.approx(3.0 * 2 * 8 * 2)
    assert cpu_peak_gflops(1, str(tmp_path / "missing"))["gflops"] is None


@pytest.mark.slow
def test_cli_gap_table_of_a_one_shot_build(tmp_path):
    result = CliRunner().invoke(cli, [
        "bench", "--model", NETWORK, "--gap", "--runs", "3", "--warmup", "1",
        "--work-dir", str(tmp_path),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / f"{NETWORK}-gap.json").read_text())
    assert format_gap_table(written) in result.output
    convs = [r for r in written["rows"] if r["kind"] == "conv2d"]
    assert len(convs) == 2 and all(r["torch_gflops"] and r["one_shot_gflops"] for r in convs)
    assert all(r["origin"] in ("library", "search") for r in convs)
    assert np.isfinite(written["geomean_one_shot_over_torch_gflops"])


def test_other_build_functions_match_by_name_else_by_operator_and_shapes():
    from ms_meta.bench.gap import _same_function

    # a stock build keeps batch norm as four elementwise inputs; One-Shot's folds it to a bias
    stock = {
        "fused_conv2d_subtract_divide_multiply_add_relu": {
            "us_per_call": 5.0,
            "arg_shapes": [[1, 3, 224, 224], [64, 3, 7, 7]]
            + [[1, 64, 1, 1]] * 4
            + [[1, 64, 112, 112]],
        },
        "max_pool2d": {"us_per_call": 1.0, "arg_shapes": [[1, 64, 112, 112], [1, 64, 56, 56]]},
    }
    folded = [[1, 3, 224, 224], [64, 3, 7, 7], [1, 64, 1, 1], [1, 64, 112, 112]]
    assert _same_function("fused_conv2d_add_relu", "conv2d", folded, stock)["us_per_call"] == 5.0
    assert _same_function("max_pool2d", "max_pool", [], stock)["us_per_call"] == 1.0
    other_conv = [[1, 64, 56, 56], [64, 64, 3, 3], [1, 64, 1, 1], [1, 64, 56, 56]]
    assert _same_function("fused_conv2d1_add1_relu1", "conv2d", other_conv, stock) is None
