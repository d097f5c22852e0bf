"""Building, training and evaluating one model of the run: the baseline's and every variant's shared steps."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from soxai.config import Config
from soxai.data.runner import groups_of, read_images, read_info, read_samples
from soxai.progress import progress
from soxai.run_dir import RunDir


def make_model(cfg: Config, info: dict[str, Any], seed: int):
    """The configured architecture for this data, with the data's input normalisation (if any) in front."""
    from soxai.models.registry import add_input_normalization, build_model

    c, h, _ = info["image_shape"]
    model = build_model(cfg.model, c, info["n_classes"], h, seed)
    norm = info.get("normalize") or {}
    return add_input_normalization(model, norm.get("mean"), norm.get("std"))


def load_baseline(cfg: Config, run: RunDir):
    from soxai.models.registry import load_checkpoint

    model = make_model(cfg, read_info(run), cfg.seed)
    load_checkpoint(run.baseline_model, model)
    return model.eval()


def evaluate_splits(
    model, images: np.ndarray, samples: pd.DataFrame, device, splits: list[str], num_workers: int = 0
) -> dict:
    """Metrics of ``model`` on each split: accuracy, per-class and worst-group accuracy."""
    from soxai.train.loop import accuracy_metrics, predict_logits

    out = {}
    for split in splits:
        frame = samples[samples["split"] == split]
        pred = predict_logits(model, images, frame["row"].to_numpy(), device, num_workers=num_workers).argmax(axis=1)
        out[split] = accuracy_metrics(pred, frame["label"].to_numpy(), groups_of(frame))
    return out


def fit(cfg: Config, run: RunDir, rows: np.ndarray, labels: np.ndarray, seed: int, what: str,
        images: np.ndarray | None = None, epochs: int | None = None, sample_weights: np.ndarray | None = None,
        extra: np.ndarray | None = None, val_score=None, channels_last: bool = True):
    """Train a fresh model on ``rows`` of the run's images (or of ``images``, the oracle's own).

    ``channels_last``: train a built-in architecture in the channels-last memory format on a CPU
    (:func:`soxai.train.loop.train_model`; a user's ``model.factory`` trains as it is): every retrained model does;
    the model stage's, the model the explain stages audit, passes False and trains as before.

    ``extra``: images that follow the run's (row ``len(images) + j`` reads ``extra[j]``: augment's pasted
    images); ``sample_weights``: per row, for weighted sampling (reweight); ``val_score``: model -> score
    after each epoch, the best epoch's weights kept (``soxai.train.loop.train_model``).
    """
    from soxai.saliency.methods import resolve_device
    from soxai.train.loop import train_model

    device = resolve_device(cfg.train.device)
    model = make_model(cfg, read_info(run), seed)
    tcfg = cfg.train if epochs is None else cfg.train.model_copy(update={"epochs": epochs})
    source = read_images(run)
    val = None
    if tcfg.patience is not None:
        samples = read_samples(run)
        frame = samples[samples["split"] == "val"]
        val = (frame["row"].to_numpy(), frame["label"].to_numpy())
    if images is not None:  # the oracle's own training images: its val images go after them
        if val is not None:
            val_rows = np.arange(len(images), len(images) + len(val[0]))
            images = np.concatenate([images, np.asarray(source[val[0]], dtype=np.float32)])
            val = (val_rows, val[1])
        source = images
    elif extra is not None and len(extra):
        source = ImagesWithExtra(source, extra)
    with progress(f"train {what}", tcfg.epochs, unit="epochs") as advance:
        train_model(model, source, rows, labels, tcfg, seed, device, on_epoch=lambda e, loss: advance(1), val=val,
                    sample_weights=sample_weights, val_score=val_score,
                    channels_last=channels_last and cfg.model.factory is None)
    return model, device


class ImagesWithExtra:
    """``base`` followed by ``extra``: an array-like of shape (len(base) + len(extra), C, H, W).

    Row i < len(base) reads ``base[i]``, row len(base) + j reads ``extra[j]`` — the augmented images
    get rows of their own, so the training loop reads them like any other. A memory-mapped ``base`` is
    reopened in DataLoader workers instead of pickled whole.
    """

    def __init__(self, base: Any, extra: np.ndarray) -> None:
        self.base, self.extra = base, np.asarray(extra, dtype=np.float32)
        self.shape = (len(base) + len(self.extra), *tuple(base.shape[1:]))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, item: Any) -> np.ndarray:
        nb = len(self.base)
        if isinstance(item, int | np.integer):
            i = int(item)
            return np.asarray(self.base[i], dtype=np.float32) if i < nb else self.extra[i - nb]
        idx = np.asarray(item, dtype=np.int64)
        out = np.empty((len(idx), *self.shape[1:]), dtype=np.float32)
        low = idx < nb
        if low.any():
            out[low] = np.asarray(self.base[idx[low]], dtype=np.float32)
        if (~low).any():
            out[~low] = self.extra[idx[~low] - nb]
        return out

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if isinstance(self.base, np.memmap) and getattr(self.base, "filename", None):
            state["base"] = ("npy", str(self.base.filename))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if isinstance(state["base"], tuple) and state["base"][0] == "npy":
            state["base"] = np.load(state["base"][1], mmap_mode="r", allow_pickle=False)
        self.__dict__.update(state)
