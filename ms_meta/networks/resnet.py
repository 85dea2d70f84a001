"""ResNet-18 and ResNet-50 in plain ``torch.nn``, layer for layer as torchvision's ``resnet18``
and ``resnet50`` (torchvision itself has no wheel for the torch this package pins)."""

from __future__ import annotations

import torch
from torch import nn

RESNET18_LAYERS = (2, 2, 2, 2)
RESNET50_LAYERS = (3, 4, 6, 3)
IMAGENET_CLASSES = 1000


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a residual connection (torchvision's
    ``BasicBlock``); ``downsample`` is a 1x1 convolution plus batch norm when the shape changes."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1, 3x3 and 1x1 convolutions with batch norm and a residual connection (torchvision's
    ``Bottleneck``, stride on the 3x3 convolution: "ResNet v1.5"); the last convolution widens
    the channels ``expansion`` times; ``downsample`` as in :class:`BasicBlock`."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """torchvision's ResNet, NCHW float32 input: basic blocks (ResNet-18/34) or bottleneck
    blocks (ResNet-50/101/152).

    Shapes:
        - input: ``(N, 3, H, W)``; H and W of 32 or more (224 is the ImageNet size)
        - output: ``(N, num_classes)`` logits
    """

    def __init__(
        self,
        layers: tuple[int, ...] = RESNET18_LAYERS,
        num_classes: int = IMAGENET_CLASSES,
        block: type[BasicBlock] | type[Bottleneck] = BasicBlock,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        stages, in_channels = [], 64
        for index, blocks in enumerate(layers):
            channels, stride = 64 * 2**index, 1 if index == 0 else 2
            stage = [block(in_channels, channels, stride)]
            in_channels = channels * block.expansion
            stage += [block(in_channels, channels) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def randomize_batch_norm(module: nn.Module, generator: torch.Generator) -> None:
    """Give every batch norm trained-looking statistics and affine parameters.

    Fresh layers have mean 0, variance 1, scale 1 and shift 0, which makes inference-mode batch
    norm the identity; a compiler that dropped or mis-folded it would still pass the numerics
    check. Random values close to 1 (scales) and 0 (shifts) keep activations in range.
    """
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, nn.BatchNorm2d):
                size = layer.num_features
                layer.weight.copy_(torch.empty(size).uniform_(0.5, 1.5, generator=generator))
                layer.bias.copy_(torch.randn(size, generator=generator) * 0.1)
                layer.running_mean.copy_(torch.randn(size, generator=generator) * 0.1)
                layer.running_var.copy_(torch.empty(size).uniform_(0.5, 1.5, generator=generator))


def seed_weights(model: nn.Module, seed: int, init_linear) -> nn.Module:
    """``model`` with seeded weights in eval mode: convolutions get torchvision's Kaiming
    initialisation (fan out), every linear layer ``init_linear(layer, generator)``, batch norms
    random statistics (:func:`randomize_batch_norm`). The benchmark measures speed, not
    accuracy."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, nn.Conv2d):
                fan_out = layer.out_channels * layer.kernel_size[0] * layer.kernel_size[1]
                layer.weight.normal_(0.0, (2.0 / fan_out) ** 0.5, generator=generator)
            elif isinstance(layer, nn.Linear):
                init_linear(layer, generator)
    randomize_batch_norm(model, generator)
    return model.eval()


def _uniform_linear(layer: nn.Linear, generator: torch.Generator) -> None:
    """torchvision ResNet's classifier initialisation."""
    bound = 1.0 / layer.in_features**0.5
    layer.weight.uniform_(-bound, bound, generator=generator)
    layer.bias.uniform_(-bound, bound, generator=generator)


def _seeded(model: ResNet, seed: int) -> ResNet:
    """``model`` with seeded weights (:func:`seed_weights`, the classifier initialised
    uniformly as torchvision's)."""
    return seed_weights(model, seed, _uniform_linear)


def resnet18(*, seed: int = 0, num_classes: int = IMAGENET_CLASSES) -> ResNet:
    """ResNet-18 in eval mode with seeded random weights (see :func:`_seeded`)."""
    return _seeded(ResNet(RESNET18_LAYERS, num_classes, BasicBlock), seed)


def resnet50(*, seed: int = 0, num_classes: int = IMAGENET_CLASSES) -> ResNet:
    """ResNet-50 (bottleneck blocks, torchvision layout) in eval mode with seeded random
    weights (see :func:`_seeded`)."""
    return _seeded(ResNet(RESNET50_LAYERS, num_classes, Bottleneck), seed)


def resnet18_inputs(*, image_size: int = 224, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor]:
    """One seeded NCHW image batch, ``(batch, 3, image_size, image_size)`` float32."""
    generator = torch.Generator().manual_seed(seed + 1)
    return (torch.randn(batch, 3, image_size, image_size, generator=generator),)


# ResNet-50 takes the same ImageNet-sized input
resnet50_inputs = resnet18_inputs
