"""A small convolutional network: the end-to-end benchmark's own checks compile and time it in
seconds, where the real networks take minutes."""

from __future__ import annotations

import torch
from torch import nn

from ms_meta.networks.resnet import randomize_batch_norm

__all__ = ["SmallConvNet", "small_convnet", "small_convnet_inputs"]


class SmallConvNet(nn.Module):
    """Two 3x3 convolutions (batch norm, ReLU), global average pooling and a linear classifier.

    Shapes:
        - input: ``(N, 3, H, W)``
        - output: ``(N, classes)``
    """

    def __init__(self, channels: int = 8, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def small_convnet(*, seed: int = 0) -> SmallConvNet:
    """:class:`SmallConvNet` in eval mode with seeded weights and batch-norm statistics."""
    generator = torch.Generator().manual_seed(seed)
    model = SmallConvNet()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    randomize_batch_norm(model, generator)
    return model.eval()


def small_convnet_inputs(*, image_size: int = 32, seed: int = 0) -> tuple[torch.Tensor]:
    """One seeded NCHW image, ``(1, 3, image_size, image_size)`` float32."""
    generator = torch.Generator().manual_seed(seed + 1)
    return (torch.randn(1, 3, image_size, image_size, generator=generator),)
