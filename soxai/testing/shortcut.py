"""A tiny two-class world with a planted shortcut, as a bias detector sees it (a DetectorContext), and a hand-built
model whose layer has a channel for a mark wherever it sits (:func:`mark_channel_model`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from soxai.bias.context import DetectorContext


def shortcut_world(
    n: int = 60, size: int = 12, seed: int = 0, marked_in_concept: int | None = None, stray_member: bool = False
) -> tuple[DetectorContext, np.ndarray]:
    """Class 0 shows a bright bar on the left, class 1 a bright square on the right; half of class 0
    also carries a 3x3 corner mark that the 'model' (a rule on the pixels) takes as class 0 on its own.

    Concepts: 0 = the marked samples, 1 = the rest of class 0, 2 and 3 = class 1 split in two look-alike
    halves (so every concept has a same-class control). Mean maps look at the corner, the bar, the square.

    Parameters
    ----------
    n : samples per class; images have shape (2n, 1, size, size)
    marked_in_concept : put only the first this-many marked samples in concept 0 and the rest in concept 1,
        as a clustering that splits the planted group would (default: all of them)
    stray_member : also put one unmarked class-0 sample in concept 0

    Returns
    -------
    ctx : the detectors' view of the world
    marked : bool array of shape (2n,), which samples carry the mark (the ground truth)
    """
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 0.2, (2 * n, 1, size, size)).astype(np.float32)
    labels = np.repeat([0, 1], n)
    images[labels == 0, :, 5:8, 1:4] += 0.7
    images[labels == 1, :, 5:8, 7:10] += 0.7
    marked = np.zeros(2 * n, dtype=bool)
    marked[: n // 2] = True
    images[marked, :, :3, 8:11] = 1.0

    def predict(x: np.ndarray) -> np.ndarray:
        corner = x[:, 0, :3, 8:11].mean(axis=(1, 2)) > 0.9
        left, right = x[:, 0, 5:8, 1:4].mean(axis=(1, 2)), x[:, 0, 5:8, 7:10].mean(axis=(1, 2))
        return np.where(corner | (left > right), 0, 1)

    concept = np.where(marked, 0, np.where(labels == 0, 1, np.where(np.arange(2 * n) % 2 == 0, 2, 3)))
    if marked_in_concept is not None:
        concept[marked_in_concept:n // 2] = 1
    if stray_member:
        concept[n // 2] = 0
    train = pd.DataFrame({"sample_id": [f"s{i}" for i in range(2 * n)], "row": np.arange(2 * n),
                          "label": labels, "concept_id": concept, "probability": 1.0})
    train["pred"] = predict(images)
    concepts = pd.DataFrame({"concept_id": [0, 1, 2, 3], "label": [0, 0, 1, 1], "is_noise": False,
                             "map_index": [0, 1, 2, 3]})
    maps = np.zeros((4, size, size), dtype=np.float32)
    maps[0, :3, 8:11] = 1.0  # the marked concept looks at the corner
    maps[1, 5:8, 1:4] = 1.0
    maps[2:, 5:8, 7:10] = 1.0

    def own_maps(rows: np.ndarray) -> np.ndarray:  # each image's own relevance: where it departs from the background
        return np.abs(images[rows, 0] - 0.1)

    return DetectorContext(images, train, concepts, maps, predict, seed=0, sample_maps=own_maps), marked


def mark_channel_model():
    """A torch model on (n, 2, H, W) images: a conv of three channels — 0: a mark (fires only on a full 2x2 block of
    1.0 in input channel 0), 1: class-0 evidence (input channel 0), 2: class-1 evidence (input channel 1) — then
    ReLU, global max pool and a linear head in which the mark outweighs everything. Its layer ``"0"`` is the conv."""
    import torch

    conv = torch.nn.Conv2d(2, 3, 2)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[0, 0] = 1.0
        conv.bias[0] = -3.5
        conv.weight[1, 0] = 0.25
        conv.weight[2, 1] = 0.25
    head = torch.nn.Linear(3, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[20.0, 1.5, 0.0], [0.0, 0.0, 2.0]]))
        head.bias.zero_()
    return torch.nn.Sequential(conv, torch.nn.ReLU(), torch.nn.AdaptiveMaxPool2d(1), torch.nn.Flatten(), head).eval()
