"""Architectures by name, and checkpoints that load with ``weights_only=True``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from soxai.errors import ConfigError, DataError, SoxaiError
from soxai.models.config import ModelConfig

if TYPE_CHECKING:
    from torch import nn


def small_cnn(cfg: ModelConfig, in_channels: int, n_classes: int, image_size: int) -> nn.Module:
    """Conv blocks (3x3 conv, ReLU, 2x2 max-pool) then a dense layer.

    Input of shape (N, in_channels, image_size, image_size); output logits (N, n_classes).
    """
    from torch import nn

    layers: list[nn.Module] = []
    c_in, side = in_channels, image_size
    for c_out in cfg.channels:
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        c_in, side = c_out, max(side // 2, 1)
    return nn.Sequential(
        *layers,
        nn.Flatten(),
        nn.Linear(c_in * side * side, cfg.hidden),
        nn.ReLU(),
        nn.Linear(cfg.hidden, n_classes),
    )


def resnet(cfg: ModelConfig, in_channels: int, n_classes: int, image_size: int) -> nn.Module:
    """ResNet-style network (:mod:`soxai.models.nets`): ``model.channels`` per stage, ``model.depth`` blocks."""
    from soxai.models.nets import resnet as build

    return build(cfg, in_channels, n_classes, image_size)


def mobilenet(cfg: ModelConfig, in_channels: int, n_classes: int, image_size: int) -> nn.Module:
    """MobileNetV2-style network (:mod:`soxai.models.nets`): ``model.channels`` per stage, ``model.depth`` blocks."""
    from soxai.models.nets import mobilenet as build

    return build(cfg, in_channels, n_classes, image_size)


MODELS: dict[str, Callable[..., Any]] = {"small_cnn": small_cnn, "resnet": resnet, "mobilenet": mobilenet}


def build_model(cfg: ModelConfig, in_channels: int, n_classes: int, image_size: int, seed: int) -> nn.Module:
    """Build the configured architecture with weights initialised from ``seed``.

    With ``cfg.factory`` set the user's function builds it (see :func:`soxai.models.factory.call_factory`),
    else the built-in ``cfg.name``. Either way the model is checked on a probe batch of shape
    (2, in_channels, image_size, image_size): it must return logits of shape (2, n_classes).
    """
    import torch

    from soxai.models.factory import call_factory, check_model

    if cfg.num_classes is not None and cfg.num_classes != n_classes:
        raise DataError(
            f"the data has {n_classes} classes but model.num_classes={cfg.num_classes}; "
            f"set model.num_classes={n_classes} (or null to follow the data) or fix the labels"
        )
    torch.manual_seed(seed)
    if cfg.factory is not None:
        model = call_factory(cfg.factory, dict(cfg.kwargs), in_channels=in_channels, num_classes=n_classes)
        what = f"model.factory={cfg.factory!r}"
    else:
        what = f"model.name={cfg.name!r}"
        try:
            model = MODELS[cfg.name](cfg, in_channels, n_classes, image_size)
        except Exception as exc:  # noqa: BLE001 — a size the architecture cannot take (channels, depth, image)
            raise ConfigError(
                f"{what} cannot be built for {in_channels}-channel {image_size}x{image_size} images and {n_classes} "
                f"classes with model.channels={list(cfg.channels)}, model.depth={cfg.depth} ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); change model.channels / model.depth or the image "
                "size (data.image_size, data.crop)"
            ) from exc
    check_model(model, what, in_channels, n_classes, image_size)
    return model


def save_checkpoint(path: Path, model: nn.Module, meta: dict[str, Any]) -> Path:
    """Write the model's state dict and plain metadata as a safetensors file (no pickle; see weights.py)."""
    from soxai.models.weights import safetensors_bytes
    from soxai.run_dir import write_bytes

    return write_bytes(path, safetensors_bytes(model.state_dict(), {"soxai": json.dumps(meta, sort_keys=True)}))


def load_checkpoint(path: Path, model: nn.Module) -> dict[str, Any]:
    """Load a checkpoint into ``model``: a safetensors file (what soxai writes), or a torch file read
    with ``weights_only=True`` (a file that would run code is refused)."""
    state, meta = read_checkpoint_state(path)
    _load_matching(model, state, path)
    return meta


