"""One-shot tuning on real (small) TVM workloads: no builder, no runner, applied records."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import numpy as np
import pytest
import tvm
import tvm_ffi
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms
from tvm.s_tir.meta_schedule.builder import PyBuilder
from tvm.s_tir.meta_schedule.runner import PyRunner

from ms_meta import MetaCostModel
from ms_meta.data.layout import is_database_dir
from ms_meta.errors import MsMetaError, TargetError, WeightsError
from ms_meta.model.weights import default_weights_path
from ms_meta.one_shot import (
    PREDICTED_RECORD_FILE,
    PREDICTED_RUN_SECS,
    PREDICTED_WORKLOAD_FILE,
    NothingToTuneError,
    SearchSettings,
    read_summary,
    run_relax,
    run_tir,
    search_task,
    tune_relax,
    tune_tir,
)
from ms_meta.one_shot.relax import prepare_relax
from ms_meta.one_shot.run import other_cpu_warning, untrained_warning
from ms_meta.tuning.builder import fast_build, fast_export
from ms_meta.tuning.target import target_summary
from ms_meta.workloads import resolve_one

# Small enough for seconds per test; large enough that the evolution runs (mutation, scoring).
TINY = SearchSettings(population_size=16, genetic_num_iters=1, finalists=4, init_min_unmeasured=4)


@derived_object
class RaisingBuilder(PyBuilder):
    def build(self, build_inputs):
        raise AssertionError("one-shot mode called the builder")


@derived_object
class RaisingRunner(PyRunner):
    def run(self, runner_inputs):
        raise AssertionError("one-shot mode called the runner")


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _run_untuned_and_tuned(mod, sch, target, inputs):
    """Outputs of the untuned function and of the scheduled one, on the same inputs."""
    outputs = []
    for module in (mod, sch.mod):
        lib = tvm.compile(module, target=target)
        args = [tvm.runtime.tensor(a) for a in inputs]
        out_shape = [int(d) for d in module["main"].params[-1].shape]
        out = tvm.runtime.tensor(np.zeros(out_shape, "float32"))
        lib["main"](*args, out)
        outputs.append(out.numpy())
    return outputs


def test_never_builds_runs_or_updates(target, tmp_path, no_build_or_run):
    mod = resolve_one("dense:32,32,32").build()
    model = MetaCostModel(weights=None, target=target)
    result = run_tir(mod, target, tmp_path, cost_model=model, settings=TINY, library=None,
                     builder=RaisingBuilder(), runner=RaisingRunner())  # fmt: skip
    assert model.summary.updates == 0 and model.summary.predicted > 0
    (task,) = result.tasks
    assert task.status == "predicted" and not task.measured and task.predicted_rank == 1
    assert task.scored >= TINY.population_size and task.finalists >= 1
    assert 0 < task.predict_seconds <= task.search_seconds
    # one predicted record, under names nothing reads as measurements
    (record,) = result.database.get_all_tuning_records()
    assert [float(s) for s in record.run_secs] == [PREDICTED_RUN_SECS]
    assert (tmp_path / PREDICTED_RECORD_FILE).is_file()
    assert (tmp_path / PREDICTED_WORKLOAD_FILE).is_file()
    assert not (tmp_path / "database_tuning_record.json").exists()
    assert not (tmp_path / "database_workload.json").exists()
    summary = read_summary(tmp_path)
    assert summary["measured"] is False and summary["tasks"][0]["measured"] is False
    assert summary["tasks"][0]["score"] == pytest.approx(task.score)
    assert f"run_secs=[{PREDICTED_RUN_SECS:g}]" in summary["run_secs_convention"]
    # ms-meta's own record readers do not see a tuning database here
    assert not is_database_dir(tmp_path)


@pytest.mark.parametrize(
    "spec, inputs",
    [
        ("dense:16,32,24", [(16, 24), (32, 24)]),
        ("conv2d_nchw:1,8,10,10,8,3,3,1,1", [(1, 8, 10, 10), (8, 8, 3, 3)]),
    ],
)
def test_pick_applies_through_compile_tir_and_is_correct(target, tmp_path, spec, inputs):
    mod = resolve_one(spec).build()
    database = tune_tir(mod, target, tmp_path, weights=None, settings=TINY, library=None, seed=3)
    sch = ms.tir_integration.compile_tir(database, mod, target)
    assert sch is not None
    assert not tvm_ffi.structural_equal(sch.mod, mod)  # a schedule was really applied
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(shape).astype("float32") for shape in inputs]
    untuned, tuned = _run_untuned_and_tuned(mod, sch, target, arrays)
    np.testing.assert_allclose(tuned, untuned, rtol=1e-4, atol=1e-4)


def test_seeded_search_is_reproducible_on_one_thread(target):
    mod = resolve_one("dense:16,16,16").build()
    model = MetaCostModel(weights=None, target=target)
    settings = replace(TINY, num_threads=1)
    picks = [search_task(mod, target, model, rand_state=7, settings=settings) for _ in range(2)]
    assert picks[0].best.score == pytest.approx(picks[1].best.score)
    assert str(picks[0].best.trace) == str(picks[1].best.trace)
    scores = [f.score for f in picks[0].finalists]
    assert scores == sorted(scores, reverse=True)
    assert [f.rank for f in picks[0].finalists] == list(range(1, len(scores) + 1))


def _tiny_relax_model():
    from tvm import relax

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((4, 16), "float32"))
    w = relax.Var("w", relax.TensorType((16, 8), "float32"))
    with bb.function("main", [x, w]):
        with bb.dataflow():
            y = bb.emit(relax.op.matmul(x, w))
            out = bb.emit_output(relax.op.nn.relu(y))
        bb.emit_func_output(out)
    weight = np.random.default_rng(1).standard_normal((16, 8)).astype("float32")
    return bb.get(), {"w": tvm.runtime.tensor(weight)}, weight


def test_relax_model_compiles_with_the_one_shot_database(target, tmp_path, no_build_or_run):
    from tvm import relax

    mod, params, weight = _tiny_relax_model()
    database = tune_relax(mod, params, target, tmp_path, weights=None, settings=TINY, library=None)
    summary = read_summary(tmp_path)
    assert summary["kind"] == "relax"
    (task,) = summary["tasks"]
    assert task["task_name"] == "fused_matmul_relu" and task["status"] == "predicted"
    assert task["search_seconds"] > 0 and task["predict_seconds"] > 0
    assert len(database.get_all_tuning_records()) == 1
    # the database schedules the fused function compile_relax looks up
    fused = prepare_relax(mod, params, target)
    with target, database, tvm.transform.PassContext(opt_level=3):
        applied = relax.transform.MetaScheduleApplyDatabase()(fused)
    (func,) = [f for _, f in applied.functions_items() if isinstance(f, tvm.tirx.PrimFunc)]
    assert func.attrs.get("tirx.is_scheduled")
    executable = ms.relax_integration.compile_relax(database, mod, target, params)
    vm = relax.VirtualMachine(executable, tvm.cpu())
    x = np.random.default_rng(2).standard_normal((4, 16)).astype("float32")
    out = vm["main"](tvm.runtime.tensor(x))
    np.testing.assert_allclose(out.numpy(), np.maximum(x @ weight, 0), rtol=1e-4, atol=1e-4)


def test_relax_result_reports_every_task(target, tmp_path):
    mod, params, _ = _tiny_relax_model()
    result = run_relax(mod, params, target, tmp_path, weights=None, settings=TINY, library=None)
    assert [t.task_name for t in result.tasks] == ["fused_matmul_relu"]
    assert result.search_seconds == pytest.approx(result.tasks[0].search_seconds)
    assert result.tasks[0].weight == 1.0


@derived_object
class InProcessBuilder(PyBuilder):
    """A real build (ms-meta's build and export functions) without a worker pool."""

    def build(self, build_inputs):
        return [
            ms.builder.BuilderResult(fast_export(fast_build(i.mod, i.target, None)), None)
            for i in build_inputs
        ]


@derived_object
class InProcessRunner(PyRunner):
    """A real measurement (time_evaluator) without a runner process."""

    def run(self, runner_inputs):
        futures = []
        for runner_input in runner_inputs:
            rt_mod = tvm.runtime.load_module(runner_input.artifact_path)
            rng = np.random.default_rng(0)
            args = [
                tvm.runtime.tensor(rng.random([int(d) for d in info.shape]).astype(info.dtype))
                for info in runner_input.args_info
            ]
            timer = rt_mod.time_evaluator(rt_mod.entry_name, tvm.cpu(), number=1, repeat=3)
            result = ms.runner.RunnerResult([float(s) for s in timer(*args).results], None)
            futures.append(ms.runner.RunnerFuture(lambda: True, lambda r=result: r))
        return futures


def test_verify_records_the_fastest_measured_finalist(target, tmp_path):
    mod = resolve_one("dense:16,16,16").build()
    result = run_tir(mod, target, tmp_path, weights=None, verify=3, settings=TINY, library=None,
                     builder=InProcessBuilder(), runner=InProcessRunner())  # fmt: skip
    (task,) = result.tasks
    assert task.status == "measured" and len(task.verified) == 3
    fastest = min(task.verified, key=lambda m: m.mean_seconds)
    assert task.measured_seconds == fastest.median_seconds
    assert task.predicted_rank == fastest.rank and task.score == fastest.score
    assert [m.rank for m in task.verified] == [1, 2, 3]
    # all three measurements are real records; the database applies the fastest
    assert len(_records(tmp_path / "database_tuning_record.json")) == 3
    best = result.database.query_tuning_record(mod, target, "main")
    assert float(best.run_secs[0]) < 1.0
    assert sorted(float(s) for s in best.run_secs) == sorted(fastest.run_secs)


@pytest.mark.slow
def test_verify_records_a_measured_record(target, tmp_path):
    mod = resolve_one("dense:16,16,16").build()
    result = run_tir(mod, target, tmp_path, weights=None, verify=1, settings=TINY, library=None)
    (task,) = result.tasks
    assert task.status == "measured" and task.measured and result.measured
    assert task.predicted_rank == 1 and len(task.verified) == 1
    assert 0 < task.measured_seconds < 1.0
    # the measurement is a real record in MetaSchedule's standard database
    (line,) = _records(tmp_path / "database_tuning_record.json")
    assert 0 < min(line[1][1]) < 1.0
    measured = ms.database.JSONDatabase(work_dir=str(tmp_path))
    assert len(measured.get_all_tuning_records()) == 1
    applied = ms.tir_integration.compile_tir(result.database, mod, target)
    assert str(applied.trace) == str(ms.tir_integration.compile_tir(measured, mod, target).trace)
    assert float(result.database.query_tuning_record(mod, target, "main").run_secs[0]) < 1.0
    assert read_summary(tmp_path)["tasks"][0]["measured"] is True


def test_a_module_without_primfunc_is_a_clear_error(target, tmp_path):
    mod, _, _ = _tiny_relax_model()  # Relax only: nothing for tune_tir
    with pytest.raises(NothingToTuneError, match=r"no TIR PrimFunc.*tune_relax"):
        tune_tir(mod, target, tmp_path, weights=None)
    with pytest.raises(NothingToTuneError, match="expected a TIR PrimFunc"):
        tune_tir("dense:8,8,8", target, tmp_path, weights=None)
    assert issubclass(NothingToTuneError, MsMetaError)


def test_a_relax_module_without_tasks_is_a_clear_error(target, tmp_path):
    from tvm import relax

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((4,), "float32"))
    with bb.function("main", [x]):
        bb.emit_func_output(x)
    with pytest.raises(NothingToTuneError, match="no TIR task"):
        tune_relax(bb.get(), None, target, tmp_path, weights=None)


