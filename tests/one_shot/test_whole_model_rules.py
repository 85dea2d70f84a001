"""One-Shot on whole models: batch norm folded for inference, and fused convolutions served by
the schedules of the plain convolutions measured on the same main block."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tvm
import tvm_ffi
from tvm import relax

from ms_meta import MetaCostModel
from ms_meta.networks import import_torch_module
from ms_meta.one_shot import (
    SearchSettings,
    compile_relax,
    prepare_for_inference,
    prepare_relax,
    run_relax,
)
from ms_meta.one_shot.library import LibraryTask, build_library, load_library
from ms_meta.one_shot.search import library_search
from ms_meta.workloads import resolve_one
from tests.conftest import SEED_RECORDS

TINY = SearchSettings(population_size=16, genetic_num_iters=1, finalists=4, init_min_unmeasured=4)


def _conv_bn_relu() -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(4, 8, 3, padding=1, bias=False),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
    ).eval()
    with torch.no_grad():  # batch-norm statistics far from the identity
        bn = model[1]
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    return model, torch.randn(1, 4, 8, 8)


def test_batch_norm_is_folded_into_the_convolution_and_preparing_twice_changes_nothing():
    model, x = _conv_bn_relu()
    mod, params = import_torch_module(model, (x,))
    prepared = prepare_for_inference(mod, params)
    text = prepared.script()
    assert "batch_norm" not in text and text.count("R.nn.conv2d(") == 1
    assert tvm_ffi.structural_equal(prepare_for_inference(prepared), prepared)


def test_compile_relax_finds_every_tuned_task_and_matches_pytorch(target, tmp_path):
    model, x = _conv_bn_relu()
    mod, params = import_torch_module(model, (x,))
    result = run_relax(mod, params, target, tmp_path, weights=None, settings=TINY, library=None)
    assert result.tasks and all(t.status == "predicted" for t in result.tasks)
    executable = compile_relax(result.database, mod, params, target)
    vm = relax.VirtualMachine(executable, tvm.cpu())
    out = vm["main"](tvm.runtime.tensor(x.numpy()))
    out = out.numpy() if hasattr(out, "numpy") else out[0].numpy()
    with torch.inference_mode():
        expected = model(x).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_a_fused_convolution_is_led_by_a_schedule_measured_on_its_main_block(target):
    model = MetaCostModel(weights=None, target=target)
    mod = resolve_one("conv2d_bias_relu:1,64,56,56,64,3,3,1,1").build()
    # the plain convolution of the same shapes only: its fastest schedule leads
    library = build_library([SEED_RECORDS], tasks=["r18_c1_3x3_64"], per_task=3)
    found = library_search(mod, target, model, library)
    assert found.source == "library" and found.neighbours == ["r18_c1_3x3_64"]
    assert found.finalists[0].origin == "r18_c1_3x3_64 #1 (measured on its main block)"
    assert not found.finalists[0].own_measurement
    # with the task's own records too, the faster of the two measurements leads
    library = build_library([SEED_RECORDS], tasks=["r18_c1_3x3_64", "r18_cbr_3x3_64"], per_task=3)
    best = {t.name: t.best_seconds for t in library.tasks}
    assert all(b and b > 0 for b in best.values())
    fastest = min(best, key=best.get)
    found = library_search(mod, target, model, library)
    assert set(found.neighbours) == set(best)
    own = fastest == "r18_cbr_3x3_64"
    label = "this task's own measurement" if own else "measured on its main block"
    assert found.finalists[0].origin == f"{fastest} #1 ({label})"
    assert found.finalists[0].own_measurement == own


def test_best_seconds_survive_a_saved_library_and_old_libraries_load_without_them(tmp_path):
    library = build_library([SEED_RECORDS], tasks=["r18_c1_3x3_64"], per_task=2)
    (task,) = library.tasks
    saved = load_library(library.save(tmp_path / "lib.library.json.gz"))
    assert saved.tasks[0].best_seconds == pytest.approx(task.best_seconds, rel=1e-5)
    raw = task.to_dict()
    del raw["best_seconds"]
    assert LibraryTask.from_dict(raw).best_seconds is None


def test_gelu_uses_a_vectorizable_erf_and_matches_pytorch(target):
    gelu = torch.nn.GELU().eval()
    x = torch.linspace(-8, 8, 4096).reshape(4, 1024)
    mod, params = import_torch_module(gelu, (x,))
    fused = prepare_relax(mod, params, target)
    assert "T.erf(" not in fused.script()  # libm's scalar erff, one call per element
    vm = relax.VirtualMachine(tvm.compile(fused, target=target), tvm.cpu())
    out = vm["main"](tvm.runtime.tensor(x.numpy()))
    out = out.numpy() if hasattr(out, "numpy") else out[0].numpy()
    np.testing.assert_allclose(out, gelu(x).numpy(), rtol=1e-5, atol=1e-5)
