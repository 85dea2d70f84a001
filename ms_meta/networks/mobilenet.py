"""MobileNetV2 in plain ``torch.nn``, layer for layer as torchvision's ``mobilenet_v2`` (width
1.0): a network whose depthwise and pointwise convolutions the workload library was not built
around, so the end-to-end benchmark can time One-Shot on shapes it has mostly never measured."""

from __future__ import annotations

import torch
from torch import nn

from ms_meta.networks.resnet import IMAGENET_CLASSES, resnet18_inputs, seed_weights

__all__ = [
    "MOBILENET_V2_SETTINGS",
    "InvertedResidual",
    "MobileNetV2",
    "mobilenet_v2",
    "mobilenet_v2_inputs",
]

# torchvision's inverted residual settings: expansion t, output channels c, repeats n, stride s
MOBILENET_V2_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
FIRST_CHANNELS = 32
LAST_CHANNELS = 1280


def conv_bn_relu6(
    in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    """Convolution (no bias, "same" padding), batch norm and ReLU6: torchvision's
    ``Conv2dNormActivation`` as MobileNetV2 uses it."""
    return nn.Sequential(
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel,
            stride=stride,
            padding=(kernel - 1) // 2,
            groups=groups,
            bias=False,
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """torchvision's MobileNetV2 block: a 1x1 expansion (left out when ``expand_ratio`` is 1),
    a depthwise 3x3 convolution carrying the stride, and a linear 1x1 projection with batch
    norm; the input is added back when stride and channels are unchanged."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = round(in_channels * expand_ratio)
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_bn_relu6(in_channels, hidden, kernel=1))
        layers += [
            conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


class MobileNetV2(nn.Module):
    """torchvision's MobileNetV2 at width 1.0, NCHW float32 input.

    Shapes:
        - input: ``(N, 3, H, W)``; H and W of 32 or more (224 is the ImageNet size)
        - output: ``(N, num_classes)`` logits
    """

    def __init__(self, num_classes: int = IMAGENET_CLASSES) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn_relu6(3, FIRST_CHANNELS, stride=2)]
        in_channels = FIRST_CHANNELS
        for expand_ratio, channels, repeats, stride in MOBILENET_V2_SETTINGS:
            for index in range(repeats):
                layers.append(
                    InvertedResidual(
                        in_channels, channels, stride if index == 0 else 1, expand_ratio
                    )
                )
                in_channels = channels
        layers.append(conv_bn_relu6(in_channels, LAST_CHANNELS, kernel=1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        # the dropout is the identity in eval mode; kept so the module tree matches torchvision
        self.classifier = nn.Sequential(nn.Dropout(p=0.2), nn.Linear(LAST_CHANNELS, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def mobilenet_v2(*, seed: int = 0, num_classes: int = IMAGENET_CLASSES) -> MobileNetV2:
    """MobileNetV2 (width 1.0) in eval mode with seeded random weights.

    Convolutions get torchvision's Kaiming initialisation (fan out), the classifier its
    normal(0, 0.01) weights and zero bias, batch norms random statistics
    (:func:`~ms_meta.networks.resnet.randomize_batch_norm`). The benchmark measures speed, not
    accuracy.
    """
    return seed_weights(MobileNetV2(num_classes), seed, _normal_linear)


def _normal_linear(layer: nn.Linear, generator: torch.Generator) -> None:
    """torchvision MobileNetV2's classifier initialisation."""
    layer.weight.normal_(0.0, 0.01, generator=generator)
    layer.bias.zero_()


# MobileNetV2 takes the same ImageNet-sized input as ResNet
mobilenet_v2_inputs = resnet18_inputs
