"""A library schedule measured on a plain convolution, replayed on the network's fused task
(convolution, bias, ReLU): the epilogue is computed inside the convolution's tiles, and the
result computes the same numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tvm

from ms_meta.one_shot.search import epilogue_at_tile, transfer_schedule
from tests.conftest import RECORDS_ROOT

PLAIN = RECORDS_ROOT / "llvm-rocketlake-2c" / "conv2d_nchw_1_64_56_56_64_3_3_1_1"
FUSED_SPEC = "conv2d_bias_relu:1,64,56,56,64,3,3,1,1"


def _fastest_trace():
    from ms_meta.one_shot.library import without_postprocs

    lines = (PLAIN / "database_tuning_record.json").read_text().splitlines()
    records = [json.loads(line)[1] for line in lines]
    best = min((r for r in records if r[1] and max(r[1]) < 1e9), key=lambda r: np.mean(r[1]))
    return without_postprocs(best[0])


def _outside_the_tiles(sch, main: str = "conv2d_nchw") -> list[str]:
    """Blocks whose outermost loop is not the convolution's: loop nests of their own."""
    outer = sch.get(sch.get_loops(sch.get_sblock(main))[0])
    names = []
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        loops = sch.get_loops(block)
        if not loops or not sch.get(loops[0]).same_as(outer):
            names.append(sch.get(block).name_hint)
    return names


@pytest.fixture(scope="module")
def fused():
    from ms_meta.workloads import resolve_one

    return resolve_one(FUSED_SPEC).build()


def _postprocs(mod, target):
    from tvm.s_tir import meta_schedule as ms

    context = ms.TuneContext(mod=mod, target=target, space_generator="post-order-apply")
    return list(context.space_generator.postprocs)


def test_replayed_plain_schedule_computes_the_epilogue_in_its_tiles(fused, target):
    trace = _fastest_trace()
    plain = tvm.s_tir.Schedule(fused)
    tvm.s_tir.Trace.apply_json_to_schedule(trace, plain)
    # the bias add and the ReLU: passes of their own over the whole output
    assert _outside_the_tiles(plain) == ["T_add", "compute"]
    moved = plain.copy()
    epilogue_at_tile(moved)
    assert _outside_the_tiles(moved) == []


def test_epilogue_in_the_tiles_computes_the_same_numbers(fused, target):
    from ms_meta.tuning.builder import fast_build

    sch = transfer_schedule(_fastest_trace(), fused, _postprocs(fused, target), epilogue=True)
    assert sch is not None
    # the postprocessors split the reduction's initialisation off as a block of its own
    assert _outside_the_tiles(sch, main="conv2d_nchw_update") == []
    rng = np.random.default_rng(0)
    shapes = [tuple(int(d) for d in p.shape) for p in sch.mod["main"].params]
    arrays = [rng.uniform(-1, 1, size=s).astype("float32") for s in shapes]
    device = tvm.cpu()
    results = []
    for mod in (fused, sch.mod):
        args = [tvm.runtime.tensor(a, device) for a in arrays[:-1]]
        args.append(tvm.runtime.tensor(np.zeros(shapes[-1], "float32"), device))
        fast_build(mod, target, None)["main"](*args)
        results.append(args[-1].numpy())
    np.testing.assert_allclose(results[1], results[0], rtol=1e-4, atol=1e-4)


def test_replay_leaves_the_epilogue_after_the_tiles_unless_asked(fused, target):
    sch = transfer_schedule(_fastest_trace(), fused, _postprocs(fused, target))
    assert sch is not None
    assert _outside_the_tiles(sch, main="conv2d_nchw_update") == ["T_add", "compute"]


@pytest.mark.parametrize(
    ("spec", "moves"),
    [
        ("depthwise_conv2d_nchwc:1,144,56,56,3,3,1,1", True),
        ("conv2d_nchwc:1,64,56,56,256,1,1,1,0", True),  # pointwise
        ("conv2d_nchw:1,64,56,56,64,1,1,1,0", True),
        ("conv2d_nchwc:1,64,56,56,64,3,3,1,1", False),
        ("conv2d_bias_relu:1,64,56,56,64,3,3,1,1", False),
        ("dense:16,32,32", False),
    ],
)
def test_epilogue_moves_into_the_tiles_of_depthwise_and_pointwise_convolutions(spec, moves):
    from ms_meta.feature.task import infer_operator_kind
    from ms_meta.one_shot.search import epilogue_pays
    from ms_meta.workloads import resolve_one

    mod = resolve_one(spec).build()
    assert epilogue_pays(mod, infer_operator_kind(mod)) is moves
