"""Per-sample saliency maps: a registry of attribution methods and a batched driver.

Every method in `SALIENCY_METHODS` maps a batch of inputs of shape (n, channels, height, width)
to an attribution of the same shape (Grad-CAM: (n, 1, height, width)); `reduce_channels` turns it
into one map per image and `iter_maps` runs the whole thing batch by batch over an array that may
be a memory map larger than RAM.

The methods are captum's, except ``integrated_gradients``: soxai's own batched implementation
(captum's stays available as ``integrated_gradients_captum``), because captum's per-call overhead
cost 7-20% of the throughput on a small CNN (bench/saliency.py). Every method gives a map of an image that does
not depend on the batch it was computed in; the stochastic ones (smoothgrad, vargrad,
gradient_shap) get there by seeding their draws per image.

torch and captum are imported inside the functions: the config validator imports this module
for `SALIENCY_METHODS`, and ``soxai --help`` must not pay for torch.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

from soxai.errors import ConfigError, DataError

if TYPE_CHECKING:
    import numpy as np
    import torch
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

OCCLUSION_WINDOW_FRACTION = 1 / 8
"""Side of the occluding window as a fraction of the image side (rounded, at least 1 pixel).

32x32 images get a 4x4 window moved by 2 pixels: 15 x 15 = 225 occluded copies of every image,
each one forward pass. The stride is half the window, so every pixel is covered by up to 4 windows
and the map is smoother than the window grid. The same fraction keeps the count near 225 at any
image size (224x224: window 28, stride 14), so the cost per image does not grow with the side."""


class SaliencyMethod(Protocol):
    """What every entry of `SALIENCY_METHODS` is called with."""

    def __call__(
        self,
        model: nn.Module,
        x: Tensor,
        target: Tensor,
        *,
        ig_steps: int,
        internal_batch_size: int,
        layer: nn.Module | None,
    ) -> Tensor: ...


SALIENCY_METHODS: dict[str, SaliencyMethod] = {}
"""Method name -> attribution function ``(model, x, target, *, ig_steps, internal_batch_size, layer)``.

``x`` has shape (n, channels, height, width) and requires grad, ``target`` is an int64 tensor of
shape (n,); the result has the shape of ``x``, except Grad-CAM's, which is (n, 1, height, width).
"""


@contextlib.contextmanager
def _quiet_relu_hooks() -> Iterator[None]:
    """Silence captum's per-call notice that it sets (and removes) ReLU hooks, inside the call only."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU", category=UserWarning)
        yield


def _register(name: str) -> Callable[[SaliencyMethod], SaliencyMethod]:
    def add(method: SaliencyMethod) -> SaliencyMethod:
        SALIENCY_METHODS[name] = method
        return method

    return add


@_register("gradient")
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


@_register("input_x_gradient")
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


@_register("integrated_gradients")
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


@_register("integrated_gradients_captum")
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


@_register("gradcam")
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


@_register("guided_backprop")
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

    with _quiet_relu_hooks():
        return GuidedBackprop(model).attribute(x, target=target)


@_register("smoothgrad")
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


@_register("vargrad")
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

    return _per_image_seeded(x, seed, one)


def _per_image_seeded(x: Tensor, seed: int, attribute_one: Callable[[int], Tensor]) -> Tensor:
    """``cat([attribute_one(i) for i in images])``, with the RNGs seeded anew before every image.

    Both generators captum draws from are seeded: torch's on the device of ``x`` (noise) and NumPy's
    global one (GradientShap picks baselines and path points with ``np.random``). The caller's
    states of both are restored afterwards.
    """
    import numpy as np
    import torch

    fork_devices = []
    if x.device.type == "cuda":
        fork_devices = [x.device.index if x.device.index is not None else torch.cuda.current_device()]
    numpy_state = np.random.get_state()
    maps = []
    try:
        with torch.random.fork_rng(devices=fork_devices, device_type="cuda"):
            for i in range(x.shape[0]):
                _seed_rng(x.device, seed)
                np.random.seed(seed)
                maps.append(attribute_one(i))
    finally:
        np.random.set_state(numpy_state)
    return torch.cat(maps)


