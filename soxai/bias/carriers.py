"""Which samples carry a flagged concept's shortcut, whether or not the clustering put them in it.

A concept is flagged as a whole, but the clustering does not always put every marked sample in the
flagged concept: a tint spreads over several concepts of its class, a faint mark leaves some marked
samples in the noise. The carrier test repeats, for each training sample of the flagged concept's
class on its own, the operation that flagged the concept — paste the flagged region (a box, or the
whole image's brightness and contrast for a whole-image flag) from that one sample into ``n_recipients``
correctly predicted images of other classes — and counts how many move to the class (for a whole-image
flag: how many leave their own class, the statistics transplant's measure). Members of the
flagged concept set the bar: a sample carries the shortcut when its flip rate reaches the midpoint
between the members' mean rate and the median rate of the class's other samples. Where that gap is
too small for single samples to be told apart, the concept's members stand as its carriers. Every
sample is first tested on a few recipients and only those left in doubt on more, so a clear shortcut
costs a quarter of the predictions. For a box or pixel flag, the concept's own channels of the model's
layer are then read in every class-mate, so a mark is found wherever it sits (soxai.bias.presence); for a
person's override, which names no region to paste, the members stand and the channels are read the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from soxai.bias.channels import ChannelRegion, channel_budget
from soxai.bias.config import BiasConfig
from soxai.bias.context import DetectorContext, pick_rows
from soxai.bias.detectors import BIAS_DETECTORS
from soxai.bias.disparity import match_statistics
from soxai.bias.ownbox import own_box_region
from soxai.bias.presence import channel_extension

CARRIER_COLUMNS = ["sample_id", "concept_id", "label", "member", "flip_rate", "n_recipients", "threshold", "carries",
                   "channel_score", "channel_threshold", "channel_y", "channel_x", "window_y0", "window_x0",
                   "window_y1", "window_x1", "test"]
#: the window columns of CARRIER_COLUMNS: the pixels the layer sees where the concept's channels are strongest; for
#: the unclustered test's rows (concept -1), each sample's own most salient box, the one it pasted
WINDOW_COLUMNS = ["window_y0", "window_x0", "window_y1", "window_x1"]
# Recipients every sample is tested on first; samples whose rate leaves the carrier question in doubt (a
# 95% Wilson interval around it contains the threshold) are tested on twice as many, and so on up to
# n_recipients. On the demo's mark (members 94%, others 0%) 8 decide every sample, a quarter of the cost;
# on a mark that moves about half of the recipients, 16.
FIRST_STAGE = 8
# how often a split of the rates (the unclustered test's) is drawn again on more recipients' rates
MAX_RESPLITS = 4
WILSON_Z = 1.96


def carrier_flip_rates(
    predict, images: np.ndarray, rows: np.ndarray, recipients: np.ndarray, target_class: int,
    box: tuple[int, int, int, int] | None, max_bytes: int = 128 << 20, recipient_labels: np.ndarray | None = None,
) -> np.ndarray:
    """Share of ``recipients`` moved to ``target_class`` by each candidate's region, one candidate at a time.

    Parameters
    ----------
    predict : function images (n, C, H, W) float32 -> predicted class (n,)
    images : array of shape (n_total, C, H, W) (a memory map or a lazy reader: read a chunk at a time)
    rows : sorted int array (n_candidates,), the donors' rows of ``images``
    recipients : array of shape (n_recipients, C, H, W)
    box : (y0, x0, y1, x1) half-open region pasted from the donor, or a boolean mask (H, W) of the pixels
        pasted (pixel_transplant's region), or a :class:`soxai.bias.channels.ChannelRegion` (channel_patch's:
        the donor's own strongest channels patched at the model's layer); None = the donor's per-channel
        brightness and contrast given to the whole recipient (a whole-image flag)
    max_bytes : bound on the pasted images held at once (candidates are processed in chunks)
    recipient_labels : int array (n_recipients,) or None; when given, a recipient counts when it leaves its
        own class, wherever it goes (the statistics transplant's measure), not only when it moves to
        ``target_class``

    Returns
    -------
    rates : float array of shape (n_candidates,)
    """
    recipients = np.asarray(recipients, dtype=np.float32)
    m = len(recipients)
    rows = np.asarray(rows, dtype=np.int64)
    rates = np.zeros(len(rows), dtype=np.float64)
    if m == 0:
        return rates
    if hasattr(box, "flip_rates"):  # a region of the donor's own: ChannelRegion, soxai.bias.unclustered.OwnBox
        return box.flip_rates(images, rows, recipients, target_class)
    step = max(1, max_bytes // (m * recipients[0].nbytes))
    for start in range(0, len(rows), step):
        donors = np.asarray(images[rows[start:start + step]], dtype=np.float32)
        pasted = np.repeat(recipients[None], len(donors), axis=0)  # (b, m, C, H, W)
        if box is None:
            pasted = match_statistics(pasted.reshape(-1, *recipients.shape[1:]),
                                      np.repeat(donors, m, axis=0)).reshape(pasted.shape)
        elif isinstance(box, np.ndarray):
            pasted[:, :, :, box] = donors[:, None, :, box]
        else:
            y0, x0, y1, x1 = box
            pasted[:, :, :, y0:y1, x0:x1] = donors[:, None, :, y0:y1, x0:x1]
        pred = predict(pasted.reshape(-1, *recipients.shape[1:])).reshape(len(donors), m)
        moved = pred == target_class if recipient_labels is None else pred != np.asarray(recipient_labels)[None]
        rates[start:start + len(donors)] = moved.mean(axis=1)
    return rates


def carrier_threshold(member_rates: np.ndarray, other_rates: np.ndarray, min_gap: float) -> float | None:
    """Midpoint between the members' mean flip rate and the others' median; None when the gap < ``min_gap``."""
    if len(member_rates) == 0 or len(other_rates) == 0:
        return None
    hi, lo = float(np.mean(member_rates)), float(np.median(other_rates))
    return (hi + lo) / 2 if hi - lo >= min_gap else None


def wilson_interval(rate: np.ndarray, n, z: float = WILSON_Z) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of binomial rates observed over ``n`` trials (a number or an array like ``rate``)."""
    rate = np.asarray(rate, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    denom = 1 + z * z / n
    centre = (rate + z * z / (2 * n)) / denom
    half = z * np.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / denom
    return centre - half, centre + half


def sequential_rates(predict, images, rows: np.ndarray, recipients: np.ndarray, k: int, box, member,
                     min_gap: float, labels: np.ndarray | None = None):
    """Flip rates of the candidate ``rows``: all on the first FIRST_STAGE recipients, then those still in doubt
    on twice as many, and so on up to all of them. Returns (rates, recipients each rate is over, threshold or
    None, and the member mask). ``member``: a bool mask over ``rows``, or a function of rates that returns one (the
    unclustered test's Otsu split). For a mask the threshold comes from the first stage, where every sample has a
    rate over the same recipients, and is None when the gap is below ``min_gap`` there or in the final rates. A
    function splits the first-stage rates (None there ends it, as for a mask), then the final rates again, and
    while that moves the threshold, the samples in doubt about the new one are tested on more recipients (at most
    MAX_RESPLITS times); the threshold returned is the last split's, drawn on the rates returned."""
    m = len(recipients)
    done = min(FIRST_STAGE, m)
    flips = carrier_flip_rates(predict, images, rows, recipients[:done], k, box,
                               recipient_labels=None if labels is None else labels[:done]) * done
    n_tested = np.full(len(rows), done)
    split = member if callable(member) else None
    member = np.asarray(split(flips / done) if split else member, dtype=bool)
    t = carrier_threshold(flips[member] / done, flips[~member] / done, min_gap)
    if t is None:
        return flips / done, n_tested, t, member

    def more_recipients(t: float) -> None:
        """Test every sample whose rate's interval holds ``t`` on twice its recipients, until none does."""
        while True:
            lo, hi = wilson_interval(flips / n_tested, n_tested)
            doubt = (n_tested < m) & (lo <= t) & (t <= hi)
            if not doubt.any():
                return
            for n in np.unique(n_tested[doubt]):
                idx = np.flatnonzero(doubt & (n_tested == n))
                more = min(2 * int(n), m)
                flips[idx] += carrier_flip_rates(
                    predict, images, rows[idx], recipients[n:more], k, box,
                    recipient_labels=None if labels is None else labels[n:more]) * (more - n)
                n_tested[idx] = more

    more_recipients(t)
    if split is not None:
        # the split is drawn again on the final rates: on the first 8 recipients a rate is a multiple of 1/8, and
        # the cut can fall between 0 and 1/8 (MNIST, a corner patch on 10% of the zeros: 200 of 300 on the upper
        # side, the carriers at 5/8 among them, whose final mean then fell to 18% against 3%, below the gap)
        def resplit():
            rates = flips / n_tested
            upper = np.asarray(split(rates), dtype=bool)
            return upper, carrier_threshold(rates[upper], rates[~upper], min_gap)

        for _ in range(MAX_RESPLITS):
            member, new_t = resplit()
            if new_t is None or new_t == t:
                break
            t = new_t
            more_recipients(t)
        else:  # the line still moved: split the rates just measured once more, with no more recipients
            member, new_t = resplit()
        return flips / n_tested, n_tested, new_t, member
    rates = flips / n_tested
    # A weak mark can clear the gap on the first recipients by chance (on MNIST with a corner patch on 10% of
    # the zeros the members moved 25% of the first 8 and 6% of all 32): once the members' own rates fall
    # back below the gap, single samples cannot be told apart after all, and the members stand.
    if carrier_threshold(rates[member], rates[~member], min_gap) is None:
        return rates, n_tested, None, member
    return rates, n_tested, t, member


def _decisive(scores: pd.DataFrame, cid: int, shape: tuple[int, int]):
    """The flagging detector with the highest score that names an operation: (detector, region).

    As its registry entry's ``region`` says: a whole-image detector names the brightness-and-contrast transfer
    (region None), a channels one its number of channels; a pixels one the pixels it pasted (a boolean mask of
    ``shape``); any other the box in its row. A person's override names none (returns None)."""
    rows = scores[(scores["concept_id"] == cid) & scores["is_bias"].astype(bool)]
    rows = rows[rows["detector"].isin(list(BIAS_DETECTORS))].sort_values(
        ["score", "detector"], ascending=[False, True], kind="stable")
    for row in rows.itertuples():
        region = BIAS_DETECTORS[row.detector].region
        if region == "whole_image":
            return row.detector, None
        if region == "channels":
            return row.detector, int(row.n_channels)
        if region == "own_box":
            return row.detector, "own_box"
        pixels = getattr(row, "pixels", None)
        if isinstance(pixels, list | tuple | np.ndarray) and len(pixels) > 0:
            mask = np.zeros(shape[0] * shape[1], dtype=bool)
            mask[np.asarray(pixels, dtype=np.int64)] = True
            return row.detector, mask.reshape(shape)
        box = getattr(row, "box", None)
        if isinstance(box, list | tuple | np.ndarray) and len(box) == 4:
            return row.detector, tuple(int(v) for v in box)
    return None


def find_carriers(
    ctx: DetectorContext, scores: pd.DataFrame, flagged: dict[int, str], cfg: BiasConfig
) -> pd.DataFrame:
    """The carrier test for every flagged concept (see the module docstring).

    Returns a DataFrame with one row per (training sample of a flagged concept's class, concept), the
    :data:`CARRIER_COLUMNS`: ``sample_id, concept_id, label, member, flip_rate, n_recipients, threshold, carries,
    channel_score, channel_threshold, channel_y, channel_x, window_y0, window_x0, window_y1, window_x1, test`` —
    ``channel_score`` is the sample's reading of the concept's channels (NaN where they were not read),
    ``channel_threshold`` the line drawn on it where the channels' carriers were taken (NaN otherwise),
    ``channel_y, channel_x`` where in the image the channels are strongest (the mark's place), ``window_*`` the
    pixels the layer sees there (half-open; what augment pastes; NaN where its cells see more than a quarter of the
    image), ``test`` which operation was repeated, or why the members stand.
    """
    ccfg = cfg.carriers
    correct = ctx.train[ctx.train["pred"] == ctx.train["label"]]
    frames = []
    for cid in sorted(flagged):
        concept = ctx.concepts[ctx.concepts["concept_id"] == cid]
        if concept.empty:
            continue
        k = int(concept["label"].iloc[0])
        cls = ctx.train[ctx.train["label"] == k].sort_values("row", kind="stable")
        member = (cls["concept_id"] == cid).to_numpy()
        out = pd.DataFrame({"sample_id": cls["sample_id"].to_numpy(), "concept_id": cid, "label": k,
                            "member": member, "flip_rate": np.nan, "n_recipients": 0, "threshold": np.nan,
                            "carries": member, "channel_score": np.nan, "channel_threshold": np.nan,
                            "channel_y": np.nan, "channel_x": np.nan, **dict.fromkeys(WINDOW_COLUMNS, np.nan)})
        decisive = _decisive(scores, cid, tuple(ctx.images.shape[2:]))
        pool = correct[correct["label"] != k]
        if decisive is None or len(pool) == 0 or member.all():
            out["test"] = ("members stand: no detector region to repeat per sample" if decisive is None
                           else "members stand: no other-class images or class-mates to test against")
            if decisive is None and not member.all() and _overridden(scores, cid) and _layer_readable(ctx, cfg):
                # a person's flag names no region, but the concept's channels are still the model's own reading
                _read_channels(ctx, ccfg, cls, k, member, out, before="the members")
            frames.append(out)
            continue
        detector, box = decisive
        if BIAS_DETECTORS[detector].region == "channels":
            box = ChannelRegion(ctx.layer, ctx.train, k, box)
        elif BIAS_DETECTORS[detector].region == "own_box":
            box = own_box_region(ctx, cfg)
        rng = np.random.default_rng([ctx.seed, cid + 1, 17])
        rec_rows = pick_rows(pool, ccfg.n_recipients, rng)
        recipients = np.asarray(ctx.images[rec_rows], dtype=np.float32)
        # a whole-image flag counts recipients moved off their class, as statistics_transplant does
        labels = ctx.labels(rec_rows) if box is None else None
        rates, n_tested, t, _ = sequential_rates(ctx.predict, ctx.images, cls["row"].to_numpy(), recipients, k,
                                                 box, member, ccfg.min_gap, labels)
        out["flip_rate"], out["n_recipients"] = rates, n_tested
        what = _region_text(box)
        if t is None:
            out["test"] = (f"members stand: {detector} region ({what}) from single samples moved members "
                           f"{np.mean(rates[member]):.0%} vs others {np.median(rates[~member]):.0%} of "
                           f"their recipients, a gap below {ccfg.min_gap:.2f}")
        else:
            out["threshold"] = t
            out["carries"] = rates >= t
            out["test"] = (f"{detector} region ({what}) pasted from each sample into {FIRST_STAGE} recipients, "
                           f"more (up to {len(recipients)}) where that left it in doubt")
        if _reads_channels(ctx, cfg, box):
            _read_channels(ctx, ccfg, cls, k, member, out)
        frames.append(out)
    if not frames:
        dtypes = ("str", "int64", "int64", "bool", "float64", "int64", "float64", "bool", *["float64"] * 8, "str")
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(CARRIER_COLUMNS, dtypes, strict=True)})
    return pd.concat(frames, ignore_index=True)[CARRIER_COLUMNS]


