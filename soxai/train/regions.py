"""Where a flagged concept's shortcut sits, for the ``augment`` correction (soxai.train.augment): the box or pixels
its flagging detector pasted, or the whole image's statistics, and how a region is copied from a donor into a
recipient (at the region's own place, or at a box of the carrier's own: where the concept's channels saw its mark,
soxai.train.augment.carrier_boxes)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Region:
    """Where a flagged concept's shortcut sits: the box or the pixels its flagging detector pasted, or the whole
    image's statistics (``whole_image``, the statistics shuffle).

    box : (y0, x0, y1, x1), half-open, or None; mask : bool array of shape (H, W), or None (one is set unless
    ``whole_image``)
    """

    detector: str
    box: tuple[int, int, int, int] | None = None
    mask: np.ndarray | None = field(default=None, compare=False)
    whole_image: bool = False

    def describe(self) -> str:
        if self.whole_image:
            return "the whole image's brightness and contrast per channel (the recipient's luminance, recoloured)"
        if self.mask is not None:
            ys, xs = np.nonzero(self.mask)
            return f"{int(self.mask.sum())} pixels in rows {ys.min()}-{ys.max()}, cols {xs.min()}-{xs.max()}"
        y0, x0, y1, x1 = self.box
        return f"rows {y0}-{y1 - 1}, cols {x0}-{x1 - 1}"

    def paste(self, recipients: np.ndarray, donors: np.ndarray, boxes: np.ndarray | None = None) -> np.ndarray:
        """The recipients (n, C, H, W) with this region copied from the paired donors (n, C, H, W); for
        ``whole_image``, each recipient recoloured with its donor's statistics (:func:`recolour`). ``boxes``
        (n, 4), for a box region: the box (y0, x0, y1, x1), half-open, that pair i copies instead of the region's
        own (NaN = the region's own); the same place in donor and recipient."""
        if self.whole_image:
            return recolour(recipients, donors)
        out = np.array(recipients, dtype=np.float32, copy=True)
        donors = np.asarray(donors, dtype=np.float32)
        if self.mask is not None:
            out[:, :, self.mask] = donors[:, :, self.mask]
            return out
        y0, x0, y1, x1 = self.box
        own = np.ones(len(out), dtype=bool)
        if boxes is not None:
            own = ~np.isfinite(np.asarray(boxes, dtype=np.float64).reshape(len(out), 4)).all(axis=1)
        out[own, :, y0:y1, x0:x1] = donors[own, :, y0:y1, x0:x1]
        for i in np.flatnonzero(~own):  # a carrier's own box: where its mark sits, and what the layer saw there
            a, b, c, d = (int(v) for v in boxes[i])
            out[i, :, a:c, b:d] = donors[i, :, a:c, b:d]
        return out

    def placed(self, centre: tuple[float, float], shape: tuple[int, int]) -> tuple[int, int, int, int]:
        """The box re-centred on ``centre`` (row, col), kept inside an image of ``shape`` (H, W): (y0, x0, y1, x1)."""
        y0, x0, y1, x1 = self.box
        h, w = y1 - y0, x1 - x0
        oy = int(np.clip(np.round(centre[0] - h / 2), 0, shape[0] - h))
        ox = int(np.clip(np.round(centre[1] - w / 2), 0, shape[1] - w))
        return oy, ox, oy + h, ox + w


def recolour(recipients: np.ndarray, donors: np.ndarray) -> np.ndarray:
    """The recipients' structure in their donors' per-channel brightness and contrast, clipped to [0, 1].

    Each recipient's channel mean (its luminance), standardised over the image, is given every donor channel's
    mean and standard deviation. On grey images this is the statistics transplant's own operation
    (soxai.bias.disparity.match_statistics); on colour images it keeps the shape where a channel is empty: a red
    digit given a green digit's statistics becomes the same digit in green, where matching each channel on its
    own would leave an empty red channel and a flat green one (no digit at all).

    recipients, donors : arrays of shape (n, C, H, W). Returns float32 (n, C, H, W).
    """
    from soxai.bias.disparity import match_statistics

    r = np.asarray(recipients, dtype=np.float32)
    return match_statistics(np.broadcast_to(r.mean(axis=1, keepdims=True), r.shape), donors)


def concept_region(scores: pd.DataFrame, concept_id: int, shape: tuple[int, int]) -> Region | None:
    """The region of the highest-scoring detector that flagged the concept and names one; None if none does.

    pixel_transplant names its pixels (``pixels``: flat indices into H x W), the box detectors their box
    (``box``); a whole-image detector (statistics_transplant) and a person's override name none.

    Parameters
    ----------
    scores : bias/scores.parquet rows (concept_id, detector, score, is_bias[, box][, pixels])
    shape : (H, W) of the images
    """
    from soxai.bias.detectors import BIAS_DETECTORS, WHOLE_IMAGE_DETECTORS

    rows = flag_rows(scores, concept_id)
    rows = rows[rows["detector"].isin(list(BIAS_DETECTORS)) & ~rows["detector"].isin(list(WHOLE_IMAGE_DETECTORS))]
    h, w = shape
    for row in rows.itertuples():
        pixels = getattr(row, "pixels", None)
        if isinstance(pixels, list | tuple | np.ndarray) and len(pixels) > 0:
            mask = np.zeros(h * w, dtype=bool)
            mask[np.asarray(pixels, dtype=np.int64)] = True
            return Region(str(row.detector), mask=mask.reshape(h, w))
        box = getattr(row, "box", None)
        if isinstance(box, list | tuple | np.ndarray) and len(box) == 4:
            y0, x0, y1, x1 = (int(v) for v in box)
            if 0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w:
                return Region(str(row.detector), box=(y0, x0, y1, x1))
    return None


def flag_rows(scores: pd.DataFrame, concept_id: int) -> pd.DataFrame:
    """The rows of ``scores`` that flag the concept, the highest score first (ties by detector name)."""
    rows = scores[(scores["concept_id"] == concept_id) & scores["is_bias"].astype(bool)]
    return rows.sort_values(["score", "detector"], ascending=[False, True], kind="stable")


def why_no_region(scores: pd.DataFrame, concept_id: int) -> str:
    detectors = sorted(set(flag_rows(scores, concept_id)["detector"].astype(str)))
    if "override" in detectors:
        return "flagged by a person's override, which names no region"
    if detectors == ["own_box"]:
        return "flagged only by own_box, whose region is each carrier's own box: no one region to paste"
    if detectors == ["channel_patch"]:
        return "flagged only by channel_patch, whose region is channels of the model's layer, not pixels to paste"
    if detectors:
        return f"flagged only by {', '.join(detectors)}, which test{'s' if len(detectors) == 1 else ''} the " \
               "whole image and name no region"
    return "no detector row names a region for it"


def whole_image_flag(scores: pd.DataFrame, concept_id: int) -> str | None:
    """The whole-image detector that flagged the concept (the highest-scoring), or None."""
    from soxai.bias.detectors import WHOLE_IMAGE_DETECTORS

    detectors = flag_rows(scores, concept_id)["detector"]
    detectors = detectors[detectors.isin(list(WHOLE_IMAGE_DETECTORS))]
    return str(detectors.iloc[0]) if len(detectors) else None
