"""``ms-meta pretrain --from-store``: weights trained on the record store's records of one
target, through the same data path as any tuning records."""

from __future__ import annotations

import json

from click.testing import CliRunner

from ms_meta.cli.main import cli
from ms_meta.data.dataset import CACHE_ENV
from ms_meta.model.cost_model import MetaCostModel
from ms_meta.model.weights import load_checkpoint
from ms_meta.store import feed_json_databases
from tests.conftest import SEED_RECORDS

ROCKETLAKE = {"kind": "llvm", "mcpu": "rocketlake", "num-cores": 2}  # the seed records' target
TASKS = ("mm_512", "mm_1024", "bmm_16_256", "softmax_bert")


def test_weights_are_trained_on_the_stores_records_of_the_target(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    store = tmp_path / "records.sqlite"
    for task in TASKS:
        feed_json_databases(SEED_RECORDS / task, store_path=store)
    out = tmp_path / "mine.pt"
    args = ["pretrain", "--from-store", str(store), "--target", json.dumps(ROCKETLAKE),
            "--method", "transfer", "--epochs", "1", "--hidden", "16", "--val-fraction", "0",
            "--no-eval", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert f"{len(TASKS)} training tasks" in result.output
    checkpoint = load_checkpoint(out)
    assert checkpoint.target == ROCKETLAKE
    assert checkpoint.meta["data"]["record_store"].startswith(str(store))
    assert sorted(checkpoint.meta["data"]["train_tasks"]) == sorted(TASKS)
    # the export sits beside the store, and the weights serve the cost model of that target
    assert (tmp_path / "records.sqlite.pretrain").is_dir()
    assert MetaCostModel(weights=out, target=ROCKETLAKE, store=None).pretrained


def test_a_store_without_records_of_the_target_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    store = tmp_path / "records.sqlite"
    feed_json_databases(SEED_RECORDS / "mm_1024", store_path=store)
    other = json.dumps({"kind": "llvm", "mcpu": "icelake-server", "num-cores": 2})
    args = ["pretrain", "--from-store", str(store), "--target", other, "--out",
            str(tmp_path / "w.pt")]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and "holds no records of llvm-icelake-server-2c" in result.output
    assert "Traceback" not in result.output
    # 4 records: too few for a meta-learning episode (transfer trains on them)
    args = ["pretrain", "--from-store", str(store), "--target", json.dumps(ROCKETLAKE), "--out",
            str(tmp_path / "w.pt")]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and "a fomaml episode needs" in result.output
    result = CliRunner().invoke(cli, ["pretrain", "--from-store", str(tmp_path / "missing.sqlite"),
                                      "--out", str(tmp_path / "w.pt")])  # fmt: skip
    assert result.exit_code == 1 and "no record store at" in result.output
    result = CliRunner().invoke(cli, ["pretrain", "--target", other, "--out",
                                      str(tmp_path / "w.pt")])  # fmt: skip
    assert result.exit_code == 2 and "--target applies only to --from-store" in result.output
