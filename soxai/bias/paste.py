"""Regions of an image and pasting them: the mechanism of the transplant tests.

A concept's salient box (:func:`salient_box`), copying a box from donors into recipients
(:func:`paste_region`), and counting the recipients a paste moves to a class (:func:`transplant_flips`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Box = tuple[int, int, int, int]


def salient_box(mean_map: np.ndarray, side: int) -> Box:
    """The side x side box holding the most mass of ``mean_map`` (shape (H, W)).

    Returns (y0, x0, y1, x1), half-open. Uses a summed-area table: every box position is scored.
    """
    h, w = mean_map.shape
    side_h, side_w = min(side, h), min(side, w)
    sat = np.pad(np.cumsum(np.cumsum(mean_map.astype(np.float64), 0), 1), ((1, 0), (1, 0)))
    sums = sat[side_h:, side_w:] - sat[:-side_h, side_w:] - sat[side_h:, :-side_w] + sat[:-side_h, :-side_w]
    y0, x0 = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(y0), int(x0), int(y0 + side_h), int(x0 + side_w)


def paste_region(recipients: np.ndarray, donors: np.ndarray, box: Box | list[Box]) -> np.ndarray:
    """Copy ``box`` of each donor into the paired recipient (both of shape (n, C, H, W)).

    ``box`` is one (y0, x0, y1, x1) for all pairs, or a list with one box per pair.
    """
    out = np.array(recipients, dtype=np.float32, copy=True)
    boxes = box if isinstance(box, list) else [box] * len(out)
    for i, (y0, x0, y1, x1) in enumerate(boxes):
        out[i, :, y0:y1, x0:x1] = donors[i, :, y0:y1, x0:x1]
    return out


def transplant_flips(
    predict: Callable[[np.ndarray], np.ndarray],
    donors: np.ndarray,
    recipients: np.ndarray,
    box: Box | list[Box],
    target_class: int,
) -> int:
    """How many recipients are predicted as ``target_class`` after the donors' ``box`` is pasted in.

    Donors are paired with recipients cyclically; ``box`` is shared or one per donor.
    """
    if len(donors) == 0 or len(recipients) == 0:
        return 0
    n = len(recipients)
    pair = np.arange(n) % len(donors)
    boxes = [box[i] for i in pair] if isinstance(box, list) else box
    return int(np.sum(predict(paste_region(recipients, donors[pair], boxes)) == target_class))
