"""Where a flagged concept's shortcut sits, for the ``augment`` correction (soxai.train.augment): the box or pixels
its flagging detector pasted, or the whole image's statistics, and how a region is copied from a donor into a
recipient (at the region's own place, or at a box of the carrier's own: where the concept's channels saw its mark,
carrier_boxes)."""

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


#: how a carrier's own box came about (:func:`carrier_boxes`), in the words of its recipients' reasons
OWN_BOX = {
    "window": "the pixels the model's layer sees where the concept's channels are strongest in the carrier: its mark, "
              "which sits outside the region",
    "grown": "the region widened to the pixels the model's layer sees where the concept's channels are strongest in "
             "the carrier",
    "placed": "the region moved onto the carrier's mark, found by the concept's channels",
    "own": "the carrier's own most salient box, the one the unclustered test pasted from it: its mark, wherever it "
           "sits",
}


def unclustered_donors(carriers: pd.DataFrame | None, k: int, position: pd.Series
                       ) -> tuple[np.ndarray, dict[int, tuple[tuple[int, int, int, int], str]]]:
    """The carriers of class ``k``'s unclustered flag (soxai.bias.unclustered: concept -1 rows of
    bias/carriers.parquet), by training-sample position, and those that give a paste: ``(carrier positions,
    {position: (own box, "own")})``. A carrier without a box (a run from before bias logic 18) gives none."""
    from soxai.bias.carriers import WINDOW_COLUMNS

    if carriers is None or not len(carriers) or not set(WINDOW_COLUMNS) <= set(carriers.columns):
        return np.zeros(0, np.int64), {}
    rows = carriers[(carriers["concept_id"] == -1) & (carriers["label"] == k) & carriers["carries"].astype(bool)]
    rows = rows[rows["sample_id"].isin(position.index)]
    pos = position.loc[rows["sample_id"]].to_numpy(dtype=np.int64)
    boxes = rows[WINDOW_COLUMNS].to_numpy(dtype=np.float64)
    own = {int(p): (tuple(int(v) for v in box), "own") for p, box in zip(pos, boxes, strict=True)
           if np.isfinite(box).all()}
    return np.sort(pos), dict(sorted(own.items()))


def carrier_boxes(cid: int, region: Region, carrier_pos: np.ndarray, carriers: pd.DataFrame | None, ids: np.ndarray,
                  shape: tuple[int, int]) -> tuple[np.ndarray, dict[int, tuple[tuple[int, int, int, int], str]], int]:
    """The carriers the region is copied from, how many of those the concept's channels found elsewhere, and the
    box of their own those give where the concept's channels were read (bias/carriers.parquet's ``window_*``: the
    pixels the model's layer sees where the channels are strongest, which is all that decides the channels'
    activation there):

    - ``window``: a carrier only the channels found (its mark sits outside the region) gives that window;
    - ``grown``: a carrier whose region holds the mark gives the box around the region and the window where the
      two overlap (a region smaller than the mark cuts it: a 5x5 box of a 7x7 ring);
    - ``placed``: without a window, the region re-centred on the channels' place (:meth:`Region.placed`).

    The bias stage leaves the window out (NaN) where the layer's cells see more than a quarter of the image
    (soxai.bias.presence): a paste that large carries a different image, not a mark. The built-in small CNN's
    layer sees 8x8 px; the built-in ResNet's last conv on 32 px images 25x25.

    A pixel mask cannot be moved: a carrier only the channels found then gives no paste.

    Returns ``(donor positions, {position: (box, how)}, number of donors the channels found elsewhere)``."""
    from soxai.bias.carriers import WINDOW_COLUMNS, found_elsewhere

    elsewhere = found_elsewhere(carriers, cid)
    if region.mask is not None:
        kept = np.array([p for p in carrier_pos if ids[p] not in elsewhere], dtype=np.int64)
        return (kept, {}, 0) if len(kept) else (carrier_pos, {}, sum(ids[p] in elsewhere for p in carrier_pos))
    rows = carriers[carriers["concept_id"] == cid].set_index("sample_id") if carriers is not None else None
    own: dict[int, tuple[tuple[int, int, int, int], str]] = {}
    kept = []
    for p in carrier_pos:
        box = _own_box(region, rows, ids[p], ids[p] in elsewhere, shape, WINDOW_COLUMNS)
        if box is None and ids[p] in elsewhere:
            continue  # its mark has no place: it gives no paste
        kept.append(p)
        if box is not None and box[0] != region.box:
            own[int(p)] = box
    kept = np.asarray(kept, dtype=np.int64)
    if not len(kept):
        return carrier_pos, {}, sum(ids[p] in elsewhere for p in carrier_pos)
    return kept, own, sum(ids[p] in elsewhere for p in kept)


def _own_box(region: Region, rows: pd.DataFrame | None, sid: str, outside: bool, shape: tuple[int, int],
             window_columns: list[str]) -> tuple[tuple[int, int, int, int], str] | None:
    """A carrier's box of its own and how it came about (:func:`carrier_boxes`), or None for the region's own."""
    row = rows.loc[sid] if rows is not None and sid in rows.index else None
    if row is None:
        return None
    if isinstance(row, pd.DataFrame):
        row = row.iloc[0]
    window = row[window_columns].to_numpy(dtype=np.float64) if set(window_columns) <= set(row.index) else None
    if window is not None and np.isfinite(window).all():
        a, b, c, d = (int(v) for v in window)
        if outside:
            return (a, b, c, d), "window"
        y0, x0, y1, x1 = region.box
        if a < y1 and y0 < c and b < x1 and x0 < d:  # they overlap
            return (min(a, y0), min(b, x0), max(c, y1), max(d, x1)), "grown"
        return None
    y, x = (float(row.get("channel_y", np.nan)), float(row.get("channel_x", np.nan)))
    if outside and np.isfinite(y) and np.isfinite(x):
        return region.placed((y, x), shape), "placed"
    return None
