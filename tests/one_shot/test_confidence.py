"""One-Shot's per-task confidence (how far a task is from the schedule library) and
``verify_uncertain``, which measures only the tasks far from it; real TVM tasks, a library of
the seed records' dense tasks."""

from __future__ import annotations

import pytest
import tvm
from click.testing import CliRunner

from ms_meta.cli.main import cli
from ms_meta.one_shot import SearchSettings, read_summary, run_tir
from ms_meta.one_shot.library import build_library, load_library
from ms_meta.one_shot.result import FAR_DISTANCE, NEAR_DISTANCE, TaskConfidence, label_of
from ms_meta.workloads import resolve_one
from tests.conftest import SEED_RECORDS
from tests.one_shot.test_one_shot import InProcessBuilder, InProcessRunner

TINY = SearchSettings(population_size=16, genetic_num_iters=1, finalists=4, init_min_unmeasured=4)
DENSE_TASKS = ["mm_512", "mm_1024", "bert_qkv"]  # dense 512^3, 1024^3, 128x768x768
FAR_DENSE = "dense:16,16,16"  # tiny, and far from every dense task of the library


@pytest.fixture(scope="module")
def dense_library():
    return build_library([SEED_RECORDS], tasks=DENSE_TASKS, per_task=3)


def _func(spec: str, name: str) -> tvm.tirx.PrimFunc:
    built = resolve_one(spec).build()
    func = built["main"] if isinstance(built, tvm.IRModule) else built
    return func.with_attr("global_symbol", name)


def _module(**specs) -> tvm.IRModule:
    """An IRModule of the PrimFuncs of ``specs`` (task name -> workload spec)."""
    return tvm.IRModule({name: _func(spec, name) for name, spec in specs.items()})


def test_labels_follow_the_distance_thresholds():
    assert label_of(0.5) == "near" and label_of(NEAR_DISTANCE) == "near"
    assert label_of(NEAR_DISTANCE + 0.01) == "moderate" and label_of(FAR_DISTANCE) == "moderate"
    assert label_of(FAR_DISTANCE + 0.01) == "far"
    assert TaskConfidence("far", 5.0).uncertain and TaskConfidence("none").uncertain
    assert not TaskConfidence("moderate", 3.0).uncertain


def test_a_task_the_library_holds_is_exact_and_one_far_from_it_is_far(
    target, dense_library, tmp_path
):
    mod = _module(own="mm_512", far=FAR_DENSE)
    result = run_tir(mod, target, tmp_path, weights=None, library=dense_library, settings=TINY)
    own, far = result.task("own").confidence, result.task("far").confidence
    assert own.label == "exact" and own.distance == pytest.approx(0.0, abs=1e-3)
    assert own.neighbour == "mm_512" and own.same_kind and own.same_main_block
    assert far.label == "far" and far.distance > FAR_DISTANCE
    assert far.neighbour in DENSE_TASKS and far.same_kind and not far.same_main_block
    # nothing measured without verify or verify_uncertain
    assert result.tasks_measured == 0 and not any(t.verified for t in result.tasks)
    summary = read_summary(tmp_path)
    assert summary["confidence"] == {"exact": 1, "near": 0, "moderate": 0, "far": 1, "none": 0}
    by_name = {t["task_name"]: t["confidence"] for t in summary["tasks"]}
    assert by_name["far"]["label"] == "far" and by_name["far"]["distance"] > FAR_DISTANCE
    assert summary["tasks_measured"] == 0 and summary["verify_uncertain"] == 0


def test_a_task_of_a_kind_the_library_lacks_is_none(target, dense_library, tmp_path, caplog):
    mod = resolve_one("softmax:2,16,16").build()
    with caplog.at_level("INFO", logger="ms_meta.one_shot.run"):
        result = run_tir(mod, target, tmp_path, weights=None, library=dense_library, settings=TINY)
    (task,) = result.tasks
    assert task.source == "search" and task.confidence.label == "none"
    assert task.confidence.distance is None and "no softmax task" in task.confidence.note
    assert "confidence none" in caplog.text  # the per-task log line says it