def _region_text(box) -> str:
    """The pasted region in words."""
    if box is None:
        return "brightness and contrast"
    if not isinstance(box, np.ndarray | tuple):
        return box.describe()
    if isinstance(box, np.ndarray):
        ys, xs = np.nonzero(box)
        return f"{int(box.sum())} pixels in rows {ys.min()}-{ys.max()}, cols {xs.min()}-{xs.max()}"
    return f"rows {box[0]}-{box[2] - 1}, cols {box[1]}-{box[3] - 1}"


def _layer_readable(ctx: DetectorContext, cfg: BiasConfig) -> bool:
    """Whether the concept's channels may be read: ``bias.carriers.channels`` on, and the model's layer at hand."""
    return cfg.carriers.channels and ctx.layer is not None


def _reads_channels(ctx: DetectorContext, cfg: BiasConfig, box) -> bool:
    """Whether the concept's channels are read in every class-mate: a box or pixel flag, with the model's layer."""
    return _layer_readable(ctx, cfg) and isinstance(box, tuple | np.ndarray)


def _overridden(scores: pd.DataFrame, cid: int) -> bool:
    """Whether a person's override flagged concept ``cid``."""
    rows = scores[(scores["concept_id"] == cid) & (scores["detector"] == "override")]
    return bool(rows["is_bias"].astype(bool).any())


