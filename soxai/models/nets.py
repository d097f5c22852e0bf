"""Built-in ResNet-style and MobileNet-style networks, sized by config for small or full-size inputs.

Both follow their papers' block design (ResNet: two 3x3 convs with an identity or 1x1 shortcut;
MobileNetV2: inverted residuals, a 1x1 expansion, a 3x3 depthwise conv and a linear 1x1 projection)
and end in global average pooling, so they take any input side. ``model.channels`` gives the width of
each stage and ``model.depth`` the blocks per stage; every stage after the first halves the side.
ResNet-18 is ``channels: [64, 128, 256, 512]``, ``depth: 2``.

The stem adapts to the input: below 96 pixels a 3x3 conv at stride 1 (as for CIFAR-sized images, so
a 32x32 image keeps a spatial map for Grad-CAM), from 96 pixels on the ImageNet stem (7x7 conv at
stride 2 and a 3x3 max-pool for ResNet, a 3x3 conv at stride 2 for MobileNet).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor, nn

if TYPE_CHECKING:
    from soxai.models.config import ModelConfig

#: input side from which the built-ins use the ImageNet stem (it divides the side by 4 / by 2)
LARGE_INPUT = 96


class BasicBlock(nn.Module):
    """Two 3x3 convs with batch norm; the shortcut is a 1x1 conv where the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))
        # a separate ReLU after the sum: module-level ReLUs are what guided backprop and DeepLift hook
        self.out_relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.out_relu(y + self.shortcut(x))


class ResNet(nn.Module):
    """A ResNet of :class:`BasicBlock` stages: ``stem``, ``layer1`` ... ``layerK``, ``pool``, ``fc``.

    Input of shape (N, in_channels, H, W); output logits of shape (N, n_classes).
    """

    def __init__(self, in_channels: int, n_classes: int, channels: tuple[int, ...], depth: int,
                 large_input: bool) -> None:
        super().__init__()
        c0 = channels[0]
        if large_input:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, c0, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(c0), nn.ReLU(),
                nn.MaxPool2d(3, stride=2, padding=1),
            )
        else:
            self.stem = nn.Sequential(nn.Conv2d(in_channels, c0, 3, padding=1, bias=False), nn.BatchNorm2d(c0),
                                      nn.ReLU())
        c_in = c0
        for i, c_out in enumerate(channels):
            blocks = [BasicBlock(c_in if j == 0 else c_out, c_out, 2 if (i > 0 and j == 0) else 1)
                      for j in range(depth)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            c_in = c_out
        self.n_stages = len(channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for i in range(self.n_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(self.pool(x).flatten(1))


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expand, 3x3 depthwise, linear 1x1 project; a residual when shapes match."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = c_in * expand
        self.block = nn.Sequential(
            nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out),
        )
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class MobileNet(nn.Module):
    """A MobileNetV2-style network: ``stem``, ``stage1`` ... ``stageK``, ``head`` (1x1 conv), ``pool``, ``fc``."""

    def __init__(self, in_channels: int, n_classes: int, channels: tuple[int, ...], depth: int,
                 large_input: bool, expand: int = 4) -> None:
        super().__init__()
        c0 = channels[0]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c0, 3, stride=2 if large_input else 1, padding=1, bias=False),
            nn.BatchNorm2d(c0), nn.ReLU6(),
        )
        c_in = c0
        for i, c_out in enumerate(channels):
            blocks = [InvertedResidual(c_in if j == 0 else c_out, c_out, 2 if (i > 0 and j == 0) else 1, expand)
                      for j in range(depth)]
            self.add_module(f"stage{i + 1}", nn.Sequential(*blocks))
            c_in = c_out
        self.n_stages = len(channels)
        width = 4 * c_in
        self.head = nn.Sequential(nn.Conv2d(c_in, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU6())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for i in range(self.n_stages):
            x = getattr(self, f"stage{i + 1}")(x)
        return self.fc(self.pool(self.head(x)).flatten(1))


def resnet(cfg: ModelConfig, in_channels: int, n_classes: int, image_size: int) -> nn.Module:
    """The ResNet-style built-in; ``model.channels`` per stage, ``model.depth`` blocks per stage."""
    return ResNet(in_channels, n_classes, tuple(cfg.channels), cfg.depth, image_size >= LARGE_INPUT)


def mobilenet(cfg: ModelConfig, in_channels: int, n_classes: int, image_size: int) -> nn.Module:
    """The MobileNetV2-style built-in; ``model.channels`` per stage, ``model.depth`` blocks per stage."""
    return MobileNet(in_channels, n_classes, tuple(cfg.channels), cfg.depth, image_size >= LARGE_INPUT)
