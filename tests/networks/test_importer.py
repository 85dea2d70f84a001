"""Relax import of the benchmark models, checked by building them and comparing with torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tvm
from tvm import relax

from ms_meta.networks import (
    ModelImportError,
    UnknownModelError,
    bert_layer,
    bert_layer_inputs,
    bind_for_inference,
    fuse_for_tuning,
    import_model,
    import_torch_module,
    mobilenet_v2,
    mobilenet_v2_inputs,
    resnet18,
    resnet18_inputs,
)


def build_and_run(mod, params, inputs, target):
    executable = tvm.compile(bind_for_inference(mod, params), target=target)
    vm = relax.VirtualMachine(executable, tvm.cpu())
    return vm["main"](*[tvm.runtime.tensor(x.numpy()) for x in inputs]).numpy()


def assert_matches_torch(model, inputs, target):
    mod, params = import_torch_module(model, inputs)
    with torch.inference_mode():
        reference = model(*inputs).numpy()
    out = build_and_run(mod, params, inputs, target)
    np.testing.assert_allclose(out, reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())


def test_small_resnet18_untuned_build_matches_torch(target):
    assert_matches_torch(resnet18(), resnet18_inputs(image_size=32), target)


def test_small_bert_layer_untuned_build_matches_torch(target):
    model = bert_layer(hidden=64, heads=4, ffn=256)
    assert_matches_torch(model, bert_layer_inputs(seq_len=16, hidden=64), target)


def test_small_mobilenet_v2_untuned_build_matches_torch(target):
    # ReLU6 and depthwise convolutions at a 32x32 input, built untuned
    assert_matches_torch(mobilenet_v2(), mobilenet_v2_inputs(image_size=32), target)


def test_weights_are_parameters_named_after_the_module():
    model = bert_layer(hidden=32, heads=4, ffn=64)
    mod, params = import_torch_module(model, bert_layer_inputs(seq_len=4, hidden=32))
    main = mod["main"]
    assert int(main.attrs["num_input"]) == 1
    assert "params" not in main.attrs  # detached
    assert [v.name for v in main.params[1:]] == list(params)
    assert len(params) == len(list(model.parameters()))
    by_suffix = {name.removeprefix("p_"): value for name, value in params.items()}
    np.testing.assert_array_equal(
        by_suffix["intermediate_weight"].numpy(), model.intermediate.weight.detach().numpy()
    )


def test_fused_module_has_tuning_tasks(target):
    from tvm.s_tir import meta_schedule as ms

    model = bert_layer(hidden=32, heads=4, ffn=64)
    mod, params = import_torch_module(model, bert_layer_inputs(seq_len=4, hidden=32))
    bound = bind_for_inference(mod, params)
    # the unfused module has no call_tir kernels, hence no tasks (why fuse_for_tuning exists)
    assert not ms.relax_integration.extract_tasks(bound, target)
    tasks = ms.relax_integration.extract_tasks(fuse_for_tuning(bound), target)
    names = [t.task_name for t in tasks]
    assert any("matmul" in n for n in names) and any("softmax" in n for n in names)


class DataDependentBranch(torch.nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # torch.export cannot trace a branch on tensor values
            return x * 2
        return x


def test_untraceable_module_gives_clear_error():
    with pytest.raises(
        ModelImportError, match=r"torch\.export could not trace DataDependentBranch"
    ):
        import_torch_module(DataDependentBranch(), (torch.ones(3),))


def test_import_model_unknown_name():
    with pytest.raises(UnknownModelError, match="choose one of"):
        import_model("vgg16")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "bert-layer", "mobilenet-v2"])
def test_full_size_import_and_untuned_build_match_torch(name, target):
    from ms_meta.networks import load_model

    mod, params, inputs = import_model(name)
    model, _ = load_model(name)
    with torch.inference_mode():
        reference = model(*inputs).numpy()
    out = build_and_run(mod, params, inputs, target)
    np.testing.assert_allclose(out, reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())
