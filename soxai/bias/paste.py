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


class OwnBox:
    """A region that is each donor's own most salient ``side`` x ``side`` box (from its own |saliency| map).

    Pasted by :func:`soxai.bias.carriers.carrier_flip_rates` through :meth:`flip_rates`, like a
    :class:`soxai.bias.channels.ChannelRegion`; the own_box detector and the unclustered test paste it.
    """

    def __init__(self, side: int, sample_maps, predict) -> None:
        self.side, self.sample_maps, self.predict = side, sample_maps, predict

    def describe(self) -> str:
        return f"each sample's own most salient {self.side}x{self.side} box"

    def boxes(self, rows: np.ndarray) -> list[Box]:
        """Each of ``rows``' own most salient box: what :meth:`flip_rates` pastes from it."""
        return [salient_box(mp, self.side) for mp in self.sample_maps(np.asarray(rows, dtype=np.int64))]

    def flip_rates(self, images, rows: np.ndarray, recipients: np.ndarray, target_class: int) -> np.ndarray:
        """Share of ``recipients`` predicted as ``target_class`` after each donor's own box is pasted in."""
        rows = np.asarray(rows, dtype=np.int64)
        rates = np.zeros(len(rows), dtype=np.float64)
        m = len(recipients)
        if m == 0 or len(rows) == 0:
            return rates
        step = max(1, (64 << 20) // (m * recipients[0].nbytes))
        for start in range(0, len(rows), step):
            chunk = rows[start:start + step]
            boxes = self.boxes(chunk)
            donors = np.asarray(images[chunk], dtype=np.float32)
            pasted = paste_region(np.tile(recipients, (len(chunk), 1, 1, 1)), np.repeat(donors, m, axis=0),
                                  [b for b in boxes for _ in range(m)])
            rates[start:start + len(chunk)] = (self.predict(pasted).reshape(len(chunk), m) == target_class).mean(1)
        return rates
