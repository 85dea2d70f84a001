"""Operator variants chosen by workload field, and nested seeded training subsets."""

from __future__ import annotations

import pytest

from ms_meta.errors import MsMetaError
from ms_meta.eval.task_subsets import VariantRule, nested_subsets, parse_variant, task_fields

NAMES = [
    "conv2d_nchw_1_64_28_28_64_5_5_1_2",
    "conv2d_nchw_1_64_56_56_64_3_3_1_1",
    "conv2d_bias_relu_1_40_30_30_128_5_5_1_2",
    "depthwise_conv2d_1_240_28_28_5_5_1_2",
    "depthwise_conv2d_1_240_28_28_5_5_1_2@other_machine",
    "group_conv2d_nchw_1_16_8_8_16_5_5_2_2_8",
    "group_conv2d_nchw_1_64_14_14_64_3_3_1_1_2",
    "avg_pool2d_1_48_13_13_5_2_0",
    "batch_matmul_nn_8_27_32_512",
    "softmax_6_3_196",
    "not_a_task",
]


def test_task_fields_reads_the_shape_of_collector_task_names():
    op, fields = task_fields("conv2d_nchw_1_64_28_28_64_5_5_1_2")
    assert op == "conv2d_nchw"
    assert fields == dict(N=1, C=64, H=28, W=28, K=64, R=5, S=5, stride=1, pad=2)


def test_task_fields_prefers_the_longest_operator_name_and_drops_the_source_suffix():
    assert task_fields("batch_matmul_nn_8_27_32_512")[0] == "batch_matmul_nn"
    assert task_fields("conv2d_nchwc_1_64_56_56_64_3_3_1_1")[0] == "conv2d_nchwc"
    assert task_fields("depthwise_conv2d_1_240_28_28_5_5_1_2@vm boot 1")[1]["R"] == 5


def test_task_fields_gives_none_for_other_names_and_no_fields_for_variadic_operators():
    assert task_fields("not_a_task") is None
    assert task_fields("conv2d_nchw_1_2") is None  # too few fields
    assert task_fields("softmax_6_3_196") == ("softmax", {})


def test_kernel_rule_selects_every_convolution_kind_with_that_kernel_and_no_pooling():
    rule = parse_variant("R=5,S=5")
    assert rule.select(NAMES) == [
        "conv2d_bias_relu_1_40_30_30_128_5_5_1_2",
        "conv2d_nchw_1_64_28_28_64_5_5_1_2",
        "depthwise_conv2d_1_240_28_28_5_5_1_2",
        "depthwise_conv2d_1_240_28_28_5_5_1_2@other_machine",
        "group_conv2d_nchw_1_16_8_8_16_5_5_2_2_8",
    ]
    assert rule.describe() == "R=5,S=5"


def test_operator_rule_selects_a_whole_kind_and_combines_with_fields():
    assert parse_variant("op=group_conv2d_nchw").select(NAMES) == [
        "group_conv2d_nchw_1_16_8_8_16_5_5_2_2_8",
        "group_conv2d_nchw_1_64_14_14_64_3_3_1_1_2",
    ]
    rule = parse_variant("op=conv2d_nchw|depthwise_conv2d, R=5")
    assert rule == VariantRule(("conv2d_nchw", "depthwise_conv2d"), {"R": 5})
    assert rule.select(NAMES) == [
        "conv2d_nchw_1_64_28_28_64_5_5_1_2",
        "depthwise_conv2d_1_240_28_28_5_5_1_2",
        "depthwise_conv2d_1_240_28_28_5_5_1_2@other_machine",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("R5", "not key=value"),
        ("R=five", "must be an integer"),
        ("op=conv3d", "unknown operator 'conv3d'"),
        (" , ", "selects nothing"),
    ],
)
def test_bad_variant_text_is_a_one_line_error(text, message):
    with pytest.raises(MsMetaError, match=message) as err:
        parse_variant(text)
    assert len(str(err.value).splitlines()) == 1


def test_nested_subsets_grow_by_adding_tasks_and_ignore_the_pool_order():
    pool = [f"task_{i:03d}" for i in range(40)]
    subsets = nested_subsets(pool, [5, 10, 40], seed=3)
    assert [len(subsets[n]) for n in (5, 10, 40)] == [5, 10, 40]
    assert set(subsets[5]) < set(subsets[10]) < set(subsets[40]) == set(pool)
    assert nested_subsets(list(reversed(pool)) + pool[:3], [5, 10, 40], seed=3) == subsets


def test_nested_subsets_differ_between_seeds_and_repeat_within_one():
    pool = [f"task_{i:03d}" for i in range(40)]
    assert nested_subsets(pool, [10], seed=0) == nested_subsets(pool, [10], seed=0)
    assert nested_subsets(pool, [10], seed=0) != nested_subsets(pool, [10], seed=1)


def test_nested_subsets_refuse_sizes_outside_the_pool():
    with pytest.raises(MsMetaError, match="between 1 and 3 tasks"):
        nested_subsets(["a", "b", "c"], [2, 4], seed=0)
    with pytest.raises(MsMetaError, match="between 1 and 3 tasks"):
        nested_subsets(["a", "b", "c"], [0], seed=0)
