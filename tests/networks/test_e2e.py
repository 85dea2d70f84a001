"""The end-to-end benchmark on a tiny BERT layer registered for the test (full models take
minutes to tens of minutes)."""

from __future__ import annotations

import functools
import itertools
import json
from pathlib import Path

import pytest
import torch

from ms_meta.bench.e2e import MODES, NumericsError, format_table, run_model_benchmark
from ms_meta.errors import MsMetaError
from ms_meta.networks import MODELS, ModelSpec, UnknownModelError, bert_layer, bert_layer_inputs

TINY = "tiny-bert"
tiny_layer = functools.partial(bert_layer, hidden=32, heads=4, ffn=64)
tiny_inputs = functools.partial(bert_layer_inputs, seq_len=8, hidden=32)


@pytest.fixture
def tiny_model(monkeypatch):
    monkeypatch.setitem(MODELS, TINY, ModelSpec(TINY, "tiny BERT layer", tiny_layer, tiny_inputs))
    return TINY


def test_untuned_and_torch_write_json_chart_and_table(tiny_model, target, tmp_path, capsys):
    result = run_model_benchmark(
        tiny_model, target=target, out_dir=tmp_path, modes=("untuned", "torch"), repeat=5
    )
    assert list(result["modes"]) == ["untuned", "torch"]
    assert json.loads((tmp_path / f"{TINY}.json").read_text()) == result
    png = (tmp_path / f"{TINY}.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    untuned = result["modes"]["untuned"]
    assert untuned["compile_seconds"] > 0
    assert untuned["max_abs_diff"] <= result["numerics_tolerance"]
    for entry in result["modes"].values():
        latency = entry["latency"]
        assert latency["runs"] == 5
        assert 0 < latency["q1_ms"] <= latency["median_ms"] <= latency["q3_ms"]
    assert result["threads"] == int(target.attrs["num-cores"])
    printed = capsys.readouterr().out
    assert printed.strip() == format_table(result)
    assert "untuned" in printed and "torch" in printed


def test_compiled_model_that_differs_from_torch_fails_loudly(monkeypatch, target, tmp_path):
    # every build gets a new seed, so the compiled weights differ from the reference model's
    seeds = itertools.count()
    spec = ModelSpec(TINY, "wrong", lambda: tiny_layer(seed=next(seeds)), tiny_inputs)
    monkeypatch.setitem(MODELS, TINY, spec)
    with pytest.raises(NumericsError, match="untuned"):
        run_model_benchmark(TINY, target=target, out_dir=tmp_path, modes=("untuned",), repeat=1,
                            progress=False)  # fmt: skip
    written = json.loads((tmp_path / f"{TINY}.json").read_text())
    assert written["modes"]["untuned"]["max_abs_diff"] > written["numerics_tolerance"]
    assert "error" in written


def test_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(UnknownModelError, match="choose one of"):
        run_model_benchmark("alexnet", target=None, out_dir=tmp_path)
    with pytest.raises(MsMetaError, match="choose from " + ", ".join(MODES)):
        run_model_benchmark("bert-layer", target=None, out_dir=tmp_path, modes=("tvm",))
    with pytest.raises(MsMetaError, match="at least 1"):
        run_model_benchmark("bert-layer", target=None, out_dir=tmp_path, repeat=0)
    assert not list(tmp_path.iterdir())  # nothing written before the arguments are checked


def tiny_mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU()).eval()


def tiny_mlp_inputs():
    return (torch.randn(4, 16, generator=torch.Generator().manual_seed(1)),)


@pytest.mark.slow
def test_xgb_mode_tunes_every_task_and_matches_torch(monkeypatch, target, tmp_path):
    # a two-layer MLP: few tasks, so that a real tune_relax run takes minutes, not tens of them
    spec = ModelSpec("tiny-mlp", "MLP", tiny_mlp, tiny_mlp_inputs)
    monkeypatch.setitem(MODELS, "tiny-mlp", spec)
    result = run_model_benchmark(
        "tiny-mlp", target=target, out_dir=tmp_path, xgb_trials_per_task=2,
        modes=("xgb", "untuned"), repeat=3, progress=False,
    )  # fmt: skip
    xgb = result["modes"]["xgb"]
    assert 0 < xgb["trials"] <= 2 * xgb["tasks"]
    assert xgb["valid_trials"] > 0
    assert xgb["compile_seconds"] == pytest.approx(xgb["tuning_seconds"] + xgb["build_seconds"])
    assert xgb["max_abs_diff"] <= result["numerics_tolerance"]
    # a later run compiles the xgb row from that database, without tuning again
    again = run_model_benchmark(
        "tiny-mlp", target=target, out_dir=tmp_path / "again", modes=("xgb",), repeat=3,
        progress=False, xgb_database_dir=Path(xgb["work_dir"]),
    )["modes"]["xgb"]  # fmt: skip
    assert again["reused_database"] == xgb["work_dir"] and again["tuning_seconds"] is None
    assert again["max_abs_diff"] <= result["numerics_tolerance"]
