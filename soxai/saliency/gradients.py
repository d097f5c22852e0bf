"""Plain gradients: the gradient of the target logit, the input times it, and the two methods that only
change how it passes backwards through ReLU modules (guided backpropagation, deconvolution).

Entries of `soxai.saliency.methods.SALIENCY_METHODS`: each maps a batch of inputs of shape
(n, channels, height, width) to an attribution of the same shape. torch and captum are imported inside the
functions, so that importing the registry stays cheap (see `soxai.saliency.methods`).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor, nn


@contextlib.contextmanager
def quiet_relu_hooks() -> Iterator[None]:
    """Silence captum's per-call notice that it sets (and removes) ReLU hooks, inside the call only."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU", category=UserWarning)
        yield


def gradient(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    *,
    ig_steps: int,
    internal_batch_size: int,
    layer: nn.Module | None,
) -> Tensor:
    """Gradient of the target logit with respect to the input, sign kept.

    Returns
    -------
    Tensor of shape (n, channels, height, width)
    """
    from captum.attr import Saliency

    # abs=False: the channel reduction decides what to do with the sign, not the method.
    return Saliency(model).attribute(x, target=target, abs=False)


def input_x_gradient(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    *,
    ig_steps: int,
    internal_batch_size: int,
    layer: nn.Module | None,
) -> Tensor:
    """Input times the gradient of the target logit.

    Returns
    -------
    Tensor of shape (n, channels, height, width)
    """
    from captum.attr import InputXGradient

    return InputXGradient(model).attribute(x, target=target)


def guided_backprop(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    *,
    ig_steps: int,
    internal_batch_size: int,
    layer: nn.Module | None,
) -> Tensor:
    """Guided backpropagation: the gradient with negative signals stopped at every ``nn.ReLU`` module.

    ReLUs applied as functions (``F.relu``) cannot be hooked and behave as in the plain gradient.

    Returns
    -------
    Tensor of shape (n, channels, height, width)
    """
    from captum.attr import GuidedBackprop

    with quiet_relu_hooks():
        return GuidedBackprop(model).attribute(x, target=target)


def deconvolution(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    *,
    ig_steps: int,
    internal_batch_size: int,
    layer: nn.Module | None,
) -> Tensor:
    """Deconvolution (Zeiler & Fergus): backpropagation that passes, at every ``nn.ReLU`` module, the
    ReLU of the incoming gradient instead of gating it by the forward activation.

    As in `guided_backprop`, ReLUs applied as functions are not hooked.

    Returns
    -------
    Tensor of shape (n, channels, height, width)
    """
    from captum.attr import Deconvolution

    with quiet_relu_hooks():
        return Deconvolution(model).attribute(x, target=target)
