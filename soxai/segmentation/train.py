"""Kernels: training a segmentation network (per-pixel cross-entropy) and predicting its masks."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from soxai.train.config import TrainConfig

if TYPE_CHECKING:
    import torch
    from torch import nn


def train_segmenter(
    model: nn.Module, images: np.ndarray, masks: np.ndarray, rows: np.ndarray, cfg: TrainConfig, seed: int,
    device: torch.device, on_epoch: Callable[[int, float], None] | None = None,
) -> nn.Module:
    """Train ``model`` in place on ``images[rows]`` against ``masks[rows]`` by the recipe ``cfg``.

    ``cfg.optimizer``, ``lr``, ``weight_decay``, ``schedule``, ``epochs`` and ``batch_size`` apply as for a
    classifier (:func:`soxai.train.loop.train_model`); augmentations and early stopping do not (a flip would
    have to move the mask too). Each epoch visits every row once in an order drawn from ``seed``.

    Parameters
    ----------
    images : array of shape (n_total, C, H, W), float32
    masks : array of shape (n_total, H, W), integer class per pixel
    rows : int array of shape (n,), the training rows
    """
    import torch
    from torch import nn

    from soxai.train.loop import make_optimizer, make_scheduler

    rng = np.random.default_rng(seed)
    rows = np.asarray(rows, dtype=np.int64)
    torch.manual_seed(seed)
    model.to(device).train()
    opt = make_optimizer(model, cfg)
    scheduler = make_scheduler(opt, cfg)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(cfg.epochs):
        order = rows[rng.permutation(len(rows))]
        total, count = 0.0, 0
        model.train()
        for lo in range(0, len(order), cfg.batch_size):
            batch = np.sort(order[lo : lo + cfg.batch_size])  # sorted: a memmap reads forward
            xb = torch.from_numpy(np.asarray(images[batch], dtype=np.float32)).to(device)
            yb = torch.from_numpy(np.asarray(masks[batch], dtype=np.int64)).to(device)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(batch)
            count += len(batch)
        if scheduler is not None:
            scheduler.step()
        if on_epoch is not None:
            on_epoch(epoch, total / max(count, 1))
    return model.eval()


def predict_masks(model: nn.Module, images: np.ndarray, rows: np.ndarray, device: torch.device,
                  batch_size: int = 256) -> np.ndarray:
    """Predicted class per pixel of ``images[rows]``: uint8 array of shape (len(rows), H, W)."""
    import torch

    model.to(device).eval()
    rows = np.asarray(rows, dtype=np.int64)
    out = np.zeros((len(rows), *images.shape[2:]), dtype=np.uint8)
    with torch.no_grad():
        for lo in range(0, len(rows), batch_size):
            xb = torch.from_numpy(np.asarray(images[rows[lo : lo + batch_size]], dtype=np.float32)).to(device)
            out[lo : lo + batch_size] = model(xb).argmax(dim=1).cpu().numpy().astype(np.uint8)
    return out

