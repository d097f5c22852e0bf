"""What ``task: segmentation`` accepts in the other sections (a leaf: the root config imports it)."""

from __future__ import annotations

from typing import Any

#: data sources that give per-pixel class masks
SEGMENTATION_SOURCES = ("cells", "manifest", "image_folder")
#: built-in segmentation networks (``model.name``); a user's network comes through ``model.factory``
SEGMENTATION_MODELS = ("unet",)
#: the retrain variants a segmentation run has
SEGMENTATION_VARIANTS = ("baseline", "pruned", "random_control")


def task_errors(task: str, data: Any, model: Any, embed: Any, retrain: Any) -> list[str]:
    """The settings that do not fit ``task``, each with its fix; empty when they all do."""
    errors = []
    if task == "classification":
        if model.name in SEGMENTATION_MODELS and not model.factory:
            errors.append(f"model.name={model.name!r} is a segmentation network (one score per class and pixel); "
                          "set task: segmentation, or model.name to small_cnn, resnet or mobilenet")
        return errors
    if data.source not in SEGMENTATION_SOURCES:
        errors.append(f"task: segmentation needs per-pixel class masks and data.source={data.source!r} has none in "
                      f"soxai yet; set data.source to one of {', '.join(SEGMENTATION_SOURCES)}")
    if model.name not in SEGMENTATION_MODELS and not model.factory:
        errors.append(f"task: segmentation needs a network that labels every pixel, but model.name={model.name!r} is "
                      "a classifier; set model.name: unet, or model.factory to your own segmentation network")
    if embed.features != "pooled":
        errors.append(f"task: segmentation explains pixels, not a classifier's layer: embed.features="
                      f"{embed.features!r} needs one; set embed.features: pooled")
    other = [v for v in retrain.variants if v not in SEGMENTATION_VARIANTS]
    if other:
        errors.append(f"retrain.variants has {other}, which task: segmentation does not have; use "
                      f"{', '.join(SEGMENTATION_VARIANTS)}")
    return errors
