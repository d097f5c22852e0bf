"""Kernels of the two reference variants of the compare stage: JTT and the oracle.

JTT ("just train twice", Liu et al. 2021) needs no group labels: a briefly trained model's errors on
the training set are upweighted (repeated) and a second model is trained on that set. The oracle is
trained on the training data without the artifact and exists only to measure how much of the gap
between the baseline and a model that never saw the shortcut pruning recovers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from soxai.errors import StageError


def jtt_upsample(
    rows: np.ndarray, labels: np.ndarray, pred: np.ndarray, upweight: int
) -> tuple[np.ndarray, np.ndarray]:
    """The JTT training set: every sample the first model got wrong repeated ``upweight`` times.

    Parameters
    ----------
    rows, labels, pred : int arrays of shape (n,) — image rows, labels and the first model's predictions

    Returns
    -------
    rows, labels : int arrays of shape (n + (upweight - 1) * n_errors,), errors repeated in place
    """
    counts = np.where(np.asarray(pred) != np.asarray(labels), upweight, 1)
    return np.repeat(np.asarray(rows), counts), np.repeat(np.asarray(labels), counts)


def oracle_images(
    images: np.ndarray, train: pd.DataFrame, unmarked_rows: np.ndarray | None, unmarked: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The oracle's training data: the training samples with the artifact left out.

    Built-in sources keep the artifact-free twin of every marked training image (``unmarked``), so
    the oracle trains on the very same samples, labels and class balance as the baseline, only
    without the mark. A manifest source has no twins; there the oracle trains on the training samples
    whose evaluation-only ``group`` is not 'artifact'.

    Parameters
    ----------
    images : array of shape (n_total, C, H, W) (may be a memmap)
    train : training samples with columns row, label[, group]
    unmarked_rows : int array of shape (k,) or None; rows of the marked training images
    unmarked : array of shape (k, C, H, W) or None; those images before marking

    Returns
    -------
    x : float32 array of shape (m, C, H, W), the oracle's training images
    rows : int array of shape (m,), rows into ``x`` (0..m-1)
    labels : int array of shape (m,)
    """
    rows, labels = train["row"].to_numpy(), train["label"].to_numpy()
    if unmarked is not None and unmarked_rows is not None:
        x = np.asarray(images[rows], dtype=np.float32).copy()
        position = pd.Series(np.arange(len(rows)), index=rows)
        here = position.reindex(unmarked_rows)
        if here.isna().any():
            raise StageError("data/unmarked_rows.npy names rows that are not training samples; rerun the data stage")
        x[here.to_numpy(dtype=np.int64)] = unmarked
        return x, np.arange(len(rows)), labels
    if "group" in train and train["group"].notna().any():
        clean = (train["group"].astype(str) != "artifact").to_numpy()
        return np.asarray(images[rows[clean]], dtype=np.float32), np.arange(int(clean.sum())), labels[clean]
    raise StageError(
        "the 'oracle' variant needs training data without the artifact: a built-in source with "
        "data.artifact set, or a manifest with a 'group' column marking 'artifact' samples; "
        "remove 'oracle' from retrain.variants"
    )
