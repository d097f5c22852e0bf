"""Kernels: per-class intersection over union and its mean (mIoU) for segmentation masks."""

from __future__ import annotations

import numpy as np


def confusion(pred: np.ndarray, true: np.ndarray, n_classes: int) -> np.ndarray:
    """Pixel counts ``[true class, predicted class]``.

    Parameters
    ----------
    pred, true : int arrays of the same shape (n, H, W), values in ``0..n_classes-1``

    Returns
    -------
    ndarray of shape (n_classes, n_classes), int64
    """
    pred, true = np.asarray(pred).ravel().astype(np.int64), np.asarray(true).ravel().astype(np.int64)
    if pred.shape != true.shape:
        raise ValueError(f"pred and true masks differ in size: {pred.size} and {true.size} pixels")
    return np.bincount(true * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def iou_from_confusion(conf: np.ndarray) -> np.ndarray:
    """Per-class IoU = TP / (TP + FP + FN), float array of shape (n_classes,); nan for a class that is in
    neither the predictions nor the truth (no claim either way)."""
    tp = np.diag(conf).astype(float)
    union = conf.sum(axis=0) + conf.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


def iou_metrics(pred: np.ndarray, true: np.ndarray, class_names: list[str]) -> dict[str, float]:
    """``{"miou", "pixel_accuracy", "iou_<class name>"...}`` over all pixels of a split.

    mIoU is the mean IoU over the classes that occur in ``true``. A class the split does not hold (the artifact's
    class in ``test_attacked``) has IoU 0 as soon as one pixel is predicted as it, and nan otherwise: averaged in,
    it would jump by 1 / n_classes on a single pixel. Pixels wrongly given that class still lower the IoU of the
    class they belong to. ``iou_<name>`` reports every class as computed.
    """
    conf = confusion(pred, true, len(class_names))
    iou = iou_from_confusion(conf)
    total = conf.sum()
    present = conf.sum(axis=1) > 0
    out = {"miou": float(iou[present].mean()) if present.any() else float("nan"),
           "pixel_accuracy": float(np.trace(conf) / total) if total else float("nan")}
    for name, value in zip(class_names, iou, strict=True):
        out[f"iou_{name}"] = float(value)
    return out