def _read_channels(ctx: DetectorContext, ccfg, cls: pd.DataFrame, k: int, member: np.ndarray,
                   out: pd.DataFrame, before: str = "the box test's carriers") -> None:
    """The concept's channels read in every class-mate (soxai.bias.presence), written into ``out`` in place: the
    class-mates they nominate join the carriers when the test accepts them; the members keep what came before."""
    relevance = _relevance(ctx, cls, k)  # (n, channels): the channel count needs no forward pass of its own
    ext = channel_extension(ctx.layer, ctx.images, relevance, cls["row"].to_numpy(), member,
                            out["carries"].to_numpy(), channel_budget(relevance.shape[1], ccfg.channel_frac),
                            ccfg.max_p_value)
    out["channel_score"], out["carries"] = ext.scores, ext.carries
    out["channel_threshold"] = ext.boundary if ext.accepted else np.nan
    out["channel_y"], out["channel_x"] = ext.at[:, 0], ext.at[:, 1]
    out[WINDOW_COLUMNS] = ext.window
    out["test"] = out["test"] + "; " + ext.describe(ccfg.max_p_value, before)


def _relevance(ctx: DetectorContext, cls: pd.DataFrame, k: int) -> np.ndarray:
    """Channel relevance for class ``k`` of the class's samples, in the rows' order (n, channels)."""
    relevance = ctx.layer.class_relevance(ctx.images, ctx.train, k)
    return np.stack(relevance.loc[cls["row"].to_numpy()].to_numpy())


