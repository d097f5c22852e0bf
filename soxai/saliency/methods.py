"""Per-sample saliency maps: the registry of attribution methods and a batched driver.

Every method in `SALIENCY_METHODS` maps a batch of inputs of shape (n, channels, height, width)
to an attribution of the same shape (Grad-CAM: (n, 1, height, width)); `reduce_channels` turns it
into one map per image and `iter_maps` runs the whole thing batch by batch over an array that may
be a memory map larger than RAM.

The methods live in one module per family; this module names them all and is the one place that
chooses among them:

- `soxai.saliency.gradients`: plain gradients (gradient, input_x_gradient, guided_backprop, deconvolution)
- `soxai.saliency.noise`: noise tunnels over the gradient (smoothgrad, vargrad)
- `soxai.saliency.path_integration`: path integration (integrated_gradients, integrated_gradients_captum,
  gradient_shap)
- `soxai.saliency.cam`: gradient x activation (gradcam, guided_gradcam)
- `soxai.saliency.relevance`: perturbation and relevance propagation (occlusion, deeplift, lrp)

A new method is one function in the module of its family and one entry in `SALIENCY_METHODS`. Every
public name of those modules is importable from here too.

The methods are captum's, except ``integrated_gradients``: soxai's own batched implementation
(captum's stays available as ``integrated_gradients_captum``), because captum's per-call overhead
cost 7-20% of the throughput on a small CNN (bench/saliency.py). Every method gives a map of an image that does
not depend on the batch it was computed in; the stochastic ones (smoothgrad, vargrad,
gradient_shap) get there by seeding their draws per image (`soxai.saliency.seeding`).

torch and captum are imported inside the functions: the config validator imports this module
for `SALIENCY_METHODS`, and ``soxai --help`` must not pay for torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

from soxai.device import resolve_device
from soxai.errors import ConfigError, DataError
from soxai.saliency.cam import gradcam, guided_gradcam, last_conv_layer
from soxai.saliency.gradients import deconvolution, gradient, guided_backprop, input_x_gradient
from soxai.saliency.noise import (
    SMOOTHGRAD_NOISE_LEVEL,
    SMOOTHGRAD_SAMPLES,
    SMOOTHGRAD_SEED,
    VARGRAD_NOISE_LEVEL,
    VARGRAD_SAMPLES,
    VARGRAD_SEED,
    smoothgrad,
    vargrad,
)
from soxai.saliency.path_integration import (
    GRADIENT_SHAP_NOISE_BASELINES,
    GRADIENT_SHAP_NOISE_LEVEL,
    GRADIENT_SHAP_SAMPLES,
    GRADIENT_SHAP_SEED,
    gauss_legendre,
    gradient_shap,
    gradient_shap_baselines,
    integrated_gradients,
    integrated_gradients_captum,
)
from soxai.saliency.relevance import OCCLUSION_WINDOW_FRACTION, deeplift, lrp, occlusion, occlusion_window

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import Tensor, nn

__all__ = [
    "GRADIENT_SHAP_NOISE_BASELINES",
    "GRADIENT_SHAP_NOISE_LEVEL",
    "GRADIENT_SHAP_SAMPLES",
    "GRADIENT_SHAP_SEED",
    "OCCLUSION_WINDOW_FRACTION",
    "SALIENCY_METHODS",
    "SMOOTHGRAD_NOISE_LEVEL",
    "SMOOTHGRAD_SAMPLES",
    "SMOOTHGRAD_SEED",
    "VARGRAD_NOISE_LEVEL",
    "VARGRAD_SAMPLES",
    "VARGRAD_SEED",
    "SaliencyMethod",
    "compute_maps",
    "deconvolution",
    "deeplift",
    "gauss_legendre",
    "gradcam",
    "gradient",
    "gradient_shap",
    "gradient_shap_baselines",
    "guided_backprop",
    "guided_gradcam",
    "input_x_gradient",
    "integrated_gradients",
    "integrated_gradients_captum",
    "iter_maps",
    "last_conv_layer",
    "lrp",
    "occlusion",
    "occlusion_window",
    "reduce_channels",
    "resolve_device",
    "smoothgrad",
    "vargrad",
]


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


# In the order the methods were added: `evaluate_saliency` scores "all methods" in this order, so it is
# part of the output (the rows of saliency_eval), not a grouping by family.
SALIENCY_METHODS: dict[str, SaliencyMethod] = {
    "gradient": gradient,
    "input_x_gradient": input_x_gradient,
    "integrated_gradients": integrated_gradients,
    "integrated_gradients_captum": integrated_gradients_captum,
    "gradcam": gradcam,
    "guided_backprop": guided_backprop,
    "smoothgrad": smoothgrad,
    "vargrad": vargrad,
    "gradient_shap": gradient_shap,
    "deconvolution": deconvolution,
    "guided_gradcam": guided_gradcam,
    "deeplift": deeplift,
    "lrp": lrp,
    "occlusion": occlusion,
}
"""Method name -> attribution function ``(model, x, target, *, ig_steps, internal_batch_size, layer)``.

``x`` has shape (n, channels, height, width) and requires grad, ``target`` is an int64 tensor of
shape (n,); the result has the shape of ``x``, except Grad-CAM's, which is (n, 1, height, width).
"""


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