@_register("gradient_shap")
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
    `GRADIENT_SHAP_SEED` (see `smoothgrad`); the caller's RNG states are restored afterwards. The
    draws do not depend on the device, so CPU and CUDA maps agree.

    Returns
    -------
    Tensor of shape (n, channels, height, width)
    """
    from captum.attr import GradientShap

    explainer = GradientShap(model)
    noise = _standard_noise(GRADIENT_SHAP_NOISE_BASELINES, tuple(x.shape[1:]), GRADIENT_SHAP_SEED).to(x)

    def one(i: int) -> Tensor:
        xi = x[i : i + 1]
        return explainer.attribute(
            xi,
            baselines=gradient_shap_baselines(xi, noise),
            n_samples=GRADIENT_SHAP_SAMPLES,
            stdevs=0.0,
            target=target[i : i + 1],
        )

    return _per_image_seeded(x, GRADIENT_SHAP_SEED, one)


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
        noise = _standard_noise(GRADIENT_SHAP_NOISE_BASELINES, tuple(xi.shape[1:]), GRADIENT_SHAP_SEED).to(xi)
    scale = GRADIENT_SHAP_NOISE_LEVEL * (xi.max() - xi.min()).detach()
    return torch.cat([torch.zeros_like(xi), noise * scale]).detach()


def _standard_noise(n: int, shape: tuple[int, ...], seed: int) -> Tensor:
    """``n`` standard-normal images from their own CPU generator: the same on every device and call."""
    import torch

    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))


@_register("deconvolution")
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

    with _quiet_relu_hooks():
        return Deconvolution(model).attribute(x, target=target)


@_register("guided_gradcam")
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
    with _quiet_relu_hooks():
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


@_register("deeplift")
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


@_register("lrp")
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


@_register("occlusion")
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


def _seed_rng(device: torch.device, seed: int) -> None:
    """Seed only the generator that draws on ``device``; other devices' streams are not touched."""
    import torch

    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.manual_seed(seed)
    else:
        torch.random.default_generator.manual_seed(seed)


_REDUCTIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "abs_sum": lambda attr: attr.abs().sum(dim=1),
    "sum": lambda attr: attr.sum(dim=1),
    "max_abs": lambda attr: attr.abs().amax(dim=1),
}


def reduce_channels(attr: Tensor, how: str) -> Tensor:
    """Reduce an attribution to one map per image.

    Parameters
    ----------
    attr : Tensor of shape (n, channels, height, width)
    how : {"abs_sum", "sum", "max_abs"}
        ``abs_sum``: sum of absolute values over channels; ``sum``: signed sum over channels;
        ``max_abs``: largest absolute value over channels.

    Returns
    -------
    Tensor of shape (n, height, width)
    """
    if how not in _REDUCTIONS:
        raise ConfigError(f"unknown channel reduction {how!r}; choose one of {sorted(_REDUCTIONS)}")
    if attr.dim() != 4:
        raise DataError(
            f"attributions must have shape (n, channels, height, width); got shape {tuple(attr.shape)}"
        )
    return _REDUCTIONS[how](attr)


def resolve_device(name: str) -> torch.device:
    """The torch device named by ``saliency.device``.

    Parameters
    ----------
    name : {"auto", "cpu", "cuda"}
        ``auto`` is CUDA when a GPU is visible, else CPU.

    Returns
    -------
    torch.device

    Raises
    ------
    ConfigError
        On an unknown name, or ``cuda`` on a machine where torch sees no GPU.
    """
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device='cuda' but torch {torch.__version__} sees no CUDA GPU on this machine; "
                f"set saliency.device=auto to use a GPU when there is one and the CPU otherwise"
            )
        return torch.device("cuda")
    raise ConfigError(f"unknown device {name!r}; choose one of ['auto', 'cpu', 'cuda']")


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


