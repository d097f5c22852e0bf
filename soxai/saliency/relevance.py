"""Relevance without the plain gradient: by perturbation (occlusion) and by propagation rules (DeepLIFT,
layer-wise relevance propagation).

Entries of `soxai.saliency.methods.SALIENCY_METHODS`, called as `soxai.saliency.methods.SaliencyMethod` says.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

from soxai.errors import ConfigError

if TYPE_CHECKING:
    from torch import Tensor, nn


OCCLUSION_WINDOW_FRACTION = 1 / 8
"""Side of the occluding window as a fraction of the image side (rounded, at least 1 pixel).

32x32 images get a 4x4 window moved by 2 pixels: 15 x 15 = 225 occluded copies of every image,
each one forward pass. The stride is half the window, so every pixel is covered by up to 4 windows
and the map is smoother than the window grid. The same fraction keeps the count near 225 at any
image size (224x224: window 28, stride 14), so the cost per image does not grow with the side."""


def occlusion(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    *,
    ig_steps: int,
    internal_batch_size: int,
    layer: nn.Module | None,
) -> Tensor:
    """Occlusion (captum): how much the target logit drops when a window of the image is set to zero.

    A perturbation baseline that needs no gradient. The window covers all channels and is
    `occlusion_window` in size; a pixel's value is the mean drop over the windows that cover it.
    One forward pass (no backward) per window position plus one for the image: 226 per 32x32
    image. ``internal_batch_size // n`` occluded copies of the batch go through per forward.

    Returns
    -------
    Tensor of shape (n, channels, height, width)
    """
    from captum.attr import Occlusion

    (window_h, window_w), (stride_h, stride_w) = occlusion_window(int(x.shape[-2]), int(x.shape[-1]))
    channels = int(x.shape[1])
    return Occlusion(model).attribute(
        x,
        sliding_window_shapes=(channels, window_h, window_w),
        strides=(channels, stride_h, stride_w),
        baselines=0.0,
        target=target,
        perturbations_per_eval=max(1, internal_batch_size // x.shape[0]),
    )


def occlusion_window(height: int, width: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Window and stride of `occlusion` for an image of ``height`` x ``width``.

    The window side is `OCCLUSION_WINDOW_FRACTION` of the image side, rounded, at least 1; the stride
    is half the window, at least 1. 32x32 gives window (4, 4) and stride (2, 2).

    Returns
    -------
    window : (int, int)
    stride : (int, int)
    """
    window = tuple(max(1, round(side * OCCLUSION_WINDOW_FRACTION)) for side in (height, width))
    stride = tuple(max(1, side // 2) for side in window)
    return (window[0], window[1]), (stride[0], stride[1])


def deeplift(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    *,
    ig_steps: int,
    internal_batch_size: int,
    layer: nn.Module | None,
) -> Tensor:
    """DeepLIFT (rescale rule, captum) from a zero baseline.

    Input and baseline go through the model in one forward of ``2 n`` rows; each non-linearity module
    (ReLU, MaxPool, Sigmoid, ...) then passes the gradient times ``delta out / delta in``. Equal to
    ``x * W[k]`` on a linear model. Non-linearities applied as functions (``F.relu``) are not hooked
    and pass the plain gradient.

    ``nn.ReLU(inplace=True)`` is fine (captum reads activations in pre-hooks; tested). A
    non-linearity module used twice in one forward is not: captum keeps one record of input and
    output per module, and fails with an error that does not name it; that case is detected first.

    Returns
    -------
    Tensor of shape (n, channels, height, width)

    Raises
    ------
    ConfigError
        When a non-linearity module is called more than once in a forward pass.
    """
    import torch
    from captum.attr import DeepLift
    from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR

    _check_single_use(model, x, "deeplift", lambda module: type(module) in SUPPORTED_NON_LINEAR)
    with warnings.catch_warnings():
        # captum warns on every call that it sets (and removes) hooks: once per batch is noise.
        warnings.filterwarnings("ignore", message="Setting forward, backward hooks", category=UserWarning)
        return DeepLift(model).attribute(x, baselines=torch.zeros_like(x), target=target)


_LRP_PASS_THROUGH_NAMES = ("Flatten", "Unflatten", "Identity")
"""Layers that only reshape (or copy) their input: LRP passes relevance through them unchanged.

captum has no rule for them, so it rejects every model with an ``nn.Flatten``, among them soxai's
own small_cnn; `lrp` gives them captum's epsilon rule, which on a layer whose output equals its
input (up to shape) returns the incoming relevance as it is."""


def lrp(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    *,
    ig_steps: int,
    internal_batch_size: int,
    layer: nn.Module | None,
) -> Tensor:
    """Layer-wise relevance propagation (captum, its default rules), scaled to the target logit.

    captum gives Conv2d, Linear, pooling and BatchNorm2d layers the epsilon rule (epsilon 1e-9) and
    passes relevance through ReLU, Dropout and Tanh; on a ReLU network with such layers that is
    input x gradient up to epsilon. soxai adds a pass-through for Flatten, Unflatten and Identity
    (see `_LRP_PASS_THROUGH_NAMES`). A rule a user set on a layer (``layer.rule = EpsilonRule()``,
    from ``captum.attr._utils.lrp_rules``) is used and kept: captum deletes every ``rule`` attribute
    after a call, so soxai puts the user's back. Two forward passes and one backward per image.

    Relevance is conserved only where biases are zero: each bias absorbs its share.

    Returns
    -------
    Tensor of shape (n, channels, height, width)

    Raises
    ------
    ConfigError
        When a layer has no LRP rule (captum would raise a TypeError naming only the type), or a
        layer with a rule is called more than once in a forward pass (LRP keeps one activation per
        layer). ``nn.ReLU(inplace=True)`` is fine (tested).
    """
    from captum.attr import LRP
    from captum.attr._core.lrp import SUPPORTED_LAYERS_WITH_RULES, SUPPORTED_NON_LINEAR_LAYERS
    from captum.attr._utils.lrp_rules import EpsilonRule

    # captum's LRP works on the leaves of the module tree, in the order of model.children().
    leaves = [(name, module) for name, module in model.named_modules() if not list(module.children())]
    user_rules = {module: module.rule for _, module in leaves if hasattr(module, "rule")}
    pass_through = []
    for name, module in leaves:
        kind = type(module)
        if module in user_rules or kind in SUPPORTED_LAYERS_WITH_RULES or kind in SUPPORTED_NON_LINEAR_LAYERS:
            continue
        if kind.__module__.startswith("torch.nn") and kind.__name__ in _LRP_PASS_THROUGH_NAMES:
            pass_through.append(module)
            continue
        known = sorted(k.__name__ for k in [*SUPPORTED_LAYERS_WITH_RULES, *SUPPORTED_NON_LINEAR_LAYERS])
        raise ConfigError(
            f"lrp has no propagation rule for layer {name!r} of type {kind.__name__} (captum's LRP has rules "
            f"for {', '.join(known)}; soxai adds {', '.join(_LRP_PASS_THROUGH_NAMES)}); choose another "
            f"saliency.method, e.g. input_x_gradient (what LRP-epsilon amounts to on ReLU networks) or "
            f"deeplift, or set a rule on that layer: layer.rule = captum.attr._utils.lrp_rules.EpsilonRule()"
        )
    _check_single_use(
        model, x, "lrp", lambda module: type(module) not in SUPPORTED_NON_LINEAR_LAYERS and not list(module.children())
    )
    try:
        for module in pass_through:
            module.rule = EpsilonRule()
        return LRP(model).attribute(x, target=target)
    finally:
        # captum deletes every rule (the user's too) and leaves each layer's last input activations behind.
        for _, module in leaves:
            for attribute in ("rule", "activations"):
                if attribute in vars(module):
                    delattr(module, attribute)
        for module, rule in user_rules.items():
            module.rule = rule


def _check_single_use(model: nn.Module, x: Tensor, method: str, hooked: Callable[[nn.Module], bool]) -> None:
    """Raise ConfigError when a module that ``method`` hooks runs more than once in one forward pass.

    DeepLift and LRP keep one record per module of what went through it; a module used twice (one
    ``self.relu`` called after two convolutions, as in torchvision's ResNet blocks) breaks that, and
    captum's own error does not say which module it is. One image is enough to find out.
    """
    import torch

    calls: dict[str, int] = {}

    def count(name: str) -> Callable[..., None]:
        return lambda *_: calls.__setitem__(name, calls.get(name, 0) + 1)

    handles = [module.register_forward_hook(count(name)) for name, module in model.named_modules() if hooked(module)]
    try:
        with torch.no_grad():
            model(x[:1].detach())
    finally:
        for handle in handles:
            handle.remove()
    reused = {name: count for name, count in calls.items() if count > 1}
    if reused:
        described = ", ".join(
            f"{name!r} ({type(model.get_submodule(name)).__name__}, {count} calls)" for name, count in reused.items()
        )
        raise ConfigError(
            f"{method} needs every hooked layer to run once per forward pass, but {described}; {method} keeps "
            f"one record of each layer's input and output, so a second call overwrites the first. Give each use "
            f"its own module instance (e.g. self.relu1 and self.relu2 instead of one self.relu), or choose "
            f"another saliency.method, e.g. integrated_gradients or input_x_gradient"
        )
