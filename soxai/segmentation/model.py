"""The segmentation network of a run: the built-in U-Net or the user's ``model.factory``, checked on a probe.

A segmentation network maps (n, C, H, W) images to (n, classes, H, W) logits. A factory whose network
returns one score per class (n, classes), or another shape, is refused before any stage writes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from soxai.errors import ConfigError
from soxai.segmentation.config import SEGMENTATION_MODELS

if TYPE_CHECKING:
    from torch import nn

    from soxai.config import Config

def build_segmenter(cfg: Config, in_channels: int, n_classes: int, image_size: int, seed: int) -> nn.Module:
    """The configured network with weights initialised from ``seed``, checked on a probe batch.

    Raises
    ------
    ConfigError
        When ``model.name`` is not a segmentation network, or the network does not return logits of shape
        (n, n_classes, image_size, image_size).
    """
    import torch

    torch.manual_seed(seed)
    if cfg.model.factory:
        from soxai.models.factory import call_factory

        model = call_factory(cfg.model.factory, dict(cfg.model.kwargs), in_channels=in_channels, num_classes=n_classes)
        what = f"model.factory={cfg.model.factory!r}"
    elif cfg.model.name in SEGMENTATION_MODELS:
        from soxai.models.unet import unet

        model = unet(in_channels, n_classes, cfg.model.channels)
        what = "model.name='unet'"
    else:
        raise ConfigError(
            f"task: segmentation needs a network that labels every pixel, but model.name={cfg.model.name!r} is a "
            f"classifier; set model.name: unet or model.factory to your own segmentation network"
        )
    check_segmenter(model, what, in_channels, n_classes, image_size)
    return model


def check_segmenter(model: nn.Module, what: str, in_channels: int, n_classes: int, image_size: int) -> None:
    """Run a probe batch of zeros of shape (2, in_channels, image_size, image_size) through ``model``.

    Raises
    ------
    ConfigError
        If the forward pass fails or does not give logits of shape (2, n_classes, image_size, image_size).
    """
    import torch

    from soxai.models.factory import probe_forward

    out = probe_forward(model, what, in_channels, image_size, "network")
    want = (2, n_classes, image_size, image_size)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != want:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        hint = (" — one score per class is a classifier's output; a segmentation network gives one per pixel"
                if isinstance(out, torch.Tensor) and out.ndim == 2 else "")
        raise ConfigError(
            f"{what}: task: segmentation needs logits of shape (n, {n_classes}, H, W) = {want} on a batch of 2 "
            f"{image_size}x{image_size} images (one score per class and pixel); it returned {got}{hint}; "
            "return the per-pixel logits at the input's size"
        )


def check_segmentation_setup(cfg: Config, info: dict[str, Any] | None = None) -> None:
    """Build the configured network for the data's shape (``info``, or what the config fixes) and probe it."""
    from soxai.segmentation.data import segmentation_shape

    shape = segmentation_shape(cfg, info)
    if shape is not None:  # else the model stage checks it, once the data stage has read the images
        channels, size, n_classes = shape
        model = build_segmenter(cfg, channels, n_classes, size, cfg.seed)
        if cfg.model.checkpoint:  # a file that does not fit fails here, not after the data stage
            from pathlib import Path

            from soxai.models.registry import load_checkpoint

            load_checkpoint(Path(cfg.model.checkpoint), model)
