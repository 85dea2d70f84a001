"""MetaCostModel: a real MetaSchedule CostModel around the GNN."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import numpy as np
import pytest
from tvm.s_tir import Schedule
from tvm.s_tir import meta_schedule as ms

from ms_meta import MetaCostModel
from ms_meta.errors import WeightsError
from ms_meta.feature.schema import FEATURE_VERSION
from ms_meta.model.metrics import pairwise_accuracy
from ms_meta.model.weights import (
    DEFAULT_WEIGHTS_DIR,
    default_weights_path,
    load_checkpoint,
    other_cpu_weights_path,
    save_checkpoint,
)

RECORDS = Path(__file__).resolve().parents[2] / "tuning_records" / "llvm-rocketlake-2c"


def _results(latencies):
    return [
        ms.runner.RunnerResult(None, "run failed")
        if lat is None
        else ms.runner.RunnerResult([float(lat)], None)
        for lat in latencies
    ]


def test_is_a_metaschedule_cost_model(sample_candidates):
    context, candidates = sample_candidates("dense:64,64,64", count=8)
    model = MetaCostModel(weights=None)
    assert isinstance(model, ms.cost_model.CostModel)
    scores = model.predict(context, candidates)
    assert scores.shape == (8,) and scores.dtype == np.float64
    assert (scores > 0).all()  # MetaSchedule samples parents in proportion to the scores


def test_no_candidates_give_an_empty_prediction_and_no_update(sample_candidates):
    """MetaSchedule calls the model with empty lists; the C++ result buffer is then NULL."""
    context, candidates = sample_candidates("dense:64,64,64", count=8)
    model = MetaCostModel(weights=None, scoring_process=False)
    scores = model.predict(context, [])
    assert scores.shape == (0,) and scores.dtype == np.float64
    model.update(context, [], [])
    assert model.summary.updates == 0 and model.summary.samples == 0
    # the model still works on the same task after the empty calls
    assert model.predict(context, candidates).shape == (8,)


def test_unencodable_candidates_score_neutral_with_a_warning_and_a_count(sample_candidates, caplog):
    import tvm

    from ms_meta.workloads import resolve_one

    context, candidates = sample_candidates("dense:64,64,64", count=8)
    func = resolve_one("dense:64,64,64").build()["main"]
    odd = ms.MeasureCandidate(Schedule(tvm.IRModule({"not_main": func})), candidates[0].args_info)
    mixed = [*candidates[:3], odd, *candidates[3:], odd]
    model = MetaCostModel(weights=None, scoring_process=False)
    with caplog.at_level(logging.WARNING, logger="ms_meta.feature.extractor"):
        scores = model.predict(context, mixed)
    assert "could not encode a candidate" in caplog.text
    assert model.summary.unencodable == 2 and model.summary.predicted == len(mixed)
    usable = np.delete(scores, [3, 9])
    assert np.isfinite(scores).all() and scores[3] == scores[9]
    assert usable.min() <= scores[3] <= usable.max()  # the median of the others
    # measuring them is no crash either: they are learned from as neutral graphs
    model.update(context, mixed, _results([1e-3] * len(mixed)))
    assert model.summary.samples == len(mixed) and model.summary.unencodable == 4


def test_seeded_and_deterministic(sample_candidates):
    context, candidates = sample_candidates("dense:64,64,64", count=8)
    a = MetaCostModel(weights=None, seed=3)
    b = MetaCostModel(weights=None, seed=3)
    latencies = [1e-3 * (i + 1) for i in range(8)]
    a.update(context, candidates, _results(latencies))
    b.update(context, candidates, _results(latencies))
    assert np.array_equal(a.predict(context, candidates), b.predict(context, candidates))
    c = MetaCostModel(weights=None, seed=4)
    assert not np.array_equal(a.predict(context, candidates), c.predict(context, candidates))


def test_save_load_round_trip_identical_predictions(sample_candidates, tmp_path):
    context, candidates = sample_candidates("conv2d_nchw:1,16,14,14,32,3,3,1,1", count=8)
    model = MetaCostModel(weights=None, seed=1)
    model.update(context, candidates[:6], _results([2e-3, 1e-3, 4e-3, 3e-3, None, 5e-4]))
    before = model.predict(context, candidates)
    path = tmp_path / "model.pt"
    model.save(str(path))
    assert not list(tmp_path.glob("*.tmp"))  # written atomically
    loaded = MetaCostModel(weights=path)
    assert np.array_equal(loaded.predict(context, candidates), before)
    other = MetaCostModel(weights=None, seed=99)
    other.load(str(path))
    assert np.array_equal(other.predict(context, candidates), before)


def test_adaptation_settings_come_from_the_weights_unless_given(sample_candidates, tmp_path):
    from ms_meta.model.weights import save_checkpoint

    context, candidates = sample_candidates("dense:64,64,64", count=8)
    path = tmp_path / "w.pt"
    MetaCostModel(weights=None, seed=1, scoring_process=False).save(str(path))
    checkpoint = load_checkpoint(path)
    checkpoint.meta["adapt"] = {"steps": 0, "lr": 1e-3}  # recorded zero: never adapt
    save_checkpoint(checkpoint, path)
    model = MetaCostModel(weights=path, scoring_process=False)
    assert (model.adapt_config.steps, model.adapt_config.lr) == (0, 1e-3)
    before = model.predict(context, candidates)
    model.update(context, candidates[:6], _results([2e-3, 1e-3, 4e-3, 3e-3, 6e-3, 5e-4]))
    assert np.array_equal(model.predict(context, candidates), before)
    given = MetaCostModel(weights=path, adapt_steps=7, adapt_lr=2e-3, scoring_process=False)
    assert (given.adapt_config.steps, given.adapt_config.lr) == (7, 2e-3)


def test_weights_metadata_mismatch_is_a_clear_error(tmp_path):
    path = tmp_path / "model.pt"
    MetaCostModel(weights=None).save(str(path))
    checkpoint = load_checkpoint(path)
    checkpoint.target = {"kind": "llvm", "mcpu": "some-other-cpu"}
    save_checkpoint(checkpoint, path)
    with pytest.raises(WeightsError, match="mcpu=some-other-cpu"):
        MetaCostModel(weights=path)
    # another CPU of the same kind only when asked for, and then marked
    allowed = MetaCostModel(weights=path, allow_other_cpu=True, scoring_process=False)
    assert allowed.pretrained and allowed.checkpoint_meta["other_cpu"] == "some-other-cpu"
    checkpoint.target = {"kind": "cuda", "arch": "sm_90"}
    save_checkpoint(checkpoint, path)
    with pytest.raises(WeightsError, match="kind=cuda"):
        MetaCostModel(weights=path, allow_other_cpu=True)
    checkpoint.target = {"kind": "llvm", "mcpu": "some-other-cpu"}
    save_checkpoint(checkpoint, path)
    raw = __import__("torch").load(path, weights_only=True)
    raw["feature_version"] = 0
    __import__("torch").save(raw, path)
    with pytest.raises(WeightsError, match="feature encoding v0"):
        MetaCostModel(weights=path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="not a readable"):
        MetaCostModel(weights=tmp_path / "junk.pt")
    with pytest.raises(WeightsError, match="does not exist"):
        MetaCostModel(weights=tmp_path / "missing.pt")


def _measured_set(task: str):
    """Real records measured on this machine type: (context, candidates, latencies)."""
    from ms_meta.tuning.intrin import import_tensor_intrinsics

    import_tensor_intrinsics("llvm")  # TuneContext would otherwise import every backend's
    folder = RECORDS / task
    assert folder.is_dir(), f"shipped records {folder} are missing"
    workload_line = json.loads((folder / "database_workload.json").read_text().splitlines()[0])
    workload = ms.database.Workload.from_json(workload_line)
    candidates, latencies = [], []
    for line in (folder / "database_tuning_record.json").read_text().splitlines()[:64]:
        record = ms.database.TuningRecord.from_json(json.loads(line)[1], workload)
        secs = [float(s) for s in record.run_secs]
        if min(secs) >= 1e9:
            continue
        sch = Schedule(workload.mod)
        record.trace.apply_to_schedule(sch, remove_postproc=False)
        candidates.append(ms.MeasureCandidate(sch, record.args_info))
        latencies.append(float(np.median(secs)))
    context = ms.TuneContext(mod=workload.mod, task_name=task)
    return context, candidates, np.asarray(latencies)


def test_learns_to_rank_real_measurements_better_than_chance():
    """An untrained model, updated on 32 measured schedules of a task, ranks 32 others."""
    accuracies = []
    for task in ("conv2d_nchw_1_256_14_14_256_3_3_1_1", "dense_128_768_768"):
        context, candidates, latencies = _measured_set(task)
        order = list(range(len(candidates)))
        random.Random(0).shuffle(order)
        train, test = order[: len(order) // 2], order[len(order) // 2 :]
        model = MetaCostModel(weights=None, seed=0)
        before = model.predict(context, [candidates[i] for i in test])
        model.update(context, [candidates[i] for i in train], _results(latencies[train]))
        scores = model.predict(context, [candidates[i] for i in test])
        assert not np.array_equal(before, scores)  # the update changed the task's predictions
        accuracies.append(pairwise_accuracy(scores, -latencies[test], np.zeros(len(test), int)))
    # Chance is 0.5. A few dozen samples are little for an untrained GNN; the pre-trained
    # model is what makes few-shot tuning work (see `ms-meta eval`).
    assert np.mean(accuracies) > 0.58, accuracies


def test_scoring_process_gives_the_same_scores_and_falls_back(sample_candidates, caplog):
    import logging

    context, candidates = sample_candidates("dense:64,64,64", count=8)
    many = candidates * 40  # 320 candidates: enough for the child process to be used
    local = MetaCostModel(scoring_process=False)
    remote = MetaCostModel(scoring_process=True)
    # the first large call starts the child and is scored here; later ones use the child
    assert np.array_equal(remote.predict(context, many), local.predict(context, many))
    assert remote._scorer is not None and remote._scorer.ready(wait=True)
    assert np.array_equal(remote.predict(context, many), local.predict(context, many))
    assert remote._scorer._pending == 0 and remote._scorer._params_token is None
    # after adaptation both score with the adapted parameters
    results = _results([1e-3 * (1 + i) for i in range(len(candidates))])
    for model in (local, remote):
        model.update(context, candidates, results)
    assert np.array_equal(remote.predict(context, many), local.predict(context, many))
    # a child that dies costs a warning, not the search: the caller scores from then on
    remote._scorer._proc.kill()
    remote._scorer._proc.wait()
    with caplog.at_level(logging.WARNING, logger="ms_meta.model.cost_model"):
        scores = remote.predict(context, many)
    assert np.array_equal(scores, local.predict(context, many))
    assert "scoring in this process" in caplog.text
    assert remote._scorer is None and not remote.scoring_process


def test_weights_tell_a_cpu_without_avx512_apart(tmp_path):
    # The same mcpu with AVX-512 turned off (a guest whose hypervisor hides it) builds other
    # kernels: weights of one are the other CPU's weights, by name and by check.
    full = {"kind": "llvm", "mcpu": "znver4", "num-cores": 2}
    masked = {**full, "mattr": ["-avx512f", "-avx512bw"]}
    path = tmp_path / "masked.pt"
    MetaCostModel(weights=None, target=masked, scoring_process=False).save(str(path))
    assert load_checkpoint(path).target["mattr"] == masked["mattr"]
    assert MetaCostModel(weights=path, target=masked, scoring_process=False).pretrained
    with pytest.raises(WeightsError, match="mcpu=znver4-noavx512, but the target has mcpu=znver4"):
        MetaCostModel(weights=path, target=full, scoring_process=False)
    allowed = MetaCostModel(weights=path, target=full, allow_other_cpu=True, scoring_process=False)
    assert allowed.checkpoint_meta["other_cpu"] == "znver4-noavx512"


def test_every_shipped_weights_file_is_found_for_its_own_target():
    shipped = sorted(DEFAULT_WEIGHTS_DIR.glob("*.pt"))
    assert shipped, "no weights ship with the package"
    for path in shipped:
        checkpoint = load_checkpoint(path)
        assert checkpoint.feature_version == FEATURE_VERSION, path.name
        assert default_weights_path(checkpoint.target) == path, path.name
        model = MetaCostModel(target=checkpoint.target, scoring_process=False)
        assert model.pretrained and "other_cpu" not in model.checkpoint_meta, path.name


def test_a_cpu_without_own_weights_prefers_those_of_its_mcpu(tmp_path, monkeypatch):
    monkeypatch.setattr("ms_meta.model.weights.DEFAULT_WEIGHTS_DIR", tmp_path)
    for name in ("llvm-rocketlake.pt", "llvm-znver4-noavx512.pt"):
        (tmp_path / name).write_bytes(b"")
    full = {"kind": "llvm", "mcpu": "znver4", "num-cores": 2}
    masked = {**full, "mattr": ["-avx512f"]}
    assert default_weights_path(masked) == tmp_path / "llvm-znver4-noavx512.pt"
    assert default_weights_path(full) is None
    assert other_cpu_weights_path(full) == tmp_path / "llvm-znver4-noavx512.pt"
    assert other_cpu_weights_path({**full, "mcpu": "icelake-server"}) == (
        tmp_path / "llvm-rocketlake.pt"
    )


def test_a_cpu_without_shipped_weights_starts_from_another_cpus(caplog, tmp_path, monkeypatch):
    icelake = {"kind": "llvm", "mcpu": "icelake-server", "num-cores": 2}
    with caplog.at_level(logging.WARNING, logger="ms_meta.model.cost_model"):
        model = MetaCostModel(target=icelake, scoring_process=False)
    assert model.pretrained and model.checkpoint_meta["other_cpu"] == "rocketlake"
    assert "no shipped weights for icelake-server" in caplog.text and "rocketlake" in caplog.text
    # the weights of its own CPU come without the note
    own = MetaCostModel(target={**icelake, "mcpu": "rocketlake"}, scoring_process=False)
    assert own.pretrained and "other_cpu" not in own.checkpoint_meta
    # with no weights of the target's kind at all: the untrained online model
    monkeypatch.setattr("ms_meta.model.weights.DEFAULT_WEIGHTS_DIR", tmp_path)
    assert not MetaCostModel(target=icelake, scoring_process=False).pretrained