def read_checkpoint_state(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state dict, metadata) of a checkpoint: a safetensors file, or a torch file read with ``weights_only=True``.

    Raises
    ------
    ConfigError
        If the file cannot be read or holds no state dict; SoxaiError if it would run code to load.
    """
    import pickle

    import torch

    from soxai.models.weights import is_safetensors, read_safetensors

    if is_safetensors(path):
        state, metadata = read_safetensors(path)
        return state, json.loads(metadata.get("soxai", "{}"))
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's first line goes on to advise weights_only=False, which soxai never does: quote what it refused
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        refused = [line for line in lines if line.startswith("Unsupported")]  # "Unsupported global: GLOBAL os.system"
        detail = "; ".join(["Weights only load failed", *refused[:1]])
        raise SoxaiError(
            f"{path} is not a plain weights file (it would need to run code to load, which soxai refuses): "
            f"{detail}; save a state_dict with torch.save(model.state_dict(), path)"
        ) from None
    except (OSError, RuntimeError, EOFError) as exc:
        raise ConfigError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            "point model.checkpoint at a file written with torch.save(model.state_dict(), path)"
        ) from None
    meta = payload.get("meta", {}) if isinstance(payload, dict) and isinstance(payload.get("meta"), dict) else {}
    return _state_dict_of(payload, path), meta


def nonfinite_tensors(state: dict[str, Any]) -> list[str]:
    """Names of the floating-point tensors of a state dict that hold a NaN or an infinity, in order."""
    import torch

    return [name for name, value in state.items()
            if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all())]


def _load_matching(model: nn.Module, state: dict[str, Any], path: Path) -> None:
    mismatch = state_dict_mismatch(model, state)
    if mismatch:
        raise ConfigError(
            f"checkpoint {path} does not match the model architecture {type(model).__name__}: {mismatch}. "
            "Build the architecture the checkpoint was saved from (model.factory / model.kwargs / model.name, "
            "model.channels) or point model.checkpoint at that model's state dict"
        )
    model.load_state_dict(state)


def _state_dict_of(payload: Any, path: Path) -> dict[str, Any]:
    """The state dict inside a checkpoint: the payload itself, or under 'state_dict' / 'model_state_dict' / 'model'.

    A ``module.`` prefix on every key (a model saved from ``nn.DataParallel``) is removed.
    """
    import torch

    state = payload
    if isinstance(payload, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(payload.get(key), dict):
                state = payload[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(
            f"checkpoint {path} holds no state dict (a mapping of parameter names to tensors); save one with "
            "torch.save(model.state_dict(), path)"
        )
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def state_dict_mismatch(model: nn.Module, state: dict[str, Any], limit: int = 8) -> str:
    """'' when ``state`` fits ``model``, else what differs: missing keys, unexpected keys, shape mismatches."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)} in the model"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]

    def show(items: list[str]) -> str:
        return ", ".join(items[:limit]) + (f", ... ({len(items)} in all)" if len(items) > limit else "")

    parts = []
    if missing:
        parts.append(f"missing keys (in the model, not in the file): {show(missing)}")
    if unexpected:
        parts.append(f"unexpected keys (in the file, not in the model): {show(unexpected)}")
    if shapes:
        parts.append(f"shape mismatches (file vs model): {show(shapes)}")
    return "; ".join(parts)


class InputNormalization:
    """A forward pre-hook that maps the model's [0, 1] input to ``(x - mean) / std`` per channel.

    soxai keeps images in [0, 1] everywhere (saliency, transplants, the report show them as they
    are) and puts ``data.mean`` / ``data.std`` in front of the model instead, so attributions are
    taken with respect to the pixels. The hook holds no weights: state dicts stay the user's.
    """

    def __init__(self, mean: list[float], std: list[float]) -> None:
        import torch

        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    def __call__(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        x = args[0]
        mean, std = self.mean.to(x.device, x.dtype), self.std.to(x.device, x.dtype)
        return ((x - mean) / std, *args[1:])


def add_input_normalization(model: nn.Module, mean: list[float] | None, std: list[float] | None) -> nn.Module:
    """Register :class:`InputNormalization` on ``model`` (in place) unless ``mean`` and ``std`` are None."""
    if mean is not None and std is not None:
        model.register_forward_pre_hook(InputNormalization(list(mean), list(std)))
    return model
