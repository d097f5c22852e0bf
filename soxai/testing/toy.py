"""Toy models whose attributions are known in closed form.

`LinearToy` has exact answers for every gradient-based method, so tests can compare against
formulas instead of golden numbers. `ConvToy` is the smallest network with a Conv2d and a ReLU
module, for Grad-CAM, guided backprop and shape/batching tests. `ConvPoolToy` drops the ReLU, so that
Grad-CAM's channel weights are the class weights over the number of conv pixels, exactly.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn


class LinearToy(nn.Module):
    r"""Flatten, then a bias-free linear layer: ``f(x) = W @ vec(x)``.

    For an input ``x`` of shape (channels, height, width) and class ``k``, with ``W[k]`` reshaped
    to (channels, height, width):

    - gradient (saliency, sign kept): ``W[k]``, independent of ``x``;
    - input x gradient: ``x * W[k]``;
    - integrated gradients with a zero baseline: ``x * W[k]`` exactly, for any number of steps,
      because the gradient is constant along the path; completeness holds with
      ``f_k(x) - f_k(0) = f_k(x) = sum(x * W[k])``;
    - guided backprop: ``W[k]`` (there is no ReLU to gate the gradient);
    - smoothgrad: ``W[k]`` exactly, whatever the noise, since the gradient does not depend on
      the point where it is taken.

    Grad-CAM is undefined: the model has no Conv2d.

    Parameters
    ----------
    in_shape : tuple of int (channels, height, width)
        Shape of one input sample.
    n_classes : int
        Number of outputs.
    weight : Tensor or ndarray of shape (n_classes, channels, height, width), optional
        The weights ``W``; shape (n_classes, channels * height * width) works too.
        Default: standard normal draws from a generator seeded with 0.
    """

    def __init__(
        self,
        in_shape: tuple[int, int, int],
        n_classes: int,
        weight: Tensor | np.ndarray | None = None,
    ) -> None:
        super().__init__()
        self.in_shape = tuple(int(s) for s in in_shape)
        n_features = int(np.prod(self.in_shape))
        if weight is None:
            generator = torch.Generator().manual_seed(0)
            weight = torch.randn(n_classes, n_features, generator=generator)
        weight = torch.as_tensor(weight, dtype=torch.float32)
        if weight.shape[0] != n_classes or weight[0].numel() != n_features:
            raise ValueError(
                f"weight must have shape ({n_classes}, {n_features}) or ({n_classes}, *{self.in_shape}); "
                f"got {tuple(weight.shape)}"
            )
        self.flatten = nn.Flatten()
        self.linear = nn.Linear(n_features, n_classes, bias=False)
        with torch.no_grad():
            self.linear.weight.copy_(weight.reshape(n_classes, n_features))

    def class_weight(self, k: int) -> Tensor:
        """The weights of class ``k``: the closed-form gradient.

        Returns
        -------
        Tensor of shape (channels, height, width)
        """
        return self.linear.weight[k].detach().reshape(self.in_shape)

    def forward(self, x: Tensor) -> Tensor:
        """Map inputs of shape (n_samples, channels, height, width) to logits (n_samples, n_classes)."""
        return self.linear(self.flatten(x))


class ConvToy(nn.Module):
    r"""Conv2d (3x3, same padding) -> ReLU -> global average pool -> Linear, seeded weights.

    With conv output ``A_j`` (pre-ReLU) and last-layer weights ``V``, the logit of class ``k`` is
    ``f_k(x) = sum_j V[k, j] * mean_p relu(A_j(x))[p] + b_k``. The gradient of ``f_k`` with respect
    to ``A_j[p]`` is ``V[k, j] * 1[A_j[p] > 0] / (height * width)``, so Grad-CAM on the conv layer is
    ``relu(sum_j alpha_j A_j)`` with ``alpha_j = V[k, j] * fraction of positive A_j / (height * width)``
    and is non-negative and of the input's spatial size (the conv keeps it).

    The ReLU is an ``nn.ReLU`` module, so guided backprop can hook it.

    Parameters
    ----------
    in_channels : int
        Channels of the input (n_samples, in_channels, height, width).
    n_classes : int
        Number of outputs.
    hidden : int
        Channels of the conv layer.
    seed : int
        Seed of the weight initialisation; the global torch RNG is left as it was.
    stride : int
        Stride of the conv layer.
    relu : bool
        False leaves the ReLU out (an ``nn.Identity``), as `ConvPoolToy` does.
    """

    def __init__(self, in_channels: int = 3, n_classes: int = 3, hidden: int = 4, seed: int = 0,
                 stride: int = 1, relu: bool = True) -> None:
        super().__init__()
        # fork_rng so that building a toy model does not move the caller's random stream.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.conv = nn.Conv2d(in_channels, hidden, kernel_size=3, padding=1, stride=stride)
            self.relu = nn.ReLU() if relu else nn.Identity()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.flatten = nn.Flatten()
            self.head = nn.Linear(hidden, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Map inputs of shape (n_samples, in_channels, height, width) to logits (n_samples, n_classes)."""
        return self.head(self.flatten(self.pool(self.relu(self.conv(x)))))


class ConvPoolToy(ConvToy):
    r"""Conv2d (3x3, padding 1, ``stride``) -> global average pool -> Linear, seeded weights; no ReLU.

    With conv output ``A_j`` of ``h`` x ``w`` pixels (the input's size with stride 1, about half of it
    with stride 2) and last-layer weights ``V``, the logit of class ``k`` is
    ``f_k(x) = sum_j V[k, j] * mean_p A_j(x)[p] + b_k``. Its gradient with respect to ``A_j[p]`` is
    ``V[k, j] / (h * w)`` at every ``p`` (no ReLU gates it, unlike `ConvToy`), so Grad-CAM on the conv
    layer is exactly ``relu(sum_j alpha_j A_j)`` with ``alpha_j = V[k, j] / (h * w)``, at the conv's
    resolution; with stride 2 it is then upsampled to the input's size.

    Parameters are those of `ConvToy`; ``stride`` is the conv's stride.
    """

    def __init__(self, in_channels: int = 3, n_classes: int = 3, hidden: int = 4, stride: int = 1,
                 seed: int = 0) -> None:
        super().__init__(in_channels, n_classes, hidden, seed, stride=stride, relu=False)
