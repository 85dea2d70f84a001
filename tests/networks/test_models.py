"""The benchmark networks in plain torch: architecture, seeding, registry."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from ms_meta.errors import MsMetaError
from ms_meta.networks import (
    MODELS,
    UnknownModelError,
    bert_layer,
    bert_layer_inputs,
    load_model,
    mobilenet_v2,
    mobilenet_v2_inputs,
    resnet18,
    resnet18_inputs,
    resnet50,
    resnet50_inputs,
)

# Parameter counts of the reference architectures (torchvision resnet18, resnet50 and
# mobilenet_v2; one layer of Hugging Face bert-base-uncased), which a layer-for-layer copy must
# reproduce.
TORCHVISION_RESNET18_PARAMETERS = 11_689_512
TORCHVISION_RESNET50_PARAMETERS = 25_557_032
BERT_BASE_LAYER_PARAMETERS = 7_087_872
TORCHVISION_MOBILENET_V2_PARAMETERS = 3_504_872


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_resnet18_has_torchvision_parameter_count_and_runs_small_images():
    model = resnet18()
    assert parameter_count(model) == TORCHVISION_RESNET18_PARAMETERS
    (image,) = resnet18_inputs(image_size=32)
    with torch.inference_mode():
        logits = model(image)
    assert logits.shape == (1, 1000)
    assert torch.isfinite(logits).all()
    assert not model.training


def test_resnet50_has_torchvision_parameter_count_and_bottleneck_layout():
    model = resnet50()
    assert parameter_count(model) == TORCHVISION_RESNET50_PARAMETERS
    first = model.layer2[0]
    # torchvision's v1.5 layout: the stride sits on the 3x3 convolution, not the first 1x1
    assert first.conv1.stride == (1, 1) and first.conv2.stride == (2, 2)
    assert first.downsample[0].out_channels == 512
    (image,) = resnet50_inputs(image_size=32)
    with torch.inference_mode():
        logits = model(image)
    assert logits.shape == (1, 1000)
    assert torch.isfinite(logits).all()
    bn = model.layer3[1].bn3
    assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))


def test_mobilenet_v2_has_torchvision_parameter_count_and_block_layout():
    model = mobilenet_v2()
    assert parameter_count(model) == TORCHVISION_MOBILENET_V2_PARAMETERS
    blocks = model.features[1:-1]
    assert len(blocks) == 17
    # the first block has no expansion; the others widen 6x, then stride on the depthwise 3x3
    assert len(blocks[0].conv) == 3 and len(blocks[1].conv) == 4
    depthwise = blocks[1].conv[1][0]
    assert depthwise.groups == depthwise.in_channels == 96 and depthwise.stride == (2, 2)
    assert [b.use_residual for b in blocks[1:3]] == [False, True]
    (image,) = mobilenet_v2_inputs(image_size=32)
    with torch.inference_mode():
        logits = model(image)
    assert logits.shape == (1, 1000)
    assert torch.isfinite(logits).all()
    assert not model.training


def test_resnet18_batch_norms_are_not_the_identity():
    # fresh batch norms are the identity in eval mode; the registry's must not be (see docstring)
    bn = resnet18().bn1
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
    assert not torch.allclose(bn.weight, torch.ones_like(bn.weight))


def test_same_seed_same_weights_other_seed_other_weights():
    first, again, other = resnet18(seed=3), resnet18(seed=3), resnet18(seed=4)
    again_state = again.state_dict()
    for name, value in first.state_dict().items():
        assert torch.equal(value, again_state[name]), name
    assert not torch.equal(first.conv1.weight, other.conv1.weight)
    assert torch.equal(bert_layer(seed=1).output.weight, bert_layer(seed=1).output.weight)


def test_bert_layer_has_bert_base_parameter_count_and_keeps_shape():
    model = bert_layer()
    assert parameter_count(model) == BERT_BASE_LAYER_PARAMETERS
    (hidden,) = bert_layer_inputs()
    assert hidden.shape == (1, 128, 768)
    with torch.inference_mode():
        out = model(hidden)
    assert out.shape == hidden.shape
    # post-LayerNorm output: every token normalised (then scaled by weights near 1)
    assert torch.isfinite(out).all()


def test_bert_attention_matches_torch_scaled_dot_product_attention():
    model = bert_layer(hidden=32, heads=4, ffn=64, seed=2)
    (x,) = bert_layer_inputs(seq_len=6, hidden=32)
    attention = model.attention

    def heads(linear):
        return linear(x).view(1, 6, 4, 8).transpose(1, 2)

    reference = F.scaled_dot_product_attention(
        heads(attention.query), heads(attention.key), heads(attention.value)
    )
    with torch.inference_mode():
        ours = attention(x)
    torch.testing.assert_close(ours, reference.transpose(1, 2).reshape(1, 6, 32))


def test_bert_layer_rejects_heads_that_do_not_divide_hidden():
    with pytest.raises(ValueError, match="multiple of 5 heads"):
        bert_layer(hidden=32, heads=5)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_load_model_gives_eval_model_and_matching_inputs(name):
    model, inputs = load_model(name)
    assert isinstance(inputs, tuple) and inputs
    assert not model.training
    assert MODELS[name].name == name
    with torch.inference_mode():
        out = model(*inputs)
    assert torch.isfinite(out).all()


def test_unknown_model_name_lists_the_choices():
    with pytest.raises(UnknownModelError, match="resnet18, resnet50, bert-layer") as info:
        load_model("resnet19")
    assert isinstance(info.value, MsMetaError)
    assert "'resnet19'" in str(info.value)
