"""Architectures by name, and checkpoints that load with ``weights_only=True``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from soxai.errors import DataError, SoxaiError
from soxai.models.config import ModelConfig
from soxai.run_dir import atomic_path

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


MODELS: dict[str, Callable[..., Any]] = {"small_cnn": small_cnn}


def build_model(cfg: ModelConfig, in_channels: int, n_classes: int, image_size: int, seed: int) -> nn.Module:
    """Build the configured architecture with weights initialised from ``seed``."""
    import torch

    if cfg.num_classes is not None and cfg.num_classes != n_classes:
        raise DataError(
            f"the data has {n_classes} classes but model.num_classes={cfg.num_classes}; "
            f"set model.num_classes={n_classes} (or null to follow the data) or fix the labels"
        )
    torch.manual_seed(seed)
    return MODELS[cfg.name](cfg, in_channels, n_classes, image_size)


def save_checkpoint(path: Path, model: nn.Module, meta: dict[str, Any]) -> Path:
    """Write a state dict plus plain metadata; no pickled objects, so it loads with weights_only."""
    import torch

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"state_dict": state, "meta": meta}, tmp)
    return path


def load_checkpoint(path: Path, model: nn.Module) -> dict[str, Any]:
    """Load a checkpoint into ``model`` (weights only: a file that would run code is refused)."""
    import pickle

    import torch

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise SoxaiError(
            f"{path} is not a plain weights file (it would need to run code to load, which soxai refuses): "
            f"{str(exc).splitlines()[0]}; save a state_dict with torch.save(model.state_dict(), path)"
        ) from None
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else payload
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise SoxaiError(f"checkpoint {path} does not match the model architecture: {exc}") from None
    return payload.get("meta", {}) if isinstance(payload, dict) else {}
