"""Per-sample saliency maps: a registry of captum attribution methods and a batched driver.

Every method in `SALIENCY_METHODS` maps a batch of inputs of shape (n, channels, height, width)
to an attribution of the same shape (Grad-CAM: (n, 1, height, width)); `reduce_channels` turns it
into one map per image and `iter_maps` runs the whole thing batch by batch over an array that may
be a memory map larger than RAM.

torch and captum are imported inside the functions: the config validator imports this module
for `SALIENCY_METHODS`, and ``soxai --help`` must not pay for torch.
"""

from __future__ import annotations

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
    """Integrated gradients from a zero baseline with ``ig_steps`` steps.

    The ``n * ig_steps`` interpolated inputs go through the model ``internal_batch_size`` at a time,
    so memory stays that of one ordinary batch.

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

    with warnings.catch_warnings():
        # captum warns on every call that it sets (and removes) ReLU hooks: once per batch is noise.
        warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU", category=UserWarning)
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
    import torch
    from captum.attr import NoiseTunnel, Saliency

    tunnel = NoiseTunnel(Saliency(model))
    fork_devices = []
    if x.device.type == "cuda":
        fork_devices = [x.device.index if x.device.index is not None else torch.cuda.current_device()]
    maps = []
    with torch.random.fork_rng(devices=fork_devices, device_type="cuda"):
        for i in range(x.shape[0]):
            xi = x[i : i + 1]
            # stdevs must be a Python float: NoiseTunnel asserts isinstance(stdevs, float).
            stdev = SMOOTHGRAD_NOISE_LEVEL * float((xi.max() - xi.min()).item())
            _seed_rng(x.device, SMOOTHGRAD_SEED)
            maps.append(
                tunnel.attribute(
                    xi,
                    nt_type="smoothgrad",
                    nt_samples=SMOOTHGRAD_SAMPLES,
                    stdevs=stdev,
                    target=target[i : i + 1],
                    abs=False,
                )
            )
    return torch.cat(maps)


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
    VGGs, ...); for others, pass the layer explicitly.

    Raises
    ------
    ConfigError
        If the model has no Conv2d.
    """
    from torch import nn

    convs = [module for module in model.modules() if isinstance(module, nn.Conv2d)]
    if not convs:
        raise ConfigError(
            f"gradcam needs a Conv2d layer, but the model {type(model).__name__} has none; "
            f"choose another saliency.method, e.g. gradient or integrated_gradients"
        )
    return convs[-1]


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
    return _iter_batches(model, images, targets, attribute, batch_size, ig_steps, reduce, device, layer)


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
) -> Iterator[tuple[int, np.ndarray]]:
    import numpy as np
    import torch

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
            attr = attribute(model, x, target, ig_steps=ig_steps, internal_batch_size=batch_size, layer=layer)
            maps = reduce_channels(attr.detach(), reduce).to("cpu", torch.float32).numpy()
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
