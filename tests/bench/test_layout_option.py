"""The whole-model benchmark's --layout: One-Shot compiles the layout asked for, stock
MetaSchedule always the plain one, and an unknown layout is refused."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from tvm import relax
from tvm.script import relax as R

from ms_meta.bench.contenders import CONTENDERS, DEFAULT_CONTENDERS, prepare_one_shot
from ms_meta.cli.main import cli
from ms_meta.errors import MsMetaError
from ms_meta.networks import bind_for_inference


def _conv_model():
    bb = relax.BlockBuilder()
    x = relax.Var("x", R.Tensor((1, 16, 8, 8), "float32"))
    w = relax.Var("w", R.Tensor((32, 16, 3, 3), "float32"))
    with bb.function("main", [x, w]):
        with bb.dataflow():  # as imported models are: Relax converts layouts in dataflow blocks
            y = bb.emit_output(relax.op.nn.conv2d(x, w, padding=1))
        bb.emit_func_output(y)
    return bb.get()


def _layout(mod) -> str:
    line = next(ln for ln in mod.script(show_meta=False).splitlines() if "R.nn.conv2d(" in ln)
    return line.split('data_layout="')[1].split('"')[0]


def test_one_shot_compiles_the_layout_asked_for_and_stock_metaschedule_the_plain_one():
    mod = _conv_model()
    assert _layout(prepare_one_shot(mod, None, {"layout": "blocked"})) == "NCHW16c"
    assert _layout(prepare_one_shot(mod, None, {"layout": "plain"})) == "NCHW"
    assert _layout(bind_for_inference(mod, None)) == "NCHW"


def test_an_unknown_layout_is_refused():
    with pytest.raises(MsMetaError, match="unknown layout 'diagonal'"):
        prepare_one_shot(_conv_model(), None, {"layout": "diagonal"})
    result = CliRunner().invoke(cli, ["bench", "--model", "resnet18", "--layout", "diagonal"])
    assert result.exit_code == 2 and "'diagonal' is not one of" in result.output


def test_one_shot_in_the_plain_layout_is_a_contender_of_its_own_outside_the_default_set():
    assert "one-shot-plain" in CONTENDERS and "one-shot-plain" not in DEFAULT_CONTENDERS
