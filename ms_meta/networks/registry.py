"""The networks of the end-to-end benchmark, by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ms_meta.errors import MsMetaError
from ms_meta.networks.bert import bert_layer, bert_layer_inputs
from ms_meta.networks.mobilenet import mobilenet_v2, mobilenet_v2_inputs
from ms_meta.networks.resnet import resnet18, resnet18_inputs, resnet50, resnet50_inputs
from ms_meta.networks.small import small_convnet, small_convnet_inputs


class UnknownModelError(MsMetaError, ValueError):
    """A model name that is not in :data:`MODELS`."""


@dataclass(frozen=True)
class ModelSpec:
    """A benchmark model: a seeded eval-mode ``nn.Module`` and its example inputs."""

    name: str
    description: str
    build: Callable[[], nn.Module]
    example_inputs: Callable[[], tuple[torch.Tensor, ...]]


MODELS: dict[str, ModelSpec] = {
    "resnet18": ModelSpec(
        "resnet18",
        "ResNet-18 (torchvision layout), batch 1, 3x224x224 image, random weights",
        resnet18,
        resnet18_inputs,
    ),
    "resnet50": ModelSpec(
        "resnet50",
        "ResNet-50 (torchvision layout), batch 1, 3x224x224 image, random weights",
        resnet50,
        resnet50_inputs,
    ),
    "bert-layer": ModelSpec(
        "bert-layer",
        "one BERT-base encoder layer (hidden 768, 12 heads, FFN 3072), batch 1, 128 tokens",
        bert_layer,
        bert_layer_inputs,
    ),
    "mobilenet-v2": ModelSpec(
        "mobilenet-v2",
        "MobileNetV2 (torchvision layout, width 1.0: inverted residuals, depthwise 3x3, ReLU6), "
        "batch 1, 3x224x224 image, random weights",
        mobilenet_v2,
        mobilenet_v2_inputs,
    ),
    "small-convnet": ModelSpec(
        "small-convnet",
        "a small conv net (two 3x3 convolutions, batch norm, pooling, linear), batch 1, "
        "3x32x32 image; compiles in seconds, for checks of the benchmark itself",
        small_convnet,
        small_convnet_inputs,
    ),
}


def model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` called ``name``.

    Raises
    ------
    UnknownModelError
        When ``name`` is not in :data:`MODELS`; the message lists the choices.
    """
    try:
        return MODELS[name]
    except (KeyError, TypeError):
        raise UnknownModelError(
            f"unknown model {name!r}; choose one of {', '.join(MODELS)}"
        ) from None


def load_model(name: str) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """The eval-mode model called ``name`` and a tuple of example inputs for it."""
    spec = model_spec(name)
    return spec.build(), spec.example_inputs()
