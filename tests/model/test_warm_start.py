"""MetaCostModel's warm start: the first time it meets a task, it adapts to the record store's
records of that workload and target, before the search has measured anything."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tvm
from tvm.s_tir import meta_schedule as ms

from ms_meta.labels import normalized_throughput
from ms_meta.model.cost_model import MetaCostModel
from ms_meta.model.metrics import pairwise_accuracy
from ms_meta.store import SqlStore, feed_json_databases
from ms_meta.store.access import open_store
from tests.conftest import SEED_RECORDS

ROCKETLAKE = {"kind": "llvm", "mcpu": "rocketlake", "num-cores": 2}  # the seed records' target


@pytest.fixture(scope="module")
def stored_task(tmp_path_factory):
    """A store with the seed records of a 512x512x512 matmul, the task's TuneContext, and the
    stored records as measure candidates with their latencies."""
    from ms_meta.tuning.intrin import import_tensor_intrinsics

    import_tensor_intrinsics("llvm")  # else TuneContext imports every backend's (a minute)
    path = tmp_path_factory.mktemp("warm") / "records.sqlite"
    feed_json_databases(SEED_RECORDS / "mm_512", store_path=path)
    database = ms.database.JSONDatabase(work_dir=str(SEED_RECORDS / "mm_512"))
    mod = database.get_all_tuning_records()[0].workload.mod
    record_store = open_store(path)
    try:
        found = record_store.measured_candidates(mod, ROCKETLAKE, limit=1000)
    finally:
        record_store.close()
    context = ms.TuneContext(
        mod=mod,
        target=tvm.target.Target(ROCKETLAKE),
        space_generator="post-order-apply",
        task_name="mm_512",
        num_threads=2,
    )
    return path, context, found


def _model(store, seed: int = 0) -> MetaCostModel:
    return MetaCostModel(
        weights=None, target=ROCKETLAKE, seed=seed, store=store, scoring_process=False
    )


def _accuracy(scores, found) -> float:
    latencies = [min(secs) if secs else None for _, secs in found]
    labels = normalized_throughput(latencies)
    valid = np.array([secs is not None for _, secs in found])
    return pairwise_accuracy(
        np.asarray(scores)[valid], labels[valid], np.zeros(int(valid.sum()), np.int64)
    )


def test_a_task_in_the_store_is_adapted_to_before_any_measurement(stored_task):
    path, context, found = stored_task
    candidates = [c for c, _ in found]
    warm, cold = _model(path), _model(None)
    warm_scores = warm.predict(context, candidates)
    cold_scores = cold.predict(context, candidates)
    with SqlStore(path) as sql:
        stored = sql.count()
    assert warm.summary.warm_tasks == 1 and warm.summary.warm_samples == stored == len(found)
    assert warm.summary.updates == 0  # nothing was measured
    assert cold.summary.warm_tasks == 0
    # the meta-parameters are untouched: only the task's adapted parameters changed
    for name, value in cold.meta_params.items():
        assert torch.equal(warm.meta_params[name], value)
    # and they rank the stored schedules as measured better than the untrained model does
    assert _accuracy(warm_scores, found) > _accuracy(cold_scores, found) + 0.1


def test_the_warm_start_happens_once_and_measurements_add_to_it(stored_task):
    path, context, found = stored_task
    model = _model(path)
    some = [c for c, _ in found[:4]]
    model.predict(context, some)
    model.predict(context, some)
    assert model.summary.warm_tasks == 1
    results = [ms.runner.RunnerResult([1e-3 * (i + 1)], None) for i in range(len(some))]
    model.update(context, some, results)
    assert model.summary.samples == len(found) + len(some)
    assert model.summary.warm_tasks == 1


def test_no_warm_start_with_the_store_off_or_for_another_target(stored_task, tmp_path):
    path, context, found = stored_task
    some = [c for c, _ in found[:4]]
    off = _model(None)
    off.predict(context, some)
    assert off.summary.warm_tasks == 0
    other = ms.TuneContext(
        mod=context.mod,
        target=tvm.target.Target({"kind": "llvm", "mcpu": "icelake-server", "num-cores": 2}),
        space_generator="post-order-apply",
        task_name="mm_512",
        num_threads=2,
    )
    elsewhere = _model(path)
    elsewhere.predict(other, some)
    assert elsewhere.summary.warm_tasks == 0
    missing = _model(tmp_path / "no-store.sqlite")
    missing.predict(context, some)
    assert missing.summary.warm_tasks == 0 and not (tmp_path / "no-store.sqlite").exists()
