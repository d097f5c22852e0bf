"""Carriers of a localised mark wherever it sits: the flagged concept's own channels, read in every class-mate.

The carrier test (soxai.bias.carriers) repeats the flagging paste of one box per sample, so a mark that moves is
found only where it sits in that box: on a ring stamped at random places in 20% of a Fashion-MNIST class, the
clustering put the rings at the left edge in the flagged concept and the rings over the garment in three others,
and the box test found 48 of the 140 carriers. The model itself sees the mark wherever it is: the channels of
``model.layer`` that carry the flagged concept's evidence fire at the mark's place, and their spatial maximum
does not depend on the place.

- *The concept's channels*: the ``k`` channels whose relevance for the class (soxai.embed.relevance) is higher,
  on average, in the concept's members than in their class-mates.
- *Presence*: each class-mate's mean over those channels of the spatial maximum of its activation.
- *Nominated*: the class-mates outside the concept nearer the members than the rest of the class, in units of
  each group's own spread (median and 1.4826 x MAD): above the point where the two robust z-scores are equal.
  The concept's own members are left to the box test (for a person's override, to the person): their scores
  chose the channels.
- *One test*: a class without the mark would also put some of its samples above that point — its upper tail.
  The nominated samples that were not carriers already count as carriers only when there are more of
  them than the rest of the class would put there by chance (a normal tail at the rest's median and width), by
  a one-sided binomial test at ``carriers.max_p_value``. Otherwise the carriers it started from stand (the box
  test's, or an overridden concept's members), and the reason says why. Where the rest of the class reads the
  same in most samples (no spread, e.g. a channel that is zero without the mark behind a ReLU) there is no tail
  to measure, and nothing is nominated.

On the 45 flagged concepts of the detection matrix's kept runs and the published moving mark, the test took the
extension for the moving ring (86 nominated beyond the box's 52 where 36 were expected; through the pipeline the
dropped samples' P 0.92 R 0.34 -> P 0.95 R 0.94, docs/PUBLISHED.md) and for the squares in random corners, and
refused it everywhere else, a stripe included whose nominated samples were the clean class's own upper tail (5
where 24 were expected). Under the null (bench/presence_null.py: every concept of a class without a mark treated
as flagged) it took none of 1,423. The place where the channels are strongest is also returned: ``augment``
copies a channel-found carrier's box from there (soxai.train.augment).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from soxai.bias.channels import MAD_TO_SD
from soxai.bias.layer import LayerAccess
from soxai.embed.relevance import spatial_peaks


@dataclass
class Extension:
    """What the channel test decided for one flagged concept's class."""

    channels: list[int]
    scores: np.ndarray  # presence of every class-mate, in the class's row order
    at: np.ndarray  # (n, 2) where the concept's channels are strongest in each class-mate, image pixels
    window: np.ndarray  # (n, 4) the pixels the layer sees there (y0, x0, y1, x1), half-open; NaN where ``at`` is
    boundary: float
    nominated: int  # class-mates above the boundary that were not carriers already
    expected: float  # how many of those the rest of the class would put there by chance
    p_value: float
    accepted: bool
    carries: np.ndarray  # the carriers it started from (box test's or an override's members), plus the nominated
    # ones when accepted
    why_not: str  # why nothing was nominated ('' when the test ran)

    def describe(self, max_p_value: float, before: str = "the box test's carriers") -> str:
        """The decision in words; ``before`` names the carriers the reading started from (a person's override:
        the members)."""
        chans = ", ".join(map(str, self.channels))
        if self.why_not:
            return f"the concept's channels ({chans}) nominate no one: {self.why_not}"
        head = (f"the concept's channels ({chans}) read at their strongest place in each class-mate: "
                f"{self.nominated} outside the concept and {before} are nearer the members than the "
                f"rest of the class, where its own spread would put {self.expected:.1f} (one-sided binomial "
                f"p={self.p_value:.2g}")
        if self.accepted:
            return f"{head} <= {max_p_value:g}): they carry it too"
        return f"{head} > {max_p_value:g}): {before} stand"


