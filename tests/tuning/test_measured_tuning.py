"""Tuning with MetaCostModel inside MetaSchedule's own tune_tir, on real (small) workloads."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm.s_tir import meta_schedule as ms

from ms_meta import MetaCostModel
from ms_meta.model.factory import make_cost_model
from ms_meta.tuning.builder import make_builder
from ms_meta.tuning.measure import make_local_runner
from ms_meta.tuning.measured_tuning import meta_schedule_logging_compat, tune_workload
from ms_meta.workloads import resolve_one


def test_tune_tir_with_meta_cost_model_small_matmul(target, tmp_path):
    mod = resolve_one("dense:64,64,64").build()
    model = MetaCostModel(weights=None, seed=0)
    # pytest >= 9.2 adds a handler that TVM's logger set-up cannot handle (see docstring)
    with meta_schedule_logging_compat():
        database = ms.tune_tir(
            mod=mod,
            target=target,
            work_dir=str(tmp_path),
            max_trials_global=8,
            num_trials_per_iter=4,
            builder=make_builder(),
            runner=make_local_runner(),
            cost_model=model,
            strategy=ms.search_strategy.EvolutionarySearch(population_size=64),
        )
    records = database.get_all_tuning_records()
    assert len(records) == 8
    assert model.summary.updates >= 1 and model.summary.predicted > 0
    sch = ms.tir_integration.compile_tir(database, mod, target)
    assert sch is not None
    lib = tvm.compile(sch.mod, target=target)
    a = np.random.default_rng(0).standard_normal((64, 64)).astype("float32")
    b = np.random.default_rng(1).standard_normal((64, 64)).astype("float32")
    c = tvm.runtime.tensor(np.zeros((64, 64), "float32"))
    lib["main"](tvm.runtime.tensor(a), tvm.runtime.tensor(b), c)
    np.testing.assert_allclose(c.numpy(), a @ b.T, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize(
    "spec",
    [
        "conv2d_nchw:1,32,28,28,32,3,3,1,1",
        "dense:128,256,256",
        "depthwise_conv2d:1,64,28,28,3,3,1,1",
        "batch_matmul:4,64,64,32",
    ],
)
def test_tunes_the_four_operator_kinds(target, tmp_path, spec):
    result = tune_workload(
        resolve_one(spec).build(), target, tmp_path, max_trials=16, num_trials_per_iter=8,
        cost_model=make_cost_model("meta-online", target=target), population_size=128,
    )  # fmt: skip
    assert result.valid_trials >= 12
    assert result.best_seconds is not None and result.best_seconds > 0
