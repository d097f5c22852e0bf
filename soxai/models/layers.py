"""Choosing a layer of a model by name (Grad-CAM, saliency-weighted activations)."""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

import numpy as np

from soxai.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn


def feature_map_layers(model: nn.Module) -> list[str]:
    """Names of the modules that produce feature maps (Conv2d and the blocks holding one), in order."""
    from torch import nn

    names = []
    for name, module in model.named_modules():
        if not name:
            continue
        if isinstance(module, nn.Conv2d) or any(isinstance(m, nn.Conv2d) for m in module.modules()):
            names.append(name)
    return names


def resolve_layer(model: nn.Module, name: str | None, *, purpose: str = "model.layer") -> nn.Module:
    """The module of ``model`` called ``name`` (as in ``model.named_modules()``); ``None`` = last Conv2d.

    Raises
    ------
    ConfigError
        If no module has that name (the message lists the candidate layers and the closest names),
        or if ``name`` is None and the model has no Conv2d.
    """
    from torch import nn

    if name is None:
        convs = [module for module in model.modules() if isinstance(module, nn.Conv2d)]
        if not convs:
            raise ConfigError(
                f"{purpose}: no layer is named and the model {type(model).__name__} has no Conv2d to use by "
                f"default (it has none); set {purpose} to the name of a layer that outputs feature maps "
                "(n, channels, height, width), or choose a saliency.method that needs no layer, e.g. gradient"
            )
        return convs[-1]
    modules = dict(model.named_modules())
    if name in modules and name:
        return modules[name]
    candidates = feature_map_layers(model) or [n for n in modules if n]
    close = difflib.get_close_matches(name, list(modules), n=3)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ConfigError(
        f"{purpose}={name!r}: the model {type(model).__name__} has no layer of that name.{hint} "
        f"Layers with feature maps: {', '.join(candidates[:40])}"
        + (f" (and {len(candidates) - 40} more)" if len(candidates) > 40 else "")
    )


class ReceptiveField:
    """Which input pixels each cell of a layer's map sees: everything its activations depend on, measured, not
    derived from the architecture. A cell's window is the bounding box of the input pixels at which any of its
    channels has a non-zero gradient, for any of ``probes`` random images (one image can leave a pixel out: a
    max-pool passes one input of its window, a ReLU stops the gradient where it is off); measured once per cell,
    when first asked for.

    model : put in eval mode while measuring, and back in training mode only if it was in it
    image_shape : (C, H, W) of the inputs
    """

    def __init__(self, model: nn.Module, layer: str | None, image_shape: tuple[int, int, int], device=None,
                 probes: int = 8, seed: int = 0) -> None:
        self.model, self.module, self.device = model, resolve_layer(model, layer), device
        self.image_shape = tuple(int(v) for v in image_shape)
        self.probes, self.seed = probes, seed
        self._windows: dict[tuple[int, int], tuple[int, int, int, int] | None] = {}
        act = self._probe(None)[0]
        self.map_shape = tuple(int(v) for v in act.shape[2:]) if act.ndim == 4 else None

    @property
    def local(self) -> bool:
        """Whether a cell sees at most a quarter of the image (its window away from the border, at the map's
        centre): a mark's place. A deep layer's cells see most of it (the built-in ResNet's last conv on 32 px
        images: 25x25 px), and a window near the border is only smaller because the image ends there."""
        if self.map_shape is None:
            return False
        window = self.window(self.map_shape[0] // 2, self.map_shape[1] // 2)
        if window is None:
            return False
        y0, x0, y1, x1 = window
        return (y1 - y0) * (x1 - x0) <= self.image_shape[1] * self.image_shape[2] / 4

    def window(self, i: int, j: int) -> tuple[int, int, int, int] | None:
        """(y0, x0, y1, x1), half-open, of the pixels cell (i, j) sees; None where no pixel moves it."""
        if (i, j) not in self._windows:
            self._windows[(i, j)] = self._measure((i, j))
        return self._windows[(i, j)]

    def _probe(self, cell: tuple[int, int] | None):
        """The layer's output for the seeded probe images and, for ``cell``, the input pixels its channels move
        (H, W bool; the gradient to the input only, so nothing is left in the parameters' .grad)."""
        import torch

        captured: list = []
        handle = self.module.register_forward_hook(lambda _m, _i, out: captured.append(out))
        was_training = self.model.training
        gen = torch.Generator().manual_seed(self.seed)
        try:
            self.model.to(self.device).eval()
            x = torch.randn((self.probes, *self.image_shape), generator=gen).to(self.device)
            with torch.set_grad_enabled(cell is not None):
                self.model(x.requires_grad_(cell is not None))
                act = captured[-1]
                if cell is None:
                    return act, None
                weights = torch.randn(act.shape[1], generator=gen).to(self.device)
                (grad,) = torch.autograd.grad((act[:, :, cell[0], cell[1]] * weights).sum(), x)
            return act, (grad.abs().sum(dim=(0, 1)) > 0).cpu().numpy()
        finally:
            handle.remove()
            self.model.train(was_training)

    def _measure(self, cell: tuple[int, int]) -> tuple[int, int, int, int] | None:
        """The window of ``cell``: the bounding box of the pixels it sees, or None."""
        ys, xs = np.nonzero(self._probe(cell)[1])
        return (int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1) if len(ys) else None
