"""``ms-meta tune`` and ``tune_workload`` learn from the record store and record into it."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from ms_meta.cli.main import cli
from ms_meta.one_shot import read_summary, run_tir
from ms_meta.store import SqlStore
from ms_meta.workloads import resolve_one
from tests.one_shot.test_one_shot import TINY, InProcessBuilder, InProcessRunner

SPEC = "dense:16,16,16"


def test_one_shot_tune_prints_the_stores_measurement_and_store_none_searches(target, tmp_path):
    store = tmp_path / "records.sqlite"
    measured = run_tir(resolve_one(SPEC).build(), target, tmp_path / "verify", weights=None,
                       settings=TINY, library=None, verify=2, store=store,
                       builder=InProcessBuilder(), runner=InProcessRunner())  # fmt: skip
    assert measured.store_report.added == 2
    args = ["tune", SPEC, "--mode", "one-shot", "--weights", "none", "--library", "none",
            "--population", "8", "--generations", "0"]  # fmt: skip
    result = CliRunner().invoke(cli, [*args, "--store", str(store), "--work-dir",
                                      str(tmp_path / "a")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "MEASURED earlier: the record store's fastest record" in result.output
    assert read_summary(tmp_path / "a")["tasks"][0]["origin"] == "store"
    result = CliRunner().invoke(cli, [*args, "--no-measure", "--store", "none", "--work-dir",
                                      str(tmp_path / "b")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "MEASURED earlier" not in result.output
    assert read_summary(tmp_path / "b")["tasks"][0]["source"] == "search"
    with SqlStore(store) as sql:  # One-Shot without --verify records nothing
        assert sql.count() == 2


@pytest.mark.slow
def test_measured_tuning_feeds_the_store_and_one_shot_then_compiles_from_it(target, tmp_path):
    from tvm.s_tir import meta_schedule as ms

    from ms_meta.tuning.measured_tuning import tune_workload

    store = tmp_path / "records.sqlite"
    mod = resolve_one(SPEC).build()
    tuned = tune_workload(mod, target, tmp_path / "tune", max_trials=4, num_trials_per_iter=4,
                          cost_model=ms.cost_model.RandomModel(seed=0), store=store)  # fmt: skip
    assert tuned.store_report.added == tuned.trials
    result = run_tir(mod, target, tmp_path / "one-shot", weights=None, settings=TINY, store=store)
    (task,) = result.tasks
    assert (task.source, task.origin, task.scored) == ("store", "store", 0)
    assert task.measured_seconds == pytest.approx(tuned.best_seconds)