def test_bad_weights_path_is_a_clear_error(target, tmp_path):
    mod = resolve_one("dense:8,8,8").build()
    with pytest.raises(WeightsError, match="does not exist"):
        tune_tir(mod, target, tmp_path, weights=tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="not a readable"):
        tune_tir(mod, target, tmp_path, weights=garbage)


def test_target_without_num_cores_is_a_clear_error(tmp_path):
    mod = resolve_one("dense:8,8,8").build()
    with pytest.raises(TargetError, match="num-cores"):
        tune_tir(mod, {"kind": "llvm"}, tmp_path, weights=None)


def test_saved_weights_load_as_pretrained_without_warning(target, tmp_path, caplog):
    weights = tmp_path / "weights.pt"
    MetaCostModel(weights=None, target=target, seed=1).save(str(weights))
    mod = resolve_one("dense:8,8,8").build()
    with caplog.at_level(logging.WARNING, logger="ms_meta.one_shot"):
        result = run_tir(
            mod, target, tmp_path / "run", weights=weights, settings=TINY, library=None
        )
    assert result.pretrained and result.model_warning is None
    assert result.weights == str(weights)
    assert "UNTRAINED" not in caplog.text
    assert read_summary(tmp_path / "run")["model"]["pretrained"] is True


def test_untrained_model_warns_loudly(target, tmp_path, caplog):
    mod = resolve_one("dense:8,8,8").build()
    with caplog.at_level(logging.WARNING, logger="ms_meta.one_shot"):
        result = run_tir(mod, target, tmp_path, weights=None, settings=TINY, library=None)
    assert result.model_warning == untrained_warning(None)
    assert "UNTRAINED" in caplog.text
    assert read_summary(tmp_path)["model"]["warning"] == result.model_warning


