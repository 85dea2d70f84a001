"""Faults and bad input around model weights and the cost model, driven through the real CLI.

Each case runs ``ms-meta`` in a separate process (as a user's shell would) on real files: the
shipped weights, altered, and a few shipped tuning records.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ms_meta.errors import WeightsError
from ms_meta.model.weights import DEFAULT_WEIGHTS_DIR, load_checkpoint, save_checkpoint
from tests.cli.runner import REPO, assert_one_line_error, ms_meta

RECORDS = REPO / "tuning_records" / "llvm-rocketlake-2c"
TRAIN, HELD_OUT = "softmax_12_128_128", "dense_128_3072_768"
SHIPPED = DEFAULT_WEIGHTS_DIR / "llvm-rocketlake.pt"


@pytest.fixture(scope="module")
def shipped_weights() -> Path:
    if not SHIPPED.is_file():
        pytest.skip("this build ships no rocketlake weights")
    return SHIPPED


@pytest.fixture(scope="module")
def small_records(tmp_path_factory) -> tuple[list[str], Path]:
    """Two shipped rocketlake tasks and a split holding one of them out."""
    paths = [RECORDS / name for name in (TRAIN, HELD_OUT)]
    if not all((p / "database_tuning_record.json").is_file() for p in paths):
        pytest.skip("shipped tuning records are missing")
    split = tmp_path_factory.mktemp("split") / "split.json"
    split.write_text(json.dumps({"train": [TRAIN], "held_out": [HELD_OUT]}))
    return [str(p) for p in paths], split


def altered_weights(source: Path, out: Path, *, nan: bool = False, mcpu: str | None = None):
    """A copy of ``source`` with one parameter set to NaN, or trained "for" another CPU."""
    checkpoint = load_checkpoint(source)
    if nan:
        name = next(iter(checkpoint.state_dict))
        checkpoint.state_dict[name] = checkpoint.state_dict[name].clone()
        checkpoint.state_dict[name].view(-1)[0] = float("nan")
    if mcpu is not None:
        checkpoint.target = {**(checkpoint.target or {"kind": "llvm"}), "mcpu": mcpu}
    return save_checkpoint(checkpoint, out)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_weights_with_non_finite_parameters_are_refused_at_load(tmp_path, shipped_weights, value):
    checkpoint = load_checkpoint(shipped_weights)
    name = sorted(checkpoint.state_dict)[-1]
    checkpoint.state_dict[name] = torch.full_like(checkpoint.state_dict[name], value)
    path = save_checkpoint(checkpoint, tmp_path / "bad.pt")
    with pytest.raises(WeightsError, match=f"non-finite parameters.*{name}"):
        load_checkpoint(path)


def test_meta_cost_model_refuses_nan_weights(tmp_path, shipped_weights):
    from ms_meta import MetaCostModel

    path = altered_weights(shipped_weights, tmp_path / "nan.pt", nan=True)
    with pytest.raises(WeightsError, match="non-finite"):
        MetaCostModel(weights=path, scoring_process=False)


def test_eval_refuses_nan_weights_in_one_line(tmp_path, shipped_weights, small_records):
    paths, split = small_records
    weights = altered_weights(shipped_weights, tmp_path / "nan.pt", nan=True)
    result = ms_meta("eval", *paths, "--split", str(split), "--weights", str(weights),
                     "--baselines", "none", "--ks", "0", cwd=tmp_path)  # fmt: skip
    assert_one_line_error(result, "non-finite parameters", str(weights))


def test_eval_without_weights_uses_the_shipped_weights_of_the_records_cpu(tmp_path):
    records = REPO / "tuning_records" / "llvm-znver4-noavx512-2c"
    paths = [records / name for name in (TRAIN, HELD_OUT)]
    if not all((p / "database_tuning_record.json").is_file() for p in paths):
        pytest.skip("shipped Zen 4 records are missing")
    if not (DEFAULT_WEIGHTS_DIR / "llvm-znver4-noavx512.pt").is_file():
        pytest.skip("this build ships no Zen 4 weights")
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": [TRAIN], "held_out": [HELD_OUT]}))
    result = ms_meta("eval", *map(str, paths), "--split", str(split), "--baselines", "none",
                     "--ks", "0", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "meta-default" in result.stdout and "trained for" not in result.stderr


def test_one_shot_tuning_refuses_nan_weights_before_picking(tmp_path, shipped_weights):
    weights = altered_weights(shipped_weights, tmp_path / "nan.pt", nan=True)
    result = ms_meta("tune", "dense:16,16,16", "--mode", "one-shot", "--weights", str(weights),
                     "--no-measure", "--library", "none", cwd=tmp_path)  # fmt: skip
    assert_one_line_error(result, "non-finite parameters")


def test_eval_names_any_cpu_weights_for_weights_of_another_cpu(
    tmp_path, shipped_weights, small_records
):
    paths, split = small_records
    weights = altered_weights(shipped_weights, tmp_path / "zen.pt", mcpu="znver4")
    args = ["eval", *paths, "--split", str(split), "--weights", f"zen={weights}",
            "--baselines", "none", "--ks", "0"]  # fmt: skip
    result = ms_meta(*args, cwd=tmp_path)
    assert_one_line_error(result, "mcpu=znver4", "mcpu=rocketlake", "--any-cpu-weights")

    result = ms_meta(*args, "--any-cpu-weights", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "trained for znver4, the records are of rocketlake" in result.stderr
    assert "zen" in result.stdout and "pairwise" in result.stdout


def test_tune_takes_weights_of_another_cpu_only_with_the_flag_it_names(tmp_path, shipped_weights):
    weights = altered_weights(shipped_weights, tmp_path / "zen.pt", mcpu="znver4")
    args = ["tune", "dense:16,16,16", "--mode", "one-shot", "--weights", str(weights),
            "--no-measure", "--library", "none", "--work-dir", str(tmp_path / "work")]  # fmt: skip
    result = ms_meta(*args, cwd=tmp_path)
    assert_one_line_error(result, "mcpu=znver4", "--any-cpu-weights")

    result = ms_meta(*args, "--any-cpu-weights", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "weights trained on znver4" in result.stderr + result.stdout
    assert "dense:16,16,16: picked by the model" in result.stdout


def test_the_weights_mismatch_error_names_the_flag_and_the_api_argument():
    from ms_meta.model.weights import check_target

    with pytest.raises(WeightsError, match=r"allow_other_cpu=True.*--any-cpu-weights"):
        check_target({"kind": "llvm", "mcpu": "znver4"}, {"kind": "llvm", "mcpu": "rocketlake"},
                     "weights w.pt")  # fmt: skip


# Commands that take weights and check them against a target.
WEIGHTS_COMMANDS = ["bench", "collect", "eval", "tune"]


@pytest.mark.parametrize("command", WEIGHTS_COMMANDS)
def test_commands_that_take_weights_offer_any_cpu_weights(command):
    from ms_meta.cli.main import cli

    ctx = cli.make_context("ms-meta", [command, "--help"], resilient_parsing=True)
    options = {opt for p in cli.get_command(ctx, command).params for opt in p.opts}
    assert "--weights" in options or "--one-shot-weights" in options
    assert "--any-cpu-weights" in options
