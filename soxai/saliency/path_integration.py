"""Path integration: attributions that integrate the gradient along paths from baselines to the input.

``integrated_gradients`` (soxai's own batched Gauss-Legendre quadrature from a zero baseline),
``integrated_gradients_captum`` (captum's, the reference it is tested against) and ``gradient_shap``
(expected gradients over a distribution of baselines and random points on the paths).

Entries of `soxai.saliency.methods.SALIENCY_METHODS`, called as `soxai.saliency.methods.SaliencyMethod` says.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from soxai.saliency.seeding import per_image_seeded, standard_noise

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor, nn


GRADIENT_SHAP_SAMPLES = 8
"""(baseline, point on the path) draws per image in gradient_shap; each costs one forward and backward row."""

GRADIENT_SHAP_NOISE_BASELINES = 3
"""Noise images added to the zero baseline in gradient_shap's baseline distribution."""

GRADIENT_SHAP_NOISE_LEVEL = 0.2
"""Standard deviation of gradient_shap's noise baselines as a fraction of each image's value range.

Large enough that a pixel at 0 (which the zero baseline can never credit) gets attribution, small
enough that the baselines still mean "no signal"."""

GRADIENT_SHAP_SEED = 0
"""Seed of gradient_shap's noise baselines and of captum's draws of baselines and path points."""


def integrated_gradients(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    *,
    ig_steps: int,
    internal_batch_size: int,
    layer: nn.Module | None,
) -> Tensor:
    r"""Integrated gradients from a zero baseline, by ``ig_steps``-point Gauss-Legendre quadrature.

    ``IG_k(x) = x * \int_0^1 grad f_k(a x) da ~= x * sum_s w_s grad f_k(a_s x)``, with captum's default
    nodes ``a_s`` and weights ``w_s`` (see `gauss_legendre`), so the maps equal captum's
    (`integrated_gradients_captum`) up to float32 rounding.

    The ``n * ig_steps`` interpolated inputs go through the model in chunks of at most
    ``internal_batch_size`` rows: ``internal_batch_size // n`` whole steps of the batch at a time
    (or, when ``internal_batch_size < n``, one step of a slice of the batch), with one forward and
    one ``torch.autograd.grad`` of the summed target logits per chunk. The rows of a chunk are
    independent (the model is in eval mode), so the gradient of the sum is each row's own gradient.
    Only one chunk of inputs exists at a time: memory is that of an ordinary batch of
    ``internal_batch_size`` images, whatever ``n`` and ``ig_steps``.

    Compared with captum's implementation this skips the input formatting, the per-call hook and
    gradient bookkeeping and the target expansion, and a chunk is built by one broadcast multiply
    (``alphas[:, None] * x[None]``) and reduced by one weighted sum, with no gather or scatter by
    index (``index_add_`` alone cost a third of a forward-backward on CPU).

    Returns
    -------
    Tensor of shape (n, channels, height, width)
    """
    import torch

    x = x.detach()
    n, rest = x.shape[0], tuple(x.shape[1:])
    alphas, weights = (torch.as_tensor(v, dtype=x.dtype, device=x.device) for v in gauss_legendre(ig_steps))
    ones = (1,) * len(rest)
    internal_batch_size = max(1, internal_batch_size)
    total = torch.zeros_like(x)

    def grad_at(point: Tensor, point_target: Tensor) -> Tensor:
        point.requires_grad_(True)
        score = model(point).gather(1, point_target[:, None]).sum()
        return torch.autograd.grad(score, point)[0]

    if internal_batch_size >= n:
        per_chunk = internal_batch_size // n
        chunk_target = target.repeat(per_chunk)
        for s0 in range(0, ig_steps, per_chunk):
            k = min(per_chunk, ig_steps - s0)
            # The zero baseline makes the path point a * x: no baseline tensor to subtract.
            points = (alphas[s0 : s0 + k].view(k, 1, *ones) * x.unsqueeze(0)).reshape(k * n, *rest)
            grad = grad_at(points, chunk_target[: k * n]).view(k, n, *rest)
            total += (grad * weights[s0 : s0 + k].view(k, 1, *ones)).sum(dim=0)
    else:
        for s in range(ig_steps):
            for i0 in range(0, n, internal_batch_size):
                i1 = min(i0 + internal_batch_size, n)
                grad = grad_at(alphas[s] * x[i0:i1], target[i0:i1])
                total[i0:i1] += grad * weights[s]
    return total * x


