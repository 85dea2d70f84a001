"""``ms-meta pretrain`` and ``ms-meta eval`` on a few shipped tasks: weights, resume, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ms_meta.cli.main import cli
from ms_meta.data.measurements import measurement_sources
from ms_meta.model.weights import load_checkpoint

RECORDS = Path(__file__).resolve().parents[2] / "tuning_records" / "llvm-rocketlake-2c"
TRAIN = ["dense_128_768_768", "softmax_12_128_128", "layer_norm_128_768", "dense_512_512_512"]
HELD_OUT = ["dense_128_3072_768"]


@pytest.fixture(scope="module")
def small_records(tmp_path_factory) -> tuple[list[str], Path]:
    paths = [RECORDS / name for name in TRAIN + HELD_OUT]
    if not all((p / "database_tuning_record.json").is_file() for p in paths):
        pytest.skip("shipped tuning records are missing")
    split = tmp_path_factory.mktemp("split") / "split.json"
    split.write_text(json.dumps({"train": TRAIN, "held_out": HELD_OUT}))
    return [str(p) for p in paths], split


def test_pretrain_writes_weights_with_metadata_and_evaluates(tmp_path, small_records):
    paths, split = small_records
    out = tmp_path / "w.pt"
    args = ["pretrain", *paths, "--split", str(split), "--method", "fomaml", "--epochs", "1",
            "--hidden", "16", "--val-fraction", "0", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "4 training tasks" in result.output and "1 held out" in result.output
    checkpoint = load_checkpoint(out)
    meta = checkpoint.meta
    assert meta["method"] == "fomaml" and meta["data"]["held_out_tasks"] == HELD_OUT
    assert sorted(meta["data"]["train_tasks"]) == sorted(TRAIN)
    assert meta["command"].startswith("ms-meta") and meta["adapt"]["steps"] == 5
    assert checkpoint.target["mcpu"] and checkpoint.gnn_config.hidden == 16
    assert not (tmp_path / "w.pt.state.pt").exists()  # the run finished: no state left behind
    # the evaluation printed at the end covers zero-shot and k-shot on the held-out task
    assert "pairwise" in result.output and "gnn-fomaml" in result.output

    table = tmp_path / "eval.md"
    result = CliRunner().invoke(cli, ["eval", *paths, "--split", str(split), "--weights",
                                      f"mine={out}", "--baselines", "none", "--ks", "0,8",
                                      "--markdown", str(table)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "mine" in table.read_text()

    # the records a search met late, support in the order it measured them
    report = tmp_path / "late.json"
    result = CliRunner().invoke(cli, ["eval", *paths, "--split", str(split), "--weights",
                                      f"mine={out}", "--baselines", "none", "--ks", "0,8",
                                      "--after-line", "64", "--order", "search",
                                      "--json", str(report)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "records after line 64 in record-file (search) order" in result.output
    (late,) = json.loads(report.read_text())
    assert late["after_line"] == 64 and late["order"] == "search"
    assert late["per_task"]["0"][HELD_OUT[0]]["query"] == records_after(paths[-1], 64) - 8
    result = CliRunner().invoke(cli, ["eval", *paths, "--split", str(split), "--weights",
                                      f"mine={out}", "--baselines", "none", "--ks", "0,8",
                                      "--after-line", "100000"])  # fmt: skip
    assert result.exit_code == 1 and "no held-out task has enough records" in result.output
    assert "after line 100000 < 16 (max k 8 + 8 query)" in result.output


def test_pretrain_validates_on_late_records(tmp_path, small_records):
    paths, split = small_records
    base = ["pretrain", *paths, "--split", str(split), "--method", "transfer", "--epochs", "1",
            "--hidden", "16", "--no-eval", "--val-metric", "top1",
            "--val-fraction", "0.5"]  # fmt: skip
    result = CliRunner().invoke(
        cli, [*base, "--val-after-line", "64", "--out", str(tmp_path / "a.pt")]
    )
    assert result.exit_code == 0, result.output
    assert "1 validation tasks" in result.output
    assert "val top1 after line 64 zero-shot" in result.output
    config = load_checkpoint(tmp_path / "a.pt").meta["pretrain_config"]
    assert config["val_after_line"] == 64 and config["val_metric"] == "top1"
    # no task has 18 records after line 1000: none can validate, all train
    result = CliRunner().invoke(
        cli, [*base, "--val-after-line", "1000", "--out", str(tmp_path / "b.pt")]
    )
    assert result.exit_code == 0, result.output
    assert "4 training tasks" in result.output and "0 validation tasks" in result.output


def test_pretrain_meta_learns_on_search_episodes(tmp_path, small_records):
    paths, split = small_records
    out = tmp_path / "s.pt"
    result = CliRunner().invoke(
        cli,
        ["pretrain", *paths, "--split", str(split), "--method", "fomaml", "--episodes", "search",
         "--epochs", "1", "--hidden", "16", "--inner-steps", "2", "--no-eval",
         "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert load_checkpoint(out).meta["pretrain_config"]["episode_order"] == "search"


def records_after(path: str, line: int) -> int:
    """How many records of a database directory's own measurement (source 0, the task without
    an ``@machine`` suffix) lie after ``line``; the shipped records are all usable."""
    with open(Path(path) / "database_tuning_record.json") as f:
        lines = np.asarray([n for n, text in enumerate(f, 1) if text.strip()], np.int64)
    meta = json.loads((Path(path) / "meta.json").read_text())
    sources, _ = measurement_sources(meta, lines)
    return int(np.count_nonzero((lines > line) & (sources == 0)))


def test_pretrain_and_eval_bad_input(tmp_path, small_records):
    paths, split = small_records
    runner = CliRunner()
    result = runner.invoke(cli, ["pretrain", str(tmp_path / "missing"), "--out", "x.pt"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "no such database directory" in result.output
    result = runner.invoke(cli, ["eval", *paths, "--split", str(split), "--weights",
                                 str(tmp_path / "nope.pt"), "--baselines", "none"])  # fmt: skip
    assert result.exit_code == 1 and "does not exist" in result.output
    result = runner.invoke(cli, ["eval", *paths, "--split", str(split), "--weights", "x.pt",
                                 "--baselines", "lightgbm"])  # fmt: skip
    assert result.exit_code != 0 and "unknown baseline" in result.output


@pytest.mark.parametrize("command", ["pretrain", "eval"])
def test_default_records_of_several_targets_must_be_named(tmp_path, monkeypatch, command):
    for target in ("llvm-rocketlake-2c", "llvm-znver4-noavx512-2c"):
        task = tmp_path / "tuning_records" / target / "dense_16_16_16"
        task.mkdir(parents=True)
        (task / "database_tuning_record.json").write_text("")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, [command, "--weights", "w.pt"] if command == "eval" else
                                [command, "--out", "w.pt"])  # fmt: skip
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "2 targets (llvm-rocketlake-2c, llvm-znver4-noavx512-2c)" in result.output
    assert not (tmp_path / "w.pt").exists()


def test_pretrain_reads_targets_stored_as_json_strings(tmp_path):
    # the seed records' meta.json keep the target as a JSON string, as MetaSchedule does
    from tests.conftest import SEED_RECORDS

    metas = [json.loads(p.read_text()) for p in SEED_RECORDS.glob("*/meta.json")]
    assert any(isinstance(m.get("target"), str) for m in metas)
    out = tmp_path / "w.pt"
    args = ["pretrain", str(SEED_RECORDS), "--split", "none", "--method", "transfer",
            "--epochs", "1", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert out.is_file()