def test_a_task_no_library_schedule_fits_is_none_with_its_neighbour_kept(
    target, dense_library, tmp_path
):
    broken = load_library(dense_library.save(tmp_path / "lib.library.json.gz"))
    for task in broken.tasks:
        for schedule in task.schedules:
            for inst in schedule.trace[0]:
                if inst[0] in ("GetSBlock", "GetBlock"):
                    inst[2][0] = "no_such_block"
    mod = resolve_one("mm_512").build()
    result = run_tir(mod, target, tmp_path / "run", weights=None, library=broken, settings=TINY)
    (task,) = result.tasks
    assert task.source == "search" and task.confidence.label == "none"
    assert task.confidence.neighbour == "mm_512" and task.confidence.same_main_block
    assert "no library schedule fits" in task.confidence.note


def test_without_a_library_every_task_is_none(target, tmp_path):
    mod = resolve_one("dense:16,16,16").build()
    result = run_tir(mod, target, tmp_path, weights=None, library=None, settings=TINY)
    assert result.tasks[0].confidence.label == "none"
    assert result.confidence_counts["none"] == 1


def test_verify_uncertain_measures_only_the_uncertain_tasks(target, dense_library, tmp_path):
    mod = _module(own="mm_512", far=FAR_DENSE)
    settings = SearchSettings(
        population_size=16, genetic_num_iters=1, finalists=4, init_min_unmeasured=4,
        verify_uncertain=2,
    )  # fmt: skip
    result = run_tir(mod, target, tmp_path, weights=None, library=dense_library,
                     settings=settings, builder=InProcessBuilder(),
                     runner=InProcessRunner())  # fmt: skip
    own, far = result.task("own"), result.task("far")
    assert own.confidence.label == "exact" and not own.verified and own.status == "predicted"
    assert far.confidence.label == "far" and len(far.verified) == 2 and far.status == "measured"
    assert result.tasks_measured == 1
    # the far task's two measurements are real records; the exact task has none
    measured = (tmp_path / "database_tuning_record.json").read_text().splitlines()
    assert len([line for line in measured if line.strip()]) == 2
    summary = read_summary(tmp_path)
    assert summary["tasks_measured"] == 1 and summary["verify_uncertain"] == 2


def test_verify_uncertain_is_validated():
    with pytest.raises(ValueError, match="verify_uncertain"):
        SearchSettings(verify_uncertain=-1)


def test_cli_prints_the_confidence_and_the_count_per_label(dense_library, tmp_path):
    path = dense_library.save(tmp_path / "dense.library.json.gz")
    result = CliRunner().invoke(
        cli,
        ["tune", "mm_512", "--mode", "one-shot", "--library", str(path), "--weights", "none",
         "--no-measure", "--verify-uncertain", "1", "--population", "16", "--generations", "1",
         "--work-dir", str(tmp_path / "run")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "confidence: exact (0.00 from mm_512, same kind, same main block)" in result.output
    assert "tasks by confidence: exact 1; measured in this run: 0 of 1" in result.output
    assert read_summary(tmp_path / "run")["tasks_measured"] == 0


def test_cli_refuses_verify_uncertain_in_measured_mode():
    result = CliRunner().invoke(cli, ["tune", "mm_512", "--verify-uncertain", "2"])
    assert result.exit_code != 0 and "--verify-uncertain" in result.output


@pytest.mark.slow
def test_cli_verify_uncertain_measures_a_far_task(dense_library, tmp_path):
    path = dense_library.save(tmp_path / "dense.library.json.gz")
    result = CliRunner().invoke(
        cli,
        ["tune", FAR_DENSE, "--mode", "one-shot", "--library", str(path), "--weights", "none",
         "--no-measure", "--verify-uncertain", "1", "--population", "16", "--generations", "1",
         "--work-dir", str(tmp_path / "run")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "confidence: far (" in result.output and "MEASURED" in result.output
    assert "tasks by confidence: far 1; measured in this run: 1 of 1" in result.output
    summary = read_summary(tmp_path / "run")
    assert summary["tasks_measured"] == 1 and summary["tasks"][0]["measured"] is True
