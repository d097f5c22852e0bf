"""Choosing a layer of a model by name (Grad-CAM, saliency-weighted activations)."""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

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