def iter_maps(
    model: nn.Module,
    images: np.ndarray,
    targets: np.ndarray,
    *,
    method: str,
    batch_size: int,
    ig_steps: int,
    reduce: str,
    device: torch.device,
    layer: nn.Module | None = None,
    mixed_precision: bool = False,
) -> Iterator[tuple[int, np.ndarray]]:
    """Saliency maps of ``images``, one batch at a time.

    The model is put in eval mode and moved to ``device`` (both in place). Only one batch of
    ``images`` is read into memory at a time, so a ``np.memmap`` larger than RAM works.

    Parameters
    ----------
    model : nn.Module
        Maps (n, channels, height, width) to logits (n, n_classes).
    images : ndarray or np.memmap of shape (n_samples, channels, height, width), float32
    targets : ndarray of shape (n_samples,), int
        Class explained for each image.
    method : str
        A key of `SALIENCY_METHODS`.
    batch_size : int
        Images per batch; also the number of interpolated inputs per forward in integrated gradients.
    ig_steps : int
        Steps of integrated gradients (ignored by the other methods).
    reduce : {"abs_sum", "sum", "max_abs"}
        Channel reduction, see `reduce_channels`.
    device : torch.device
        Where the model runs, e.g. from `resolve_device`.
    layer : nn.Module, optional
        Grad-CAM's layer (ignored by the other methods); default the last Conv2d.
    mixed_precision : bool, default False
        Run the model under ``torch.autocast`` (float16 on CUDA, bfloat16 on the CPU). Opt-in: maps
        agree with float32 in ranking, not in value (tests/saliency/test_mixed_precision.py).

    Yields
    ------
    start : int
        Index in ``images`` of the first map of the batch.
    maps : ndarray of shape (batch, height, width), float32
    """
    import numpy as np

    attribute = _check_method(method)
    if reduce not in _REDUCTIONS:
        raise ConfigError(f"unknown channel reduction {reduce!r}; choose one of {sorted(_REDUCTIONS)}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1; got {batch_size}")
    if ig_steps < 1:
        raise ConfigError(f"ig_steps must be >= 1; got {ig_steps}")
    shape = tuple(images.shape)
    if len(shape) != 4:
        raise DataError(f"images must have shape (n_samples, channels, height, width); got shape {shape}")
    targets = np.asarray(targets)
    if targets.shape != (shape[0],) or not np.issubdtype(targets.dtype, np.integer):
        raise DataError(
            f"targets must be integer class indices of shape ({shape[0]},), one per image; "
            f"got dtype {targets.dtype} and shape {targets.shape}"
        )

    model.eval().to(device)
    # Checks above run at the call, not at the first next(): the batches come from a separate generator.
    return _iter_batches(model, images, targets, attribute, batch_size, ig_steps, reduce, device, layer,
                         mixed_precision)


def _iter_batches(
    model: nn.Module,
    images: np.ndarray,
    targets: np.ndarray,
    attribute: SaliencyMethod,
    batch_size: int,
    ig_steps: int,
    reduce: str,
    device: torch.device,
    layer: nn.Module | None,
    mixed_precision: bool = False,
) -> Iterator[tuple[int, np.ndarray]]:
    import numpy as np
    import torch

    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16

    n_samples = images.shape[0]
    for start in range(0, n_samples, batch_size):
        stop = min(start + batch_size, n_samples)
        # A copy of just this batch: a memmap slice is read-only, which torch.from_numpy warns about.
        batch = np.array(images[start:stop], dtype=np.float32, copy=True)
        target = torch.from_numpy(targets[start:stop].astype(np.int64)).to(device)
        # Grad mode is entered per batch and left before the yield: a generator that yields inside
        # a grad-mode context would leak that mode into the caller between batches.
        with torch.inference_mode(False), torch.enable_grad():
            x = torch.from_numpy(batch).to(device).requires_grad_(True)
            if start == 0:
                _check_targets(model, x, targets)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=mixed_precision):
                attr = attribute(model, x, target, ig_steps=ig_steps, internal_batch_size=batch_size, layer=layer)
            maps = reduce_channels(attr.detach().float(), reduce).to("cpu", torch.float32).numpy()
        yield start, maps


def compute_maps(
    model: nn.Module,
    images: np.ndarray,
    targets: np.ndarray,
    *,
    method: str,
    batch_size: int,
    ig_steps: int,
    reduce: str,
    device: torch.device,
    layer: nn.Module | None = None,
    mixed_precision: bool = False,
) -> np.ndarray:
    """All saliency maps of ``images`` in memory; see `iter_maps` for the parameters.

    Returns
    -------
    maps : ndarray of shape (n_samples, height, width), float32
    """
    import numpy as np

    parts = [
        maps
        for _, maps in iter_maps(
            model,
            images,
            targets,
            method=method,
            batch_size=batch_size,
            ig_steps=ig_steps,
            reduce=reduce,
            device=device,
            layer=layer,
            mixed_precision=mixed_precision,
        )
    ]
    if not parts:
        return np.zeros((0, *tuple(images.shape)[2:]), dtype=np.float32)
    return np.concatenate(parts)


def _check_method(method: str) -> SaliencyMethod:
    if method not in SALIENCY_METHODS:
        raise ConfigError(f"unknown saliency method {method!r}; choose one of {sorted(SALIENCY_METHODS)}")
    return SALIENCY_METHODS[method]


def _check_targets(model: nn.Module, x: Tensor, targets: np.ndarray) -> None:
    """Fail with a clear message, instead of captum's index error, on targets the model cannot output."""
    import torch

    with torch.no_grad():
        n_classes = model(x[:1]).shape[1]
    low, high = int(targets.min()), int(targets.max())
    if low < 0 or high >= n_classes:
        raise DataError(
            f"targets range over [{low}, {high}] but the model has {n_classes} outputs (classes 0 to "
            f"{n_classes - 1}); fix the labels or the model's number of classes"
        )
