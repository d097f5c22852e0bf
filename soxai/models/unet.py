"""A small U-Net (Ronneberger et al. 2015) for the segmentation task: logits of shape (n, classes, H, W).

Each level is two 3x3 convs with batch norm and ReLU; the encoder halves the side with a 2x2 max-pool
(``len(channels) - 1`` times), the decoder doubles it with a 2x2 transposed conv and concatenates the skip
connection of the same level. The demo's ``channels=(8, 16, 32)`` on 1-channel input with 3 classes has 29,499
parameters and trains on its 400 32x32 training images (12 epochs) in 11-17 s on one thread of the shared
2-core machine (docs/SEGMENTATION.md).
The side must be divisible by ``2 ** (len(channels) - 1)``.
"""

from __future__ import annotations

from torch import Tensor, nn

from soxai.errors import ConfigError


def _double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
    )


class UNet(nn.Module):
    """Encoder-decoder with skip connections; ``forward(x)`` of shape (n, in_channels, H, W) gives
    (n, n_classes, H, W) logits."""

    def __init__(self, in_channels: int, n_classes: int, channels: tuple[int, ...] = (16, 32, 64)) -> None:
        super().__init__()
        if len(channels) < 2:
            raise ConfigError(f"the U-Net needs at least two levels, got model.channels={list(channels)}; "
                              "set model.channels to e.g. [16, 32, 64]")
        self.down = nn.ModuleList()
        c_prev = in_channels
        for c in channels:
            self.down.append(_double_conv(c_prev, c))
            c_prev = c
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for c_skip in reversed(channels[:-1]):
            self.up.append(nn.ConvTranspose2d(c_prev, c_skip, 2, stride=2))
            self.merge.append(_double_conv(2 * c_skip, c_skip))
            c_prev = c_skip
        self.head = nn.Conv2d(c_prev, n_classes, 1)
        self.levels = len(channels)

    def forward(self, x: Tensor) -> Tensor:
        import torch

        factor = 2 ** (self.levels - 1)
        if x.shape[-1] % factor or x.shape[-2] % factor:
            raise ConfigError(
                f"the U-Net with {self.levels} levels needs a side divisible by {factor}, got "
                f"{tuple(x.shape[-2:])}; set data.image_size to a multiple of {factor} or use fewer model.channels"
            )
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1]), strict=True):
            x = merge(torch.cat([up(x), skip], dim=1))
        return self.head(x)


def unet(in_channels: int, n_classes: int, channels: tuple[int, ...]) -> UNet:
    """The built-in segmentation network of ``model.name: unet`` (``model.channels`` per level)."""
    return UNet(in_channels, n_classes, tuple(channels))
