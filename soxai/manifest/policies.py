"""Prune policies (registry) and the random-prune control.

A policy maps the training samples (with their concept) and the flagged concepts to keep/drop
decisions with a reason per dropped sample.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from soxai.concepts.cluster import NOISE
from soxai.data.class_names import class_text


@dataclass
class PolicyContext:
    """What a policy may read beyond the concepts.

    boxes : {concept_id: (y0, x0, y1, x1)} — each flagged concept's salient region (half-open); a
        concept flagged only by whole-image detectors has none, and drop_flagged_region drops all its members
    sample_maps : function positions into ``train`` (n,) -> those samples' |saliency| maps (n, H, W)
    region_threshold : drop_flagged_region drops a member whose share of relevance in the box reaches this
    carriers : the bias stage's carrier test (bias/carriers.parquet: sample_id, concept_id, member,
        flip_rate, n_recipients, threshold, carries, channel_score, channel_threshold, channel_y, channel_x,
        window_y0, window_x0, window_y1, window_x1, test), or None for a run without one
    class_names : the name of each label, for the reasons ("class round"; empty: the codes)
    """

    boxes: dict[int, tuple[int, int, int, int]]
    sample_maps: Callable[[np.ndarray], np.ndarray]
    region_threshold: float
    carriers: pd.DataFrame | None = None
    class_names: tuple[str, ...] = ()


def drop_flagged(
    train: pd.DataFrame, flagged: dict[int, str], ctx: PolicyContext | None = None
) -> tuple[np.ndarray, list[str]]:
    """Drop every member of a flagged concept.

    Parameters
    ----------
    train : DataFrame with a ``concept_id`` column, one row per training sample
    flagged : {concept_id: reason}

    Returns
    -------
    keep : bool array of shape (n,)
    reasons : one string per row ('' for kept samples)
    """
    cids = train["concept_id"].to_numpy()
    # the noise (-1) is no concept: flagged where a class's unclustered samples hold a shortcut
    # (soxai.bias.unclustered), only their carriers are dropped (drop_carriers), never all of them
    keep = ~np.isin(cids, [c for c in flagged if c != NOISE])
    reasons = ["" if k else f"member of flagged concept {int(c)}" for k, c in zip(keep, cids, strict=True)]
    return keep, reasons


def drop_flagged_region(
    train: pd.DataFrame, flagged: dict[int, str], ctx: PolicyContext | None = None
) -> tuple[np.ndarray, list[str]]:
    """Drop only those members of a flagged concept that put at least ``region_threshold`` of their
    relevance on the concept's flagged region: the samples that actually carry the shortcut, not
    every sample the clustering happened to put beside them.

    Parameters
    ----------
    train : DataFrame with a ``concept_id`` column, one row per training sample
    flagged : {concept_id: reason}
    ctx : the flagged concepts' boxes and the samples' maps (required)
    """
    from soxai.bias.location import box_mass

    if ctx is None:
        raise ValueError("drop_flagged_region needs a PolicyContext with the flagged regions and saliency maps")
    cids = train["concept_id"].to_numpy()
    keep = np.ones(len(train), dtype=bool)
    reasons = [""] * len(train)
    for cid in flagged:
        pos = np.flatnonzero(cids == cid)
        if len(pos) == 0 or cid == NOISE:  # unclustered carriers: drop_carriers only
            continue
        if cid not in ctx.boxes:  # flagged for the whole image (a tint): no region to measure, drop all
            keep[pos] = False
            for p in pos:
                reasons[p] = f"member of flagged concept {int(cid)} (flagged for the whole image, no region)"
            continue
        box = ctx.boxes[cid]
        mass = box_mass(ctx.sample_maps(pos), box)
        y0, x0, y1, x1 = box
        for p, m in zip(pos, mass, strict=True):
            if m >= ctx.region_threshold:
                keep[p] = False
                reasons[p] = (f"member of flagged concept {int(cid)} with {m:.0%} of its relevance in the flagged "
                              f"region rows {y0}-{y1 - 1}, cols {x0}-{x1 - 1}")
    return keep, reasons


def drop_carriers(
    train: pd.DataFrame, flagged: dict[int, str], ctx: PolicyContext | None = None
) -> tuple[np.ndarray, list[str]]:
    """Drop the samples that carry a flagged concept's shortcut, in the concept or not (soxai.bias.carriers).

    A member of a flagged concept that fails the carrier test is kept; a sample of the same class that
    the clustering put elsewhere but that passes it is dropped. A flagged concept without a carrier test
    (a run from before it, or a flag from a person's override alone) drops its members, as drop_flagged; since
    bias logic 14 an override's concept may also have class-mates its channels found, which are dropped too.

    Parameters
    ----------
    train : DataFrame with ``sample_id`` and ``concept_id`` columns, one row per training sample
    flagged : {concept_id: reason}
    ctx : with the carrier test's table (required)
    """
    if ctx is None:
        raise ValueError("drop_carriers needs a PolicyContext with the bias stage's carrier test")
    keep, reasons = drop_flagged(train, flagged, ctx)
    if ctx.carriers is None:
        return keep, reasons
    # concepts whose carrier test drew a line (on the flip rates, or on the concept's channels); in the others the
    # members stand
    lines = ctx.carriers["threshold"].notna()
    if "channel_threshold" in ctx.carriers:  # runs from before bias logic 8 have no channel reading
        lines |= ctx.carriers["channel_threshold"].notna()
    tested = ctx.carriers[ctx.carriers["concept_id"].isin(list(flagged)) & lines]
    position = pd.Series(np.arange(len(train)), index=train["sample_id"].to_numpy())
    for p in position.loc[tested.loc[tested["member"], "sample_id"]].to_numpy():
        keep[p], reasons[p] = True, ""  # a member that carries nothing is kept ...
    carriers = tested[tested["carries"]]
    for p, r in zip(position.loc[carriers["sample_id"]].to_numpy(), carriers.itertuples(), strict=True):
        keep[p] = False  # ... unless it carries this or another flagged concept's shortcut
        if r.concept_id == NOISE:
            named = class_text(r.label, ctx.class_names)
            reasons[p] = (f"carries the shortcut among the unclustered samples of {named}: its own most salient box "
                          f"moved {r.flip_rate:.0%} of {int(r.n_recipients)} recipients to {named} (carrier "
                          f"threshold {r.threshold:.0%})"
                          + ("" if r.member else "; the clustering had put it in a concept"))
            continue
        if r.flip_rate >= r.threshold:  # False where the test drew no line on the flip rates (NaN)
            how = (f"as a donor it moved {r.flip_rate:.0%} of {int(r.n_recipients)} recipients to "
                   f"{class_text(r.label, ctx.class_names)} (carrier threshold {r.threshold:.0%})")
        elif r.member and pd.isna(r.threshold) and r.n_recipients == 0:  # nothing pasted: an override's reading
            how = "a member of a concept a person dropped (bias.overrides)"
        elif r.member and pd.isna(r.threshold):
            how = "a member, where single samples' pastes could not be told apart"
        else:
            how = (f"the concept's channels read {r.channel_score:.3g} at their strongest place in it, on the "
                   f"members' side of {r.channel_threshold:.3g}")
        reasons[p] = (f"carries the shortcut of flagged concept {int(r.concept_id)}: {how}"
                      + ("" if r.member else "; the clustering had put it elsewhere"))
    return keep, reasons


PolicyFn = Callable[[pd.DataFrame, dict[int, str], "PolicyContext | None"], tuple[np.ndarray, list[str]]]

PRUNE_POLICIES: dict[str, PolicyFn] = {
    "drop_flagged": drop_flagged,
    "drop_flagged_region": drop_flagged_region,
    "drop_carriers": drop_carriers,
}


def emptied_classes(labels: np.ndarray, keep: np.ndarray) -> list[int]:
    """The classes of ``labels`` (n,) none of whose samples ``keep`` (n,) keeps: the guard every prune shares
    (the manifest stage, a user's manifest, augment's drop_carriers fallback; manifest.allow_empty_class)."""
    labels, keep = np.asarray(labels), np.asarray(keep, dtype=bool)
    return [int(label) for label in np.unique(labels) if not keep[labels == label].any()]


def keep_majority_classes(
    labels: np.ndarray, keep: np.ndarray, reasons: list[str], flagged: dict[int, str], max_share: float,
    wrong: np.ndarray, class_names: Sequence[str] = (),
) -> tuple[np.ndarray, list[str], dict[str, dict]]:
    """Undo a prune that would take most of a class and leave it defined by its counter-examples.

    Where a prune takes more than ``max_share`` of a class and the baseline is wrong on more than half of
    what it would keep of that class, the shortcut is the class's typical sample and the rest is its
    conflict minority (ColoredMNIST: 1,210 of class 1's 1,337 green digits flagged, the baseline wrong on
    96% of the 127 red ones left): training on those alone teaches the opposite shortcut. Such a class is
    kept whole, each sample that would have gone saying why; the corrections that keep the class (the
    ``reweight`` and ``augment`` retrain variants) are the ones that apply to it. A prune of most of a class
    whose rest the baseline gets right goes ahead (a mark on 80% of digits' zeros: the 21 clean zeros, all
    predicted right, are enough to learn the class; pruning gains +0.23 on the attacked test). Both
    thresholds are a majority, not fitted values; ``max_share`` 1.0 turns the rule off.

    Parameters
    ----------
    labels : int array of shape (n,), the training samples' classes
    keep, reasons : a policy's decisions for those samples (not modified)
    flagged : {concept_id: reason}, named in the reasons
    max_share : the largest share of a class's training samples a prune may drop before the rule looks at it
    wrong : bool array of shape (n,), the baseline's errors on the training samples
    class_names : the name of each label, for the reasons (empty: the codes)

    Returns
    -------
    keep, reasons : the decisions with those classes' drops undone
    kept_whole : {class: {"would_drop": n, "of": n_class, "rest_wrong": share}} of the classes kept whole
    """
    keep, reasons = keep.copy(), list(reasons)
    wrong = np.asarray(wrong, dtype=bool)
    kept_whole: dict[str, dict] = {}
    for label in np.unique(labels):
        in_class = labels == label
        n_class, n_drop = int(in_class.sum()), int((~keep[in_class]).sum())
        if n_drop == 0 or n_drop <= max_share * n_class:
            continue
        rest = in_class & keep
        rest_wrong = float(wrong[rest].mean()) if rest.any() else 0.0
        if rest.any() and rest_wrong <= 0.5:
            continue  # the class keeps samples the baseline recognises: the prune goes ahead
        kept_whole[str(int(label))] = {"would_drop": n_drop, "of": n_class, "rest_wrong": round(rest_wrong, 4)}
        why = (f"kept: the prune would drop {n_drop} of the {n_class} training samples of "
               f"{class_text(label, class_names)} (more than manifest.max_class_drop={max_share:g}) and the "
               f"baseline is wrong on {rest_wrong:.0%} of the rest, so the shortcut of flagged concept(s) "
               f"{sorted(flagged)} is the class's typical sample and the rest its counter-examples; the class is kept "
               "whole: correct it with the reweight or augment retrain variant")
        for p in np.flatnonzero(in_class & ~keep):
            keep[p], reasons[p] = True, why
    return keep, reasons, kept_whole


def random_control(labels: np.ndarray, keep: np.ndarray, seed: int) -> np.ndarray:
    """Drop, per class, as many samples as ``keep`` drops, chosen at random.

    Parameters
    ----------
    labels : int array of shape (n,)
    keep : bool array of shape (n,), the pruned policy's decision

    Returns
    -------
    keep_control : bool array of shape (n,)
    """
    rng = np.random.default_rng(seed)
    out = np.ones(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n_drop = int((~keep[idx]).sum())
        if n_drop:
            out[rng.choice(idx, size=n_drop, replace=False)] = False
    return out
