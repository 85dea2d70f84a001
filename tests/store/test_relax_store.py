"""compile_relax finds a task's record in the RecordStore, and only for the target it was
measured on."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.s_tir import meta_schedule as ms
from tvm.target import Target

from ms_meta.store import RecordStore

OTHER_CPU = Target({"kind": "llvm", "mcpu": "znver4", "mattr": ["-avx512f"], "num-cores": 2})


def _matmul_module() -> tvm.IRModule:
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((32, 64), "float32"))
    w = relax.Var("w", relax.TensorType((64, 48), "float32"))
    with bb.function("main", [x, w]):
        with bb.dataflow():
            out = bb.emit_output(bb.emit(relax.op.matmul(x, w)))
        bb.emit_func_output(out)
    return bb.get()


def _fused(mod: tvm.IRModule) -> tvm.IRModule:
    """What compile_relax hands to MetaScheduleApplyDatabase."""
    return tvm.transform.Sequential(
        [
            relax.transform.LegalizeOps(),
            relax.transform.AnnotateTIROpPattern(),
            relax.transform.FoldConstant(),
            relax.transform.FuseOps(),
            relax.transform.FuseTIR(),
        ]
    )(mod)


def _scheduled(mod: tvm.IRModule) -> list[str]:
    return [
        gv.name_hint
        for gv, func in mod.functions.items()
        if isinstance(func, tvm.tirx.PrimFunc)
        and func.attrs
        and func.attrs.get("tirx.is_scheduled")
    ]


@pytest.fixture(scope="module")
def store_with_task_record(tmp_path_factory, target):
    """The matmul task's record (a sampled schedule with a made-up latency) in a store."""
    mod = _matmul_module()
    (task,) = ms.relax_integration.extract_tasks(_fused(mod), target)
    task_mod = task.dispatched[0]
    context = ms.TuneContext(
        mod=task_mod, target=target, space_generator="post-order-apply", task_name=task.task_name
    )
    (space, *_) = context.generate_design_space()
    store = RecordStore(tmp_path_factory.mktemp("relax") / "s.sqlite")
    workload = store.commit_workload(task_mod)
    store.commit_tuning_record(ms.database.TuningRecord(space.trace, workload, [1e-4], target))
    return mod, store


def test_compile_relax_applies_the_stored_record_of_the_same_target(store_with_task_record, target):
    mod, store = store_with_task_record
    with target, store, tvm.transform.PassContext(opt_level=3):
        applied = relax.transform.MetaScheduleApplyDatabase()(_fused(mod))
    assert len(_scheduled(applied)) == 1
    executable = ms.relax_integration.compile_relax(store, mod, target, params=None)
    vm = relax.VirtualMachine(executable, tvm.cpu())
    x = np.random.default_rng(0).standard_normal((32, 64)).astype("float32")
    w = np.random.default_rng(1).standard_normal((64, 48)).astype("float32")
    out = vm["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(w))
    np.testing.assert_allclose(out.numpy(), x @ w, rtol=1e-4, atol=1e-4)


def test_compile_relax_for_another_cpu_does_not_use_the_record(store_with_task_record):
    mod, store = store_with_task_record
    with OTHER_CPU, store, tvm.transform.PassContext(opt_level=3):
        applied = relax.transform.MetaScheduleApplyDatabase()(_fused(mod))
    assert _scheduled(applied) == []
