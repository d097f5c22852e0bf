"""Gradient x activation (CAM): Grad-CAM on a convolutional layer, and guided Grad-CAM (guided backprop
times Grad-CAM).

Entries of `soxai.saliency.methods.SALIENCY_METHODS`, called as `soxai.saliency.methods.SaliencyMethod` says.
Grad-CAM's attribution has one channel: shape (n, 1, height, width).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from soxai.errors import ConfigError
from soxai.saliency.gradients import quiet_relu_hooks

if TYPE_CHECKING:
    from torch import Tensor, nn


def gradcam(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    *,
    ig_steps: int,
    internal_batch_size: int,
    layer: nn.Module | None,
) -> Tensor:
    """Grad-CAM on ``layer`` (default: the last Conv2d), ReLU'd and upsampled bilinearly to the input.

    Returns
    -------
    Tensor of shape (n, 1, height, width), non-negative
    """
    from captum.attr import LayerAttribution, LayerGradCam

    layer = last_conv_layer(model) if layer is None else layer
    cam = LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=True)
    if cam.dim() != 4:
        raise ConfigError(
            f"gradcam needs a layer that outputs feature maps (n, channels, height, width); the chosen "
            f"layer {type(layer).__name__} gives attributions of shape {tuple(cam.shape)}; pass a Conv2d "
            f"or leave the layer unset to use the model's last Conv2d"
        )
    return LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode="bilinear")


def guided_gradcam(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    *,
    ig_steps: int,
    internal_batch_size: int,
    layer: nn.Module | None,
) -> Tensor:
    """Guided Grad-CAM: guided backprop times Grad-CAM on ``layer`` (default: the last Conv2d, as `gradcam`).

    The Grad-CAM map is upsampled bilinearly, as in `gradcam` (captum's default is nearest).
    Two passes per image: one for Grad-CAM, one for guided backprop.

    Returns
    -------
    Tensor of shape (n, channels, height, width)
    """
    from captum.attr import GuidedGradCam

    layer = last_conv_layer(model) if layer is None else layer
    with quiet_relu_hooks():
        # captum turns a failed upsampling into a warning and an empty result; the shape check below
        # turns that into an error that says what to do.
        warnings.filterwarnings("ignore", message="Couldn't appropriately interpolate", category=UserWarning)
        attr = GuidedGradCam(model, layer).attribute(x, target=target, interpolate_mode="bilinear")
    if attr.shape != x.shape:
        raise ConfigError(
            f"guided_gradcam needs a layer that outputs feature maps (n, channels, height, width); the chosen "
            f"layer {type(layer).__name__} does not; pass a Conv2d or leave the layer unset to use the "
            f"model's last Conv2d"
        )
    return attr


def last_conv_layer(model: nn.Module) -> nn.Module:
    """The last ``nn.Conv2d`` of ``model`` in registration order (``model.modules()``).

    Registration order is the order of forward execution in ordinary CNNs (torchvision's ResNets,
    VGGs, ...); for others, name the layer (``model.layer``).

    Raises
    ------
    ConfigError
        If the model has no Conv2d.
    """
    from soxai.models.layers import resolve_layer

    return resolve_layer(model, None, purpose="model.layer (Grad-CAM's layer)")