def found_by_channels(carriers: pd.DataFrame) -> pd.Series:
    """Which rows of ``carriers`` carry by the concept's channels only: outside the concept, a line drawn on the
    channels, and no paste of the region reaching the flip-rate threshold (bias.presence nominates non-members
    only). A paste of the concept's region from them carries no mark."""
    if "channel_threshold" not in carriers:
        return pd.Series(False, index=carriers.index)
    pasted = carriers["flip_rate"] >= carriers["threshold"]  # False where no line was drawn (NaN)
    return (carriers["carries"].astype(bool) & ~carriers["member"].astype(bool) & ~pasted
            & carriers["channel_threshold"].notna())


def found_elsewhere(carriers: pd.DataFrame | None, cid: int) -> set[str]:
    """The sample ids that carry flagged concept ``cid`` by its channels only (:func:`found_by_channels`)."""
    rows = carriers[carriers["concept_id"] == cid] if carriers is not None else None
    return set() if rows is None or not len(rows) else set(rows.loc[found_by_channels(rows), "sample_id"])


def carrier_summary(carriers: pd.DataFrame) -> dict[str, Any]:
    """Per flagged concept: members, carriers inside and outside the concept (for stage metrics)."""
    out = {}
    for cid, rows in carriers.groupby("concept_id", sort=True):
        out[str(int(cid))] = {"members": int(rows["member"].sum()),
                              "carriers_in": int((rows["carries"] & rows["member"]).sum()),
                              "carriers_out": int((rows["carries"] & ~rows["member"]).sum()),
                              "carriers_by_channels": int(found_by_channels(rows).sum())}
    return out
