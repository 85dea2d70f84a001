"""Schedule libraries: built from real tuning databases, replayed on real tasks, picked from."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import tvm_ffi
from click.testing import CliRunner
from tvm.s_tir import meta_schedule as ms

from ms_meta import MetaCostModel
from ms_meta.cli.main import cli
from ms_meta.feature.schema import FEATURE_VERSION
from ms_meta.one_shot import SearchSettings, read_summary, run_tir, tune_tir
from ms_meta.one_shot.library import (
    LibraryError,
    build_library,
    load_library,
    without_postprocs,
)
from ms_meta.one_shot.search import library_search
from tests.conftest import SEED_RECORDS, tree_hash
from tests.one_shot.test_one_shot import RaisingBuilder, RaisingRunner, _run_untuned_and_tuned

TINY = SearchSettings(population_size=16, genetic_num_iters=1, finalists=4, init_min_unmeasured=4)
DENSE_TASKS = ["mm_512", "mm_1024", "bert_qkv"]  # dense 512^3, 1024^3, 128x768x768


@pytest.fixture(scope="module")
def dense_library():
    return build_library([SEED_RECORDS], tasks=DENSE_TASKS, per_task=3)


def test_build_keeps_the_fastest_valid_schedules_without_postprocs(dense_library):
    assert sorted(t.name for t in dense_library.tasks) == sorted(DENSE_TASKS)
    for task in dense_library.tasks:
        assert task.kind == "dense" and len(task.schedules) == 3
        relative = [s.relative for s in task.schedules]
        assert relative[0] == pytest.approx(1.0) and relative == sorted(relative)
        for schedule in task.schedules:
            insts, decisions = schedule.trace
            assert insts and all(inst[0] != "EnterPostproc" for inst in insts)
            assert all(index < len(insts) for index, _ in decisions)
    assert dense_library.meta["per_task"] == 3
    assert dense_library.meta["target"]["mcpu"] == "rocketlake"


def test_without_postprocs_cuts_at_enter_postproc():
    trace = [[["A", [], [], []], ["EnterPostproc", [], [], []], ["B", [], [], []]],
             [[0, 4], [2, 7]]]  # fmt: skip
    assert without_postprocs(trace) == [[["A", [], [], []]], [[0, 4]]]


def test_save_and_load_round_trip(dense_library, tmp_path):
    path = dense_library.save(tmp_path / "lib.library.json.gz")
    loaded = load_library(path)
    assert [t.name for t in loaded.tasks] == [t.name for t in dense_library.tasks]
    assert loaded.tasks[0].schedules[0].trace == dense_library.tasks[0].schedules[0].trace
    assert loaded.num_schedules == dense_library.num_schedules
    assert [p.name for p in tmp_path.iterdir()] == ["lib.library.json.gz"]  # no temporary left


def test_bad_library_files_are_clear_errors(dense_library, tmp_path):
    with pytest.raises(LibraryError, match="does not exist"):
        load_library(tmp_path / "missing.library.json.gz")
    garbage = tmp_path / "garbage.library.json.gz"
    garbage.write_bytes(b"not gzip")
    with pytest.raises(LibraryError, match="not a readable"):
        load_library(garbage)
    stale = tmp_path / "stale.library.json.gz"
    raw = dense_library.to_dict()
    raw["feature_version"] = FEATURE_VERSION - 1
    stale.write_bytes(gzip.compress(json.dumps(raw).encode()))
    with pytest.raises(LibraryError, match="rebuild it"):
        load_library(stale)
    with pytest.raises(LibraryError, match="no task with a valid measured record"):
        build_library([SEED_RECORDS], tasks=["no_such_task"])


def test_nearest_keeps_to_the_operator_kind(dense_library):
    features = dense_library.tasks[0].features
    found = dense_library.nearest("dense", features, k=2)
    assert len(found) == 2 and found[0][1] == 0.0  # the task itself first
    assert dense_library.nearest("softmax", features) == []
    others = dense_library.nearest("dense", features, exclude=[found[0][0].name])
    assert others and all(t.name != found[0][0].name for t, _ in others)


def test_library_schedules_replay_on_a_new_shape_and_compute_correctly(
    target, dense_library, tmp_path, no_build_or_run
):
    # dense 256x512x512: a shape no library task has
    from ms_meta.workloads import resolve_one

    mod = resolve_one("dense:256,512,512").build()
    model = MetaCostModel(weights=None, target=target)
    found = library_search(mod, target, model, dense_library, finalists=20)
    assert found.source == "library" and not found.notes
    assert set(found.neighbours) == set(DENSE_TASKS)
    assert 1 <= len(found.finalists) <= 9
    assert [f.rank for f in found.finalists] == list(range(1, len(found.finalists) + 1))
    assert all(f.origin.split(" #")[0] in DENSE_TASKS for f in found.finalists)
    # with no weight on the library's measured speeds, the model's score alone ranks
    by_score = library_search(mod, target, model, dense_library, finalists=20, prior_weight=0.0)
    scores = [f.score for f in by_score.finalists]
    assert scores == sorted(scores, reverse=True)
    assert sorted(scores) == sorted(f.score for f in found.finalists)
    # the committed pick applies through compile_tir and computes what the untuned function does
    result = run_tir(mod, target, tmp_path, cost_model=model, library=dense_library,
                     settings=TINY, builder=RaisingBuilder(), runner=RaisingRunner())  # fmt: skip
    (task,) = result.tasks
    assert task.status == "predicted" and task.source == "library"
    assert task.origin == found.finalists[0].origin
    assert model.summary.updates == 0
    sch = ms.tir_integration.compile_tir(result.database, mod, target)
    assert not tvm_ffi.structural_equal(sch.mod, mod)
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(s).astype("float32") for s in ((256, 512), (512, 512))]
    untuned, tuned = _run_untuned_and_tuned(mod, sch, target, arrays)
    np.testing.assert_allclose(tuned, untuned, rtol=1e-4, atol=1e-4)
    summary = read_summary(tmp_path)
    assert summary["tasks_from_library"] == 1 and summary["tasks"][0]["source"] == "library"


def test_a_task_the_library_cannot_serve_is_searched(target, dense_library, tmp_path):
    from ms_meta.workloads import resolve_one

    # no softmax in the library: the search takes over, and says why
    mod = resolve_one("softmax:2,16,16").build()
    result = run_tir(mod, target, tmp_path, weights=None, library=dense_library, settings=TINY)
    (task,) = result.tasks
    assert task.status == "predicted" and task.source == "search"
    assert ("library: the library has no softmax task with this task's main-block loop count; "
            "searched instead") in task.error  # fmt: skip


def test_schedules_that_do_not_fit_fall_back_to_the_search(target, dense_library, tmp_path):
    from ms_meta.workloads import resolve_one

    broken = load_library(dense_library.save(tmp_path / "lib.library.json.gz"))
    for task in broken.tasks:
        for schedule in task.schedules:
            for inst in schedule.trace[0]:
                if inst[0] == "GetSBlock" or inst[0] == "GetBlock":
                    inst[2][0] = "no_such_block"
    mod = resolve_one("dense:16,32,24").build()
    result = run_tir(mod, target, tmp_path / "run", weights=None, library=broken, settings=TINY)
    (task,) = result.tasks
    assert task.status == "predicted" and task.source == "search"
    assert "none of the 9 schedules of 3 library tasks fits" in task.error


def test_cli_builds_and_shows_a_library_without_touching_the_records(tmp_path):
    before = tree_hash(SEED_RECORDS)
    out = tmp_path / "lib.library.json.gz"
    runner = CliRunner()
    built = runner.invoke(cli, ["library", "build", str(SEED_RECORDS), "--out", str(out),
                                "--per-task", "2"])  # fmt: skip
    assert built.exit_code == 0, built.output
    assert "12 tasks" in built.output and out.is_file()
    shown = runner.invoke(cli, ["library", "show", str(out)])
    assert shown.exit_code == 0 and "12 tasks, 24 schedules" in shown.output
    assert "dense: " in shown.output
    assert tree_hash(SEED_RECORDS) == before
    bad = runner.invoke(cli, ["library", "show", str(tmp_path / "missing.gz")])
    assert bad.exit_code == 1 and "does not exist" in bad.output
    assert "Traceback" not in bad.output


def test_tune_tir_takes_a_library_path(target, dense_library, tmp_path):
    from ms_meta.workloads import resolve_one

    path = dense_library.save(tmp_path / "lib.library.json.gz")
    mod = resolve_one("dense:64,128,128").build()
    database = tune_tir(mod, target, tmp_path / "run", weights=None, library=path)
    assert len(database.get_all_tuning_records()) == 1
    assert read_summary(tmp_path / "run")["library"] == str(path)


def test_a_task_the_library_holds_gets_its_fastest_measured_schedule(
    target, dense_library, tmp_path
):
    from ms_meta.workloads import resolve_one

    model = MetaCostModel(weights=None, target=target)
    saved = load_library(dense_library.save(tmp_path / "lib.library.json.gz"))  # rounded
    for library in (dense_library, saved):
        found = library_search(resolve_one("mm_512").build(), target, model, library)
        assert found.neighbours[0] == "mm_512"
        assert found.finalists[0].origin == "mm_512 #1 (this task's own measurement)"
        assert found.finalists[0].own_measurement
        assert not any(f.own_measurement for f in found.finalists[1:])


def test_a_library_that_raises_costs_the_task_nothing_but_the_library(
    target, dense_library, tmp_path, monkeypatch
):
    from ms_meta.workloads import resolve_one

    def broken(*args, **kwargs):
        raise RuntimeError("unexpected")

    monkeypatch.setattr("ms_meta.one_shot.run.library_search", broken)
    mod = resolve_one("dense:16,32,24").build()
    result = run_tir(mod, target, tmp_path, weights=None, library=dense_library, settings=TINY)
    (task,) = result.tasks
    assert task.status == "predicted" and task.source == "search"
    assert "library: failed (RuntimeError: unexpected); searched instead" in task.error


def test_a_library_of_another_cpu_comes_with_a_warning(dense_library, tmp_path, caplog):
    import logging

    import tvm

    from ms_meta.workloads import resolve_one

    path = dense_library.save(tmp_path / "lib.library.json.gz")  # measured on rocketlake
    target = tvm.target.Target({"kind": "llvm", "mcpu": "icelake-server", "num-cores": 2})
    mod = resolve_one("dense:16,32,24").build()
    with caplog.at_level(logging.WARNING, logger="ms_meta.one_shot"):
        run_tir(mod, target, tmp_path / "run", weights=None, library=path, settings=TINY)
    assert "was measured on rocketlake, the target is icelake-server" in caplog.text
    caplog.clear()
    rocketlake = tvm.target.Target({"kind": "llvm", "mcpu": "rocketlake", "num-cores": 2})
    with caplog.at_level(logging.WARNING, logger="ms_meta.one_shot"):
        run_tir(mod, rocketlake, tmp_path / "run2", weights=None, library=path, settings=TINY)
    assert "was measured on" not in caplog.text


def _damage(dense_library, edit) -> dict:
    raw = json.loads(json.dumps(dense_library.to_dict()))
    edit({t["name"]: t for t in raw["tasks"]})
    return raw


@pytest.mark.parametrize(
    ("edit", "cause"),
    [
        (
            lambda t: t["mm_512"].update(features=t["mm_512"]["features"][:5]),
            "a feature vector of length 5",
        ),
        (
            lambda t: t["mm_512"].update(features=t["mm_512"]["features"] * 3),
            "a feature vector of length",
        ),
        (
            lambda t: t["mm_512"]["schedules"][0].update(trace=[[["GetSBlock"]], []]),
            "a trace instruction that is not [kind, inputs, attrs, outputs]",
        ),
        (
            lambda t: t["mm_512"]["schedules"][0]["trace"][1].append([10**6, 1]),
            "a trace decision that names no instruction",
        ),
        (lambda t: t["mm_512"].pop("schedules"), "task #"),
    ],
    ids=["short-features", "long-features", "bad-instruction", "bad-decision", "no-schedules"],
)
def test_damaged_library_tasks_are_left_out_with_one_warning(
    dense_library, tmp_path, caplog, edit, cause
):
    path = tmp_path / "damaged.library.json.gz"
    path.write_bytes(gzip.compress(json.dumps(_damage(dense_library, edit)).encode()))
    with caplog.at_level("WARNING", logger="ms_meta.one_shot.library"):
        loaded = load_library(path)
    assert sorted(t.name for t in loaded.tasks) == ["bert_qkv", "mm_1024"]
    warnings = [r.getMessage() for r in caplog.records if "is damaged" in r.getMessage()]
    assert len(warnings) == 1 and str(path) in warnings[0] and cause in warnings[0]
    assert loaded.meta["damaged"]["tasks"] == 1 and cause in loaded.meta["damaged"]["first"]


def test_unknown_instructions_are_found_only_when_asked(dense_library, tmp_path):
    def rename(tasks):
        tasks["bert_qkv"]["schedules"][0]["trace"][0][0][0] = "NoSuchInstruction"

    path = tmp_path / "renamed.library.json.gz"
    path.write_bytes(gzip.compress(json.dumps(_damage(dense_library, rename)).encode()))
    assert len(load_library(path).tasks) == 3  # TVM-free reading does not look
    checked = load_library(path, check_instructions=True)
    assert sorted(t.name for t in checked.tasks) == ["mm_1024", "mm_512"]
    assert "'NoSuchInstruction' TVM does not know" in checked.meta["damaged"]["first"]


def test_the_shipped_libraries_are_not_damaged():
    from ms_meta.model.weights import DEFAULT_WEIGHTS_DIR

    shipped = sorted(DEFAULT_WEIGHTS_DIR.glob("*.library.json.gz"))
    for path in shipped:
        assert "damaged" not in load_library(path, check_instructions=True).meta, path
