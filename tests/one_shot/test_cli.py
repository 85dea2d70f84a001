"""``ms-meta tune --mode one-shot``: what it prints, and its errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ms_meta.cli.main import cli
from ms_meta.one_shot import PREDICTED_RECORD_FILE, SUMMARY_FILE, SearchSettings

SMALL = ["--population", "16", "--generations", "1"]


def test_one_shot_prints_prediction_and_timings(tmp_path, caplog):
    result = CliRunner().invoke(
        cli, ["tune", "dense:16,16,16", "--mode", "one-shot", "--no-measure", "--weights", "none",
              "--work-dir", str(tmp_path), *SMALL],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = result.output
    assert "dense:16,16,16: picked by the model, predicted, not measured: score " in out
    assert "rank 1 of " in out
    assert "search + featurize + predict: " in out and "start-up, once per process" in out
    assert "post-hoc" not in out  # --no-measure
    assert "WARNING: one-shot tuning with an UNTRAINED cost model" in out
    assert out.count("UNTRAINED cost model") == 1
    assert "UNTRAINED" not in caplog.text  # printed by the command, not logged a second time
    assert (tmp_path / PREDICTED_RECORD_FILE).is_file()
    summary = json.loads((tmp_path / SUMMARY_FILE).read_text())
    assert summary["measured"] is False and summary["settings"]["population_size"] == 16


def test_one_shot_with_another_cpus_weights_says_so_not_untrained(tmp_path):
    target = json.dumps({"kind": "llvm", "mcpu": "icelake-server", "num-cores": 2})
    result = CliRunner().invoke(
        cli, ["tune", "dense:16,16,16", "--mode", "one-shot", "--no-measure", "--target", target,
              "--work-dir", str(tmp_path), *SMALL],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "with weights trained on rocketlake" in result.output
    assert "trained on another CPU" in result.output and "UNTRAINED" not in result.output
    assert json.loads((tmp_path / SUMMARY_FILE).read_text())["model"]["pretrained"] is True


@pytest.mark.slow
def test_one_shot_measures_the_pick_after_the_search(tmp_path):
    result = CliRunner().invoke(
        cli, ["tune", "dense:16,16,16", "--mode", "one-shot", "--weights", "none",
              "--work-dir", str(tmp_path), *SMALL],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "post-hoc check (measured once after the search, not part of it): " in result.output
    assert " us (" in result.output


@pytest.mark.parametrize("flag", [["--verify", "2"], ["--no-measure"], ["--weights", "none"]])
def test_one_shot_options_are_refused_in_measured_mode(flag):
    result = CliRunner().invoke(cli, ["tune", "dense:8,8,8", *flag])
    assert result.exit_code == 2
    assert "only to --mode one-shot" in result.output


def test_help_names_the_search_defaults():
    result = CliRunner().invoke(cli, ["tune", "--help"])
    defaults = SearchSettings()
    assert f"population [default: {defaults.population_size}]" in " ".join(result.output.split())
    assert f"mutation [default: {defaults.genetic_num_iters}]" in " ".join(result.output.split())


def test_bad_weights_path_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(
        cli, ["tune", "dense:8,8,8", "--mode", "one-shot", "--weights", str(tmp_path / "x.pt")]
    )
    assert result.exit_code == 1
    assert "weights file" in result.output and "does not exist" in result.output
    assert "Traceback" not in result.output
