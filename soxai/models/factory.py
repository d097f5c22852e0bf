"""A user's own architecture: ``model.factory: "package.module:function"`` with ``model.kwargs``.

The contract, checked here with errors that name the fix:

- the module imports from ``PYTHONPATH`` or the working directory and holds the callable;
- the callable is called with ``model.kwargs`` plus ``num_classes`` (the number of classes in the
  data; passed when its signature names it or takes ``**kwargs``) and ``in_channels`` (1 for grey,
  3 for colour images; passed only when its signature names it). So
  ``torchvision.models:resnet18`` works as it is, where torchvision is installed, on RGB images
  (``weights`` / ``pretrained`` are refused: nothing is downloaded, ever; give ``model.checkpoint``).
  It builds fresh weights every call — soxai seeds torch before the call, and calls it again for
  every retrained model;
- it returns an ``nn.Module`` that maps a float batch of shape (n, in_channels, H, W) to logits of
  shape (n, num_classes), checked on a probe batch of zeros.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from soxai.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

PASSED = ("num_classes", "in_channels")


def resolve_factory(spec: str) -> Callable[..., Any]:
    """The callable named by ``'package.module:function'`` (the function may be dotted: ``Class.build``)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(
            f"model.factory={spec!r} must look like 'package.module:function' (module, a colon, a callable in it)"
        )
    try:
        module = _import(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"model.factory={spec!r}: cannot import module {module_name!r} ({type(exc).__name__}: {exc}); "
            "check the spelling, and put the folder holding it on PYTHONPATH (or run soxai from that folder)"
        ) from None
    except Exception as exc:  # noqa: BLE001 — user code that fails while it is imported (a SyntaxError, a raise)
        raise ConfigError(
            f"model.factory={spec!r}: importing module {module_name!r} failed ({type(exc).__name__}: "
            f"{_first_line(exc)}); fix that module so that it imports (python -c 'import {module_name}' shows the "
            "traceback), or set model.factory to another function (or null to use model.name)"
        ) from exc
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            names = [n for n in dir(target) if not n.startswith("_") and callable(getattr(target, n, None))]
            close = difflib.get_close_matches(part, names, n=3)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(
                f"model.factory={spec!r}: {module_name!r} has no attribute {attr!r}.{hint} "
                f"Callables there: {', '.join(names[:30]) or 'none'}"
            )
        target = getattr(target, part)
    if not callable(target):
        raise ConfigError(f"model.factory={spec!r} names a {type(target).__name__}, not a function or class; "
                          "point it at a callable that returns an nn.Module")
    return target


def _import(module_name: str) -> Any:
    """Import ``module_name``; failing that, once more with the working directory at the end of the path.

    The ``soxai`` console script puts its own folder, not the working directory, first on ``sys.path``,
    so a ``mymodels.py`` beside the config would not import; appended last it shadows nothing.
    """
    import os
    import sys

    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        cwd = os.getcwd()
        top = module_name.split(".")[0]
        if exc.name != top or cwd in sys.path or "" in sys.path:
            raise
        sys.path.append(cwd)
        try:
            return importlib.import_module(module_name)
        finally:
            sys.path.remove(cwd)


def call_factory(spec: str, kwargs: dict[str, Any], *, in_channels: int, num_classes: int) -> nn.Module:
    """Call the factory with ``kwargs`` plus the accepted ones of ``num_classes`` / ``in_channels``.

    Raises
    ------
    ConfigError
        If the factory cannot be found, ``model.kwargs`` sets ``num_classes`` or ``in_channels``
        (they come from the data), the call fails on its arguments, or it returns no ``nn.Module``.
    """
    from torch import nn

    fn = resolve_factory(spec)
    clash = sorted(set(kwargs) & set(PASSED))
    if clash:
        raise ConfigError(
            f"model.kwargs sets {clash}, which soxai passes from the data (num_classes = the classes in the data, "
            "in_channels = 1 for grey / 3 for colour); remove them from model.kwargs (use model.num_classes to "
            "pin the class count)"
        )
    downloads = sorted(k for k in ("weights", "pretrained") if kwargs.get(k) not in (None, False))
    if downloads:
        raise ConfigError(
            f"model.kwargs sets {downloads}, which would make the factory download weights; soxai never downloads "
            "weights: leave them out and point model.checkpoint at your own state dict file"
        )
    passed: dict[str, int] = {"num_classes": num_classes}
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a callable without a signature: pass num_classes only
        params = {}
    open_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if params and "num_classes" not in params and not open_kwargs:
        passed = {}
    if "in_channels" in params:
        # only where named: **kwargs often forwards to a class that does not take it (torchvision's models)
        passed["in_channels"] = in_channels
    try:
        model = fn(**kwargs, **passed)
    except TypeError as exc:
        raise ConfigError(
            f"model.factory={spec!r} failed on its arguments {sorted({**kwargs, **passed})}: {exc}; "
            "fix model.kwargs to match the function's parameters"
        ) from None
    except Exception as exc:  # noqa: BLE001 — any failure inside the user's function is reported as theirs
        raise ConfigError(
            f"model.factory={spec!r} raised {type(exc).__name__} when called with {sorted({**kwargs, **passed})}: "
            f"{_first_line(exc)}; fix the function (or model.kwargs), or set model.factory to another function "
            "(or null to use model.name)"
        ) from exc
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"model.factory={spec!r} returned a {type(model).__name__}, not a torch.nn.Module; "
            "make the function return the model (not its state dict or a tuple)"
        )
    return model


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else "(no message)"


def probe_forward(model: nn.Module, what: str, in_channels: int, image_size: int, noun: str, fix: str = ""):
    """The output of a probe batch of zeros of shape (2, in_channels, image_size, image_size), run in eval mode
    without gradients (the model's train/eval mode restored after).

    Raises
    ------
    ConfigError
        If the forward pass fails: names ``what``, the probe's shape and the first line of the error; ``fix`` is
        appended to the advice to accept such images. A ConfigError of the model's own passes unchanged.
    """
    import torch

    was_training = model.training
    probe = torch.zeros(2, in_channels, image_size, image_size)
    try:
        with torch.no_grad():
            return model.eval()(probe)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 — any failure of user code is reported with the shape it got
        raise ConfigError(
            f"{what}: the {noun} fails on a batch of shape {tuple(probe.shape)} (n, channels, height, width) "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); make it accept "
            f"{in_channels}-channel {image_size}x{image_size} images{fix}"
        ) from None
    finally:
        model.train(was_training)


def check_model(model: nn.Module, what: str, in_channels: int, n_classes: int, image_size: int) -> None:
    """Run a probe batch of zeros of shape (2, in_channels, image_size, image_size) through ``model``.

    Raises
    ------
    ConfigError
        If the forward pass fails or the output is not logits of shape (2, n_classes).
    """
    import torch

    out = probe_forward(model, what, in_channels, image_size, "model",
                        f" ({_size_keys(what)}, or data.crop / data.color)")
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, n_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(
            f"{what}: the model must return logits of shape (n, {n_classes}) for the {n_classes} classes of the "
            f"data; on a batch of 2 it returned {got}; return a single tensor of one score per class"
        )


def _size_keys(what: str) -> str:
    """The keys that size the model: a built-in's own (model.kwargs are a factory's only)."""
    return "model.channels / model.depth, or data.image_size" if what.startswith("model.name") else "model.kwargs"
