"""Noise tunnels over the plain gradient: smoothgrad (the mean) and vargrad (the variance) of the gradient
over noisy copies of each image.

Entries of `soxai.saliency.methods.SALIENCY_METHODS`, called as `soxai.saliency.methods.SaliencyMethod` says.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from soxai.saliency.seeding import per_image_seeded

if TYPE_CHECKING:
    from torch import Tensor, nn


SMOOTHGRAD_SAMPLES = 8
"""Noisy copies averaged per image by smoothgrad; few, because every copy costs a backward pass."""

SMOOTHGRAD_NOISE_LEVEL = 0.1
"""Standard deviation of smoothgrad's noise as a fraction of each image's value range (max - min)."""

SMOOTHGRAD_SEED = 0
"""Seed of smoothgrad's noise, fixed so that the same image always gets the same map."""

VARGRAD_SAMPLES = 8
"""Noisy copies per image whose gradient variance vargrad takes; as few as smoothgrad, for the same reason."""

VARGRAD_NOISE_LEVEL = 0.1
"""Standard deviation of vargrad's noise as a fraction of each image's value range (max - min)."""

VARGRAD_SEED = 0
"""Seed of vargrad's noise, fixed so that the same image always gets the same map."""


def smoothgrad(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    *,
    ig_steps: int,
    internal_batch_size: int,
    layer: nn.Module | None,
) -> Tensor:
    """SmoothGrad: the mean gradient over `SMOOTHGRAD_SAMPLES` noisy copies of each image.

    The noise of an image has standard deviation ``SMOOTHGRAD_NOISE_LEVEL * (max - min)`` of that
    image. captum's NoiseTunnel takes one stdev for the whole batch and draws the noise of a sample
    at an offset that depends on its position in the batch, so each image goes through it alone,
    with the RNG of its device seeded with `SMOOTHGRAD_SEED`: a map then does not depend on the batch
    it was computed in. Every image sees the same standard-normal draws (scaled to its range), so
    maps differ by their images, not by their luck. The caller's RNG state is restored afterwards.
    The draws come from the device's own generator, so CPU and CUDA maps differ in the noise.
    The price of one call per image: batches of `SMOOTHGRAD_SAMPLES` rows, which underuse a GPU.

    Returns
    -------
    Tensor of shape (n, channels, height, width)
    """
    return _noise_tunnel(model, x, target, "smoothgrad", SMOOTHGRAD_SAMPLES, SMOOTHGRAD_NOISE_LEVEL, SMOOTHGRAD_SEED)


def vargrad(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    *,
    ig_steps: int,
    internal_batch_size: int,
    layer: nn.Module | None,
) -> Tensor:
    """VarGrad: the variance of the gradient over `VARGRAD_SAMPLES` noisy copies of each image.

    Noise and seeding as in `smoothgrad` (with `VARGRAD_NOISE_LEVEL` and `VARGRAD_SEED`): one
    captum call per image, so a map does not depend on its batch. Non-negative; zero where the
    gradient does not change under the noise (everywhere, for a linear model).

    Returns
    -------
    Tensor of shape (n, channels, height, width), non-negative
    """
    return _noise_tunnel(model, x, target, "vargrad", VARGRAD_SAMPLES, VARGRAD_NOISE_LEVEL, VARGRAD_SEED)


def _noise_tunnel(
    model: nn.Module, x: Tensor, target: Tensor, nt_type: str, samples: int, noise_level: float, seed: int
) -> Tensor:
    """captum's NoiseTunnel over the plain gradient, one image per call, each with a freshly seeded RNG."""
    from captum.attr import NoiseTunnel, Saliency

    tunnel = NoiseTunnel(Saliency(model))

    def one(i: int) -> Tensor:
        xi = x[i : i + 1]
        # stdevs must be a Python float: NoiseTunnel asserts isinstance(stdevs, float).
        stdev = noise_level * float((xi.max() - xi.min()).item())
        return tunnel.attribute(
            xi, nt_type=nt_type, nt_samples=samples, stdevs=stdev, target=target[i : i + 1], abs=False
        )

    return per_image_seeded(x, seed, one)
