"""A seeded training loop and per-split evaluation (kernels: arrays in, model / numbers out)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from soxai.train.config import TrainConfig

if TYPE_CHECKING:
    import torch
    from torch import nn


def train_model(
    model: nn.Module,
    images: np.ndarray,
    rows: np.ndarray,
    labels: np.ndarray,
    cfg: TrainConfig,
    seed: int,
    device: torch.device,
    on_epoch: Callable[[int, float], None] | None = None,
) -> nn.Module:
    """Train ``model`` in place on ``images[rows]`` with ``labels``.

    Parameters
    ----------
    images : array of shape (n_total, C, H, W), float32 (may be a memmap)
    rows : int array of shape (n,) — which images are in the training set
    labels : int array of shape (n,) — their labels
    seed : seeds the shuffling (weights are seeded when the model is built)
    on_epoch : called with (epoch, mean loss) after each epoch, e.g. to advance a progress bar
    """
    import torch
    from torch import nn

    rng = np.random.default_rng(seed)
    x_all = torch.from_numpy(np.asarray(images[np.asarray(rows)], dtype=np.float32))
    y_all = torch.tensor(np.asarray(labels), dtype=torch.int64)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    torch.manual_seed(seed)
    for epoch in range(cfg.epochs):
        order = torch.from_numpy(rng.permutation(len(y_all)))
        total, count = 0.0, 0
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            xb, yb = x_all[idx].to(device), y_all[idx].to(device)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        if on_epoch is not None:
            on_epoch(epoch, total / max(count, 1))
    model.eval()
    return model


def predict_logits(
    model: nn.Module, images: np.ndarray, rows: np.ndarray, device: torch.device, batch_size: int = 512
) -> np.ndarray:
    """Logits of shape (len(rows), n_classes) for ``images[rows]``."""
    import torch

    model.to(device).eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            xb = torch.from_numpy(np.asarray(images[rows[start : start + batch_size]], dtype=np.float32))
            out.append(model(xb.to(device)).float().cpu().numpy())
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(out)


def accuracy_metrics(
    pred: np.ndarray, labels: np.ndarray, groups: np.ndarray | None = None
) -> dict[str, Any]:
    """Accuracy, per-class accuracy and (with groups) worst-group accuracy.

    A group is a (label, group) pair, as in the worst-group literature: the worst group is the
    (class, artifact/clean) cell with the lowest accuracy among cells that have samples.
    """
    pred = np.asarray(pred)
    labels = np.asarray(labels)
    correct = pred == labels
    out: dict[str, Any] = {"n": int(len(labels)), "accuracy": float(correct.mean()) if len(labels) else float("nan")}
    out["per_class_accuracy"] = {
        str(int(c)): float(correct[labels == c].mean()) for c in np.unique(labels)
    }
    if groups is not None:
        groups = np.asarray(groups).astype(str)
        cells = {}
        for c in np.unique(labels):
            for g in np.unique(groups):
                m = (labels == c) & (groups == g)
                if m.any():
                    cells[f"{int(c)}/{g}"] = float(correct[m].mean())
        out["group_accuracy"] = cells
        out["worst_group_accuracy"] = min(cells.values()) if cells else float("nan")
    return out