def concept_channels(relevance: np.ndarray, member: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` channels whose mean relevance is highest in the members against the class-mates (ties by index)."""
    relevance = np.asarray(relevance, dtype=np.float64)
    diff = relevance[member].mean(axis=0) - relevance[~member].mean(axis=0)
    return np.argsort(-diff, kind="stable")[:k]


def presence(access: LayerAccess, images: np.ndarray, rows: np.ndarray, channels: np.ndarray,
             chunk: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over ``channels`` of each image's spatially largest activation at the layer: float (n,); where the
    channels' mean map is largest, in image pixels (n, 2) as (row, col) of that cell's centre, the map taken to
    tile the image evenly; and the pixels that cell sees (n, 4) as (y0, x0, y1, x1), half-open (its receptive
    field, :meth:`LayerAccess.receptive_field`). NaN for a layer without a spatial map, or a map with no place
    above the rest; the window also NaN where the layer's cells see more than a quarter of the image
    (:attr:`soxai.models.layers.ReceptiveField.local`: no mark's place, so augment falls back on the region)."""
    out, at, window = np.zeros(len(rows)), np.full((len(rows), 2), np.nan), np.full((len(rows), 4), np.nan)
    for start in range(0, len(rows), chunk):
        part = np.asarray(images[np.asarray(rows[start:start + chunk])], dtype=np.float32)
        acts = access.activations(part)[:, channels]
        b = len(part)
        out[start:start + b] = spatial_peaks(acts).mean(axis=1)
        if acts.ndim == 4:
            h, w = acts.shape[2:]
            flat = acts.mean(axis=1).reshape(b, -1)
            cell = flat.argmax(axis=1)
            flat_map = flat.max(axis=1) == flat.min(axis=1)  # no place stands out: no place given
            at[start:start + b, 0] = np.where(flat_map, np.nan, (cell // w + 0.5) * part.shape[2] / h)
            at[start:start + b, 1] = np.where(flat_map, np.nan, (cell % w + 0.5) * part.shape[3] / w)
            field = access.receptive_field(part.shape[1:])
            for i in np.flatnonzero(~flat_map) if field is not None and field.local else ():
                box = field.window(int(cell[i] // w), int(cell[i] % w))
                window[start + i] = box if box is not None else np.nan
    return out, at, window


def _centre_width(x: np.ndarray) -> tuple[float, float]:
    centre = float(np.median(x))
    return centre, MAD_TO_SD * float(np.median(np.abs(x - centre)))


def extend(scores: np.ndarray, member: np.ndarray, carries: np.ndarray, max_p_value: float) -> tuple:
    """The test of the module docstring on presence ``scores``: (boundary, nominated, expected, p, accepted,
    carries, why_not). Only non-members are nominated: the box test keeps the last word on the concept's own
    members, whose scores chose the channels. Nothing is nominated when the members' median is not above the
    rest's, when the rest has no spread to measure a tail by, or when a score is not finite (``why_not`` says
    which; '' otherwise)."""
    from scipy.stats import binomtest, norm

    scores, member, carries = np.asarray(scores, float), np.asarray(member, bool), np.asarray(carries, bool)
    refused = (float("nan"), 0, 0.0, 1.0, False, carries)
    if not member.any() or member.all():
        return (*refused, "the class has no members or no class-mates")
    if not np.isfinite(scores).all():
        return (*refused, "a channel reading is not finite")
    (mm, sm), (mo, so) = _centre_width(scores[member]), _centre_width(scores[~member])
    if mm <= mo:
        return (*refused, "the members read no higher than the rest of the class")
    if so == 0:  # a normal tail of no width would take every sample above the rest's median
        return (*refused, "the rest of the class reads the same in most samples, no spread to measure a tail by")
    # where the two robust z-scores are equal, between the medians
    boundary = mo + so * (mm - mo) / (sm + so)
    others = ~member & ~carries
    extra = (scores >= boundary) & others
    tail = float(norm.sf((boundary - mo) / so))
    n, rest = int(extra.sum()), int(others.sum())
    p = float(binomtest(n, rest, tail, alternative="greater").pvalue) if n else 1.0
    accepted = p <= max_p_value
    return float(boundary), n, rest * tail, p, accepted, (carries | extra) if accepted else carries, ""


def channel_extension(access: LayerAccess, images: np.ndarray, relevance: np.ndarray, rows: np.ndarray,
                      member: np.ndarray, carries: np.ndarray, k: int, max_p_value: float) -> Extension:
    """The concept's channels from ``relevance`` (n, channels) of the class's ``rows``, their presence in every
    class-mate, and the test (module docstring)."""
    channels = concept_channels(relevance, member, k)
    scores, at, window = presence(access, images, rows, channels)
    return Extension([int(c) for c in channels], scores, at, window, *extend(scores, member, carries, max_p_value))
