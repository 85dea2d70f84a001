"""ms-meta tune and collect record what they measure into the record store, and --store none
opts out."""

from __future__ import annotations

import os

from click.testing import CliRunner

from ms_meta.cli.main import cli
from ms_meta.store.sql import STORE_ENV, SqlStore

TUNE = ["tune", "dense:16,16,16", "--trials", "4", "--trials-per-iter", "4", "--cost-model",
        "random"]  # fmt: skip


def test_measured_tuning_records_into_the_store_given(tmp_path):
    store = tmp_path / "mine.sqlite"
    result = CliRunner().invoke(cli, [*TUNE, "--store", str(store), "--work-dir",
                                      str(tmp_path / "run")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "record store: +" in result.output
    with SqlStore(store) as opened:
        assert opened.stats()["records"] >= 1


def _records(path: str) -> int:
    if not os.path.exists(path):
        return 0
    with SqlStore(path) as opened:
        return opened.stats()["records"]


def test_store_none_records_nothing_and_the_default_is_the_environments(tmp_path):
    default = os.environ[STORE_ENV]  # a temporary store for the test session (conftest)
    before = _records(default)
    result = CliRunner().invoke(cli, [*TUNE, "--store", "none", "--work-dir",
                                      str(tmp_path / "a")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "record store" not in result.output and _records(default) == before
    result = CliRunner().invoke(cli, [*TUNE, "--work-dir", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert "record store: +" in result.output and _records(default) > before


def test_collect_records_into_the_store_given(tmp_path):
    store = tmp_path / "mine.sqlite"
    args = ["collect", "dense:16,16,16", "--out", str(tmp_path / "records"),
            "--trials-per-task", "2", "--batch-size", "2", "--population-size", "4",
            "--cost-model", "random", "--store", str(store)]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "record store: +2 records" in result.output
    assert _records(str(store)) == 2