def gauss_legendre(n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of ``n_steps``-point Gauss-Legendre quadrature on [0, 1] (captum's default).

    Returns
    -------
    alphas : ndarray of shape (n_steps,), float64
        Points of the path, in (0, 1), increasing.
    weights : ndarray of shape (n_steps,), float64
        Their weights; they sum to 1.
    """
    import numpy as np

    nodes, weights = np.polynomial.legendre.leggauss(n_steps)
    return 0.5 * (1.0 + nodes), 0.5 * weights


def integrated_gradients_captum(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    *,
    ig_steps: int,
    internal_batch_size: int,
    layer: nn.Module | None,
) -> Tensor:
    """captum's integrated gradients from a zero baseline with ``ig_steps`` steps: the reference for
    `integrated_gradients`, which computes the same maps faster.

    captum takes ``internal_batch_size // n`` steps (at least one) per forward, so rows per forward
    are ``n`` times that: with ``internal_batch_size`` below ``n`` a forward holds all ``n`` images.

    Returns
    -------
    Tensor of shape (n, channels, height, width)
    """
    from captum.attr import IntegratedGradients

    return IntegratedGradients(model).attribute(
        x, baselines=0.0, target=target, n_steps=ig_steps, internal_batch_size=internal_batch_size
    )


def gradient_shap(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    *,
    ig_steps: int,
    internal_batch_size: int,
    layer: nn.Module | None,
) -> Tensor:
    """GradientSHAP (captum): expected gradients over a baseline distribution.

    Each of `GRADIENT_SHAP_SAMPLES` draws picks a baseline ``b`` and a point ``a`` in [0, 1]
    uniformly, and contributes ``(x - b) * grad f_k(b + a (x - b))``; the map is their mean. On a
    linear model its expectation is ``(x - mean(b)) * W[k]``.

    The baselines (see `gradient_shap_baselines`) are the zero image and
    `GRADIENT_SHAP_NOISE_BASELINES` noise images. No noise is added to the input (captum's
    ``stdevs=0``): the noise baselines already spread the paths. captum draws baselines and points
    for the whole batch from NumPy's global RNG at offsets that depend on the position in the batch,
    so each image goes through it alone, with torch's and NumPy's RNG seeded with
    `GRADIENT_SHAP_SEED` (see `soxai.saliency.noise.smoothgrad`); the caller's RNG states are restored afterwards. The
    draws do not depend on the device, so CPU and CUDA maps agree.

    Returns
    -------
    Tensor of shape (n, channels, height, width)
    """
    from captum.attr import GradientShap

    explainer = GradientShap(model)
    noise = standard_noise(GRADIENT_SHAP_NOISE_BASELINES, tuple(x.shape[1:]), GRADIENT_SHAP_SEED).to(x)

    def one(i: int) -> Tensor:
        xi = x[i : i + 1]
        return explainer.attribute(
            xi,
            baselines=gradient_shap_baselines(xi, noise),
            n_samples=GRADIENT_SHAP_SAMPLES,
            stdevs=0.0,
            target=target[i : i + 1],
        )

    return per_image_seeded(x, GRADIENT_SHAP_SEED, one)


def gradient_shap_baselines(xi: Tensor, noise: Tensor | None = None) -> Tensor:
    """The baseline distribution of `gradient_shap` for one image.

    Parameters
    ----------
    xi : Tensor of shape (1, channels, height, width)
    noise : Tensor of shape (GRADIENT_SHAP_NOISE_BASELINES, channels, height, width), optional
        Standard-normal draws; default the seeded ones every image gets.

    Returns
    -------
    Tensor of shape (1 + GRADIENT_SHAP_NOISE_BASELINES, channels, height, width)
        The zero image, then the noise scaled to ``GRADIENT_SHAP_NOISE_LEVEL * (max - min)`` of ``xi``.
    """
    import torch

    if noise is None:
        noise = standard_noise(GRADIENT_SHAP_NOISE_BASELINES, tuple(xi.shape[1:]), GRADIENT_SHAP_SEED).to(xi)
    scale = GRADIENT_SHAP_NOISE_LEVEL * (xi.max() - xi.min()).detach()
    return torch.cat([torch.zeros_like(xi), noise * scale]).detach()