@pytest.mark.parametrize("cpu", ["rocketlake", "icelake-server"])
def test_default_weights_of_another_cpu_come_with_a_warning(cpu, tmp_path):
    mod = resolve_one("dense:8,8,8").build()
    target = tvm.target.Target({"kind": "llvm", "mcpu": cpu, "num-cores": 2})
    result = run_tir(
        mod, target, tmp_path, settings=TINY, library=None
    )  # no measurement: any CPU works
    assert result.pretrained and result.weights.endswith("llvm-rocketlake.pt")
    if default_weights_path(target_summary(target)) is not None:
        assert result.model_warning is None
    else:
        assert result.model_warning == other_cpu_warning("rocketlake", target)
        assert "trained on rocketlake" in result.model_warning


def test_a_new_run_replaces_the_previous_predictions(target, tmp_path):
    mod = resolve_one("dense:8,8,8").build()
    for seed in (1, 2):
        tune_tir(mod, target, tmp_path, weights=None, settings=TINY, library=None, seed=seed)
    assert len(_records(tmp_path / PREDICTED_RECORD_FILE)) == 1


def test_settings_are_validated():
    with pytest.raises(ValueError, match="population_size"):
        SearchSettings(population_size=1)
    with pytest.raises(ValueError, match="genetic_mutate_prob"):
        SearchSettings(genetic_mutate_prob=1.5)


def test_importable_from_the_package():
    from ms_meta import one_shot

    assert one_shot.tune_tir is tune_tir and one_shot.tune_relax is tune_relax
