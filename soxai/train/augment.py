"""Kernel of the ``augment`` correction (a retrain variant beside pruning; ``reweight`` is soxai.train.corrections).

augment — counterfactual augmentation in the spirit of ClArC (Anders et al. 2022): each flagged concept's
region (the box or pixels its flagging detector pasted) is copied from the concept's carriers into a share
of the other classes' training images, which keep their own labels. Where the concept's channels were read
(soxai.bias.presence), a carrier gives a box of its own: the pixels the model's layer sees where the channels are
strongest (their receptive field there, which is all that decides their activation at that place) — for a carrier
only the channels found (its mark sits elsewhere) that window, for one whose region holds the mark the region
widened to it, so that a region smaller than the mark (a 5x5 box of a 7x7 ring) no longer cuts it. The region
then appears in every class alike and stops predicting one. The augmented images *replace* their originals in the
variant's training set (no sample is added): the set keeps the baseline's size and steps, and at the carriers' own
share the region is exactly as common in each class as in the carriers' (an added copy would leave the
original beside it, and matching the share would take r / (1 - r) copies per image). The carriers stay.
A whole-image flag (statistics_transplant: a tint, a colour, a background's cast, which every image has in some
measure) has no region, and pasting its carriers' statistics into other classes at the carriers' share would
*reverse* a two-sided confounder (ColoredMNIST: class 0 mostly green, class 1 mostly red — each class's flag would
give the other class its colour). Such flags are corrected together, by one shuffle: a share of every class's
images (``rate``; by default all of them) take the per-channel brightness and contrast of a training image drawn at
random from all classes (``recolour``: their own structure, in the donor's colour). A statistic the label predicted
then predicts it (1 - share) as strongly: at the default share of 1 it is independent of the label, as in the
benchmark's unconfounded twin. (A share equal to the carriers', the region rule, left a tint on 10% of a class
predicting it at 0.9 of its strength: augment 0.36 on the attacked test of cells with a tint at 10%, where dropping
the carriers reached 0.78.) It needs no guess of which other-class images already carry the attribute, and one
shuffle serves every whole-image flag. A concept a box test flagged too goes to the shuffle: the whole image's
statistics alone moved predictions, and a box of it carries them in part (ColoredMNIST's colour concepts and a cells
tint are flagged by both; no localised mark on the detection matrix was).
The shuffle gives each recipient its luminance in the donor's per-channel mean and spread (a colour image takes the
donor's cast and loses its own colour variation). A flag with no region and no whole-image flag (a person's override,
own_box, channel_patch), a box or a whole-image flag without carriers gets the configured fallback, with the reason.
A class the unclustered test flagged (soxai.bias.unclustered: no concept) is augmented like a concept, each carrier
giving its own most salient box, the one the test pasted (its mark, wherever it sits); its rows say concept -1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from soxai.data.class_names import class_text
from soxai.train.corrections import carrier_mask, group_balanced_weights
from soxai.train.regions import (
    OWN_BOX,
    Region,
    carrier_boxes,
    concept_region,
    unclustered_donors,
    whole_image_flag,
    why_no_region,
)

NO_OWN_BOX = "its carriers have no box of their own (a run from before bias logic 18, or no carrier found)"


@dataclass
class AugmentPlan:
    """What the augment variant trains on, for one seed.

    keep : bool array of shape (n,) over the training samples (False: dropped by the drop_carriers fallback)
    weights : float array of shape (n,), the sampling weights (all 1 unless the reweight fallback applied)
    recipients, donors : int arrays of shape (m,), positions into the training samples; recipient i's image
        is replaced by ``regions[concepts[i]].paste`` of itself and donor i
    concepts : int array of shape (m,), the flagged concept whose region each recipient received; for the
        statistics shuffle, the first of the whole-image concepts it serves (the others' rows say so); -1 for an
        unclustered flag (of any class: the recipient's reason names it)
    regions : {concept_id: Region} of the concepts augmented (the shuffle under that first concept)
    corrections : one row per flagged concept (or one 'none' row when nothing is flagged):
        {concept_id, label, correction: augment|drop_carriers|reweight|none, n_samples, reason}
    sample_reasons : one string per training sample ('' where nothing changed)
    """

    keep: np.ndarray
    weights: np.ndarray
    recipients: np.ndarray
    donors: np.ndarray
    concepts: np.ndarray
    regions: dict[int, Region]
    corrections: list[dict[str, Any]]
    sample_reasons: list[str]
    boxes: np.ndarray | None = None  # (m, 4): the box recipient i receives from its donor (NaN: the region's own)

    def table(self, train: pd.DataFrame) -> pd.DataFrame:
        """train_ids.parquet of the variant: the kept samples with sample_id, weight, augment_concept
        (the concept pasted in, <NA> for none), donor_id ('' for none) and reason."""
        n = len(train)
        concept = pd.array([pd.NA] * n, dtype="Int64")
        donor = np.array([""] * n, dtype=object)
        if len(self.recipients):
            concept[self.recipients] = self.concepts
            donor[self.recipients] = train["sample_id"].to_numpy()[self.donors]
        out = pd.DataFrame({"sample_id": train["sample_id"].to_numpy(), "weight": self.weights,
                            "augment_concept": concept, "donor_id": donor.astype(str),
                            "reason": np.array(self.sample_reasons, dtype=object).astype(str)})
        return out[self.keep].reset_index(drop=True)


def plan_augment(train: pd.DataFrame, flagged: dict[int, str], scores: pd.DataFrame, carriers: pd.DataFrame | None,
                 concept_labels: dict[int, int], shape: tuple[int, int], seed: int, rate: float | None, fallback: str,
                 max_upweight: float, unclustered: dict[int, str] | None = None,
                 cls: Callable[[int], str] = class_text) -> AugmentPlan:
    """Decide, for one seed, which images get which flagged concept's region from which carrier.

    For each flagged concept (in id order) with a region (``concept_region``) and carriers (the rows of
    ``carriers`` that carry it; without a carrier test for it, its members): a share of each other class's
    kept training images — ``rate``, or with None the carriers' share of their own class — each not yet
    augmented for another concept, drawn at random; carriers are dealt out to them in a random order, each
    about equally often. The concepts a whole-image detector flagged are corrected together by one
    statistics shuffle (``_shuffle_statistics``, the module docstring), after the regions. Any other concept
    without a region, or without carriers, gets ``fallback`` instead:
    ``drop_carriers`` (soxai.manifest.policies.drop_carriers for that concept), ``reweight`` (its class's
    samples weighted by ``group_balanced_weights`` over the class's concepts, no carrier above 1x) or ``none``.

    Parameters
    ----------
    train : training samples with columns sample_id, label, concept_id (-1 = noise); positions are row order
    flagged : {concept_id: reason} of the flagged concepts (manifest/manifest.json)
    scores : bias/scores.parquet
    carriers : bias/carriers.parquet, or None for a run without the carrier test
    concept_labels : {concept_id: class} from concepts/concepts.parquet
    shape : (H, W) of the images
    seed : seeds every draw (recipients and the order donors are dealt out)
    unclustered : {class: reason} of the unclustered test's flags, manifest.json's (:func:`_paste_unclustered`)
    cls : how the reasons name a class (soxai.data.class_names.class_text with the run's names; codes by default)
    """
    n = len(train)
    labels = train["label"].to_numpy()
    ids = train["sample_id"].to_numpy()
    position = pd.Series(np.arange(n), index=ids)
    keep, weights, reasons = np.ones(n, dtype=bool), np.ones(n, dtype=np.float64), [""] * n
    corrections: list[dict[str, Any]] = []
    unclustered = unclustered or {}
    if not flagged and not unclustered:
        return _unchanged(n)

    # first the concepts that cannot be augmented, so that recipients are drawn from what stays
    regions, donors_of, class_of, whole, pending = _sort_flagged(train, flagged, scores, carriers, concept_labels,
                                                                 shape, position)
    reweighted: set[int] = set()
    for cid, k, why in pending:
        corrections.append(_fall_back(cid, k, why, train, flagged, carriers, fallback, max_upweight,
                                      keep, weights, reasons, reweighted, cls=cls))
    donors_k = {k: unclustered_donors(carriers, k, position) for k in sorted(unclustered)}
    for k in (k for k in sorted(unclustered) if not donors_k[k][1]):
        corrections.append(_fall_back(-1, k, NO_OWN_BOX, train, {-1: unclustered[k]}, _class_rows(carriers, k),
                                      fallback, max_upweight, keep, weights, reasons, reweighted,
                                      name=f"the unclustered flag of {cls(k)}", cls=cls))
    rng = np.random.default_rng([seed, 20_000])
    used = np.zeros(n, dtype=bool)
    pastes = _Pastes()
    for cid in sorted(regions):
        chosen, dealt, at, row = _paste_region(cid, class_of[cid], regions[cid], donors_of[cid], carriers, labels,
                                               ids, keep, used, rate, rng, reasons, shape, cls)
        pastes.add(chosen, dealt, cid, at)
        corrections.append(row)
    for k in (k for k in sorted(unclustered) if donors_k[k][1]):
        chosen, dealt, at, row = _paste_unclustered(k, *donors_k[k], labels, ids, keep, used, rate, rng, reasons,
                                                    regions, cls)
        pastes.add(chosen, dealt, -1, at)
        corrections.append(row)
    if whole:
        chosen, dealt, rows = _shuffle_statistics(whole, class_of, donors_of, scores, labels, ids, keep, used, rate,
                                                  rng, reasons, cls)
        regions[whole[0]] = Region(str(whole_image_flag(scores, whole[0])), whole_image=True)
        pastes.add(chosen, dealt, whole[0], np.full((len(chosen), 4), np.nan))
        corrections.extend(rows)
    corrections.sort(key=lambda c: (c["concept_id"], c["label"]))
    return AugmentPlan(keep, weights, _cat(pastes.recipients), _cat(pastes.donors), _cat(pastes.concepts), regions,
                       corrections, reasons, np.concatenate(pastes.boxes) if pastes.boxes else np.zeros((0, 4)))


@dataclass
class _Pastes:
    """The pastes planned so far, one array per flagged concept (or class, for the unclustered flag)."""

    recipients: list[np.ndarray] = field(default_factory=list)
    donors: list[np.ndarray] = field(default_factory=list)
    concepts: list[np.ndarray] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)

    def add(self, chosen: np.ndarray, dealt: np.ndarray, cid: int, boxes: np.ndarray) -> None:
        self.recipients.append(chosen)
        self.donors.append(dealt)
        self.concepts.append(np.full(len(chosen), cid, dtype=np.int64))
        self.boxes.append(boxes)


def _class_rows(carriers: pd.DataFrame | None, k: int) -> pd.DataFrame | None:
    """``carriers`` without the unclustered rows of other classes than ``k`` (a fallback drops class k's only)."""
    return None if carriers is None else carriers[(carriers["concept_id"] != -1) | (carriers["label"] == k)]


def _unchanged(n: int) -> AugmentPlan:
    """The plan when nothing is flagged: every sample as in the baseline."""
    row = {"concept_id": None, "label": None, "correction": "none", "n_samples": 0,
           "reason": "nothing flagged: no shortcut region to decorrelate, so augment trained on the unchanged "
                     "training set (the baseline's samples and pixels)"}
    return AugmentPlan(np.ones(n, dtype=bool), np.ones(n, dtype=np.float64), np.zeros(0, np.int64),
                       np.zeros(0, np.int64), np.zeros(0, np.int64), {}, [row], [""] * n)


def _cat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def _sort_flagged(train: pd.DataFrame, flagged: dict[int, str], scores: pd.DataFrame, carriers: pd.DataFrame | None,
                  concept_labels: dict[int, int], shape: tuple[int, int], position: pd.Series):
    """Flagged concepts in id order, sorted into those with a region and carriers, those the statistics shuffle
    corrects and those that get the fallback.

    Returns ``(regions, donors_of, class_of, whole, pending)``: {concept: Region}, {concept: carrier positions},
    {concept: class} of every flagged concept, the concepts a whole-image detector flagged (corrected
    by the statistics shuffle; their carriers are in ``donors_of``), and ``(concept, class, why)`` of those
    that cannot be augmented.
    """
    labels = train["label"].to_numpy()
    cids = train["concept_id"].fillna(-1).to_numpy(dtype=np.int64)
    regions: dict[int, Region] = {}
    donors_of: dict[int, np.ndarray] = {}
    class_of: dict[int, int] = {}
    pending: list[tuple[int, int, str]] = []
    whole: list[int] = []
    for cid in sorted(flagged):
        k = concept_labels.get(cid)
        if k is None:  # a concept the concepts table does not know: its members' majority class
            members = labels[cids == cid]
            k = int(np.bincount(members).argmax()) if len(members) else -1
        class_of[cid] = int(k)
        region = concept_region(scores, cid, shape)
        donors = _carriers_of(cid, cids, carriers, position)
        whole_flag = whole_image_flag(scores, cid)
        if whole_flag and len(donors) and k >= 0:  # the statistics alone carry it: a box of it carries it in part
            whole.append(cid)
            donors_of[cid] = donors
            continue
        if whole_flag:
            why = (f"flagged by {whole_flag}, but the carrier test found no carrier of it, so there is no share "
                   "to shuffle") if k >= 0 else f"flagged by {whole_flag}, but it has no class to take a share of"
            pending.append((cid, int(k), why))
            continue
        if region is not None and len(donors):
            regions[cid], donors_of[cid] = region, donors
            continue
        why = why_no_region(scores, cid) if region is None else \
            f"its region ({region.describe()}) has no carrier to take it from"
        pending.append((cid, int(k), why))
    return regions, donors_of, class_of, whole, pending


def _fall_back(cid: int, k: int, why: str, train: pd.DataFrame, flagged: dict[int, str],
               carriers: pd.DataFrame | None, fallback: str, max_upweight: float,
               keep: np.ndarray, weights: np.ndarray, reasons: list[str], reweighted: set[int],
               name: str | None = None, cls: Callable[[int], str] = class_text) -> dict[str, Any]:
    """Apply ``fallback`` to flagged concept ``cid`` of class ``k`` (no region to paste); return its corrections row.

    Updates ``keep`` (drop_carriers), ``weights`` (reweight: the whole class, once per class, recorded in
    ``reweighted``) and ``reasons`` in place. ``name``: what the reasons call the flag, with its class (default
    "flagged concept <cid>", its class said in the row's reason).
    """
    from soxai.manifest.policies import PolicyContext, drop_carriers

    labels = train["label"].to_numpy()
    cids = train["concept_id"].fillna(-1).to_numpy(dtype=np.int64)
    head = f"{name or f'concept {cid} ({cls(k)})'} cannot be augmented: {why}; "
    name = name or f"flagged concept {cid}"
    if fallback == "drop_carriers":
        ctx = PolicyContext(boxes={}, sample_maps=_no_maps, region_threshold=1.0, carriers=carriers)
        keep_c, _ = drop_carriers(train, {cid: flagged[cid]}, ctx)
        dropped = keep & ~keep_c
        keep &= keep_c
        for p in np.flatnonzero(dropped):
            reasons[p] = f"dropped: carries {name}, which has no region to paste"
        return {"concept_id": cid, "label": k, "correction": "drop_carriers", "n_samples": int(dropped.sum()),
                "reason": head + f"dropped its {int(dropped.sum())} carriers instead "
                                 "(retrain.augment_fallback=drop_carriers)"}
    if fallback == "reweight":
        in_class = np.flatnonzero(labels == k)
        if k not in reweighted:  # once per class, however many of its concepts fall back
            carrier = carrier_mask(carriers, train["sample_id"].to_numpy()[in_class])
            weights[in_class] = group_balanced_weights(labels[in_class], cids[in_class], max_upweight, carrier)
            reweighted.add(k)
        members = in_class[cids[in_class] == cid]
        for p in in_class:
            reasons[p] = f"{cls(k)} reweighted by its concepts (fallback for {name}, no region): " \
                         f"drawn {weights[p]:.2f}x as often as in the baseline"
        drawn = f"; the {len(members)} members of concept {cid} drawn {float(weights[members[0]]):.2f}x as often" \
            if len(members) and cid >= 0 else ""
        return {"concept_id": cid, "label": k, "correction": "reweight", "n_samples": len(in_class),
                "reason": head + f"reweighted the {len(in_class)} samples of {cls(k)} by their concepts "
                                 f"instead (retrain.augment_fallback=reweight{drawn})"}
    return {"concept_id": cid, "label": k, "correction": "none", "n_samples": 0,
            "reason": head + "left uncorrected (retrain.augment_fallback=none)"}


def _deal_region(cid: int, k: int, region: Region, carrier_pos: np.ndarray, labels: np.ndarray, ids: np.ndarray,
                 keep: np.ndarray, used: np.ndarray, rate: float | None, rng: np.random.Generator,
                 reasons: list[str], donor_pos: np.ndarray, own: dict[int, tuple[tuple[int, int, int, int], str]],
                 n_elsewhere: int, cls: Callable[[int], str] = class_text
                 ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Draw the recipients of concept ``cid``'s region in every other class (the share of all its carriers,
    ``carrier_pos``) and deal out to them the carriers that give a paste (``donor_pos``, ``n_elsewhere`` of them
    found by the concept's channels only; those in ``own`` give a box of their own,
    :func:`soxai.train.regions.carrier_boxes`).

    Marks the recipients in ``used`` and writes their ``reasons`` in place; returns ``(recipients, donors,
    corrections row)``.
    """
    where = region.describe()
    chosen, dealt, into = _deal(k, carrier_pos, donor_pos, own, where, f"flagged concept {cid}, {cls(k)}", labels,
                                ids, keep, used, rate, rng, reasons, cls)
    n_how = {how: sum(1 for _, h in own.values() if h == how) for how in OWN_BOX}
    reason = (f"concept {cid} ({cls(k)}, {region.detector}): its region ({where}) pasted from "
              + (f"its {len(carrier_pos)} carriers" if len(donor_pos) == len(carrier_pos) else
                 f"the {len(donor_pos) - n_elsewhere} of its {len(carrier_pos)} carriers whose region holds it (the "
                 "others' mark, found by the concept's channels, sits elsewhere)"))
    if n_how["grown"]:
        reason += (f", widened in {n_how['grown']} of them to the pixels the model's layer sees where the concept's "
                   "channels are strongest")
    if n_how["window"]:
        reason += (f"; from the {n_how['window']} the concept's channels found elsewhere, the pixels the layer sees "
                   "where they are strongest (the mark)")
    if n_how["placed"]:
        reason += f", re-centred on the mark's place in the {n_how['placed']} the concept's channels found"
    return chosen, dealt, {"concept_id": cid, "label": k, "correction": "augment", "n_samples": len(chosen),
                           "reason": reason + into}


def _deal(k: int, carrier_pos: np.ndarray, donor_pos: np.ndarray,
          own: dict[int, tuple[tuple[int, int, int, int], str]], where: str, flag: str, labels: np.ndarray,
          ids: np.ndarray, keep: np.ndarray, used: np.ndarray, rate: float | None, rng: np.random.Generator,
          reasons: list[str], cls: Callable[[int], str] = class_text) -> tuple[np.ndarray, np.ndarray, str]:
    """Draw ``rate`` (or the carriers' share of class ``k``) of every other class's images and deal the donors out
    to them, each about equally often; writes each recipient's reason (the box it received, ``where`` unless the
    donor gives one of its own in ``own``, and ``flag``). Returns ``(recipients, donors, ", into ...")``."""
    n_class = int((labels == k).sum())
    share = rate if rate is not None else len(carrier_pos) / max(n_class, 1)
    chosen, short = _draw_recipients(labels, keep, used, share, rng, skip=k, cls=cls)
    dealt = rng.permutation(donor_pos)[np.arange(len(chosen)) % len(donor_pos)] if len(chosen) \
        else np.zeros(0, np.int64)
    for r, d in zip(chosen, dealt, strict=True):
        if int(d) in own:
            (y0, x0, y1, x1), how = own[int(d)]
            at = f"rows {y0}-{y1 - 1}, cols {x0}-{x1 - 1} ({OWN_BOX[how]})"
        else:
            at = where
        reasons[r] = f"{at} of carrier {ids[d]} pasted in ({flag})"
    what = f"{share:.0%} of each" + (" (retrain.augment_rate)" if rate is not None else
                                     f", the carriers' share of {cls(k)}")
    into = (f", into {len(chosen)} training images of the other classes ({what}), which replace their originals; "
            "the carriers stay")
    return chosen, dealt, into + ("; too few images left in " + ", ".join(short) if short else "")


def _draw_recipients(labels: np.ndarray, keep: np.ndarray, used: np.ndarray, share: float,
                     rng: np.random.Generator, skip: int | None = None,
                     cls: Callable[[int], str] = class_text) -> tuple[np.ndarray, list[str]]:
    """``share`` of each class's kept images (but class ``skip``), drawn from those not yet ``used``, which this
    marks used; returns their positions (sorted within each class) and a note per class with too few left."""
    got, short = [], []
    for j in np.unique(labels):
        if j == skip:
            continue
        pool = np.flatnonzero((labels == j) & keep & ~used)
        want = int(round(share * int(((labels == j) & keep).sum())))
        take = rng.choice(pool, size=min(want, len(pool)), replace=False) if want else np.zeros(0, np.int64)
        if len(take) < want:
            short.append(f"{cls(int(j))}: {len(take)} of {want}")
        got.append(np.sort(take))
    chosen = np.concatenate(got) if got else np.zeros(0, np.int64)
    used[chosen] = True
    return chosen, short


def _shuffle_statistics(whole: list[int], class_of: dict[int, int], carriers_of: dict[int, np.ndarray],
                        scores: pd.DataFrame, labels: np.ndarray, ids: np.ndarray, keep: np.ndarray,
                        used: np.ndarray, rate: float | None, rng: np.random.Generator,
                        reasons: list[str], cls: Callable[[int], str] = class_text
                        ) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """The one correction of every whole-image flag (module docstring): a share of each class's kept images,
    not yet augmented, take the per-channel statistics of kept training images drawn at random from all classes.

    Marks the recipients in ``used``, writes their ``reasons``; returns ``(recipients, donors, corrections rows)``.
    """
    shares = {cid: len(carriers_of[cid]) / max(int(((labels == class_of[cid]) & keep).sum()), 1) for cid in whole}
    share = rate if rate is not None else 1.0  # every image: the statistics then are independent of the label
    chosen, short = _draw_recipients(labels, keep, used, share, rng, cls=cls)
    dealt = rng.choice(np.flatnonzero(keep), size=len(chosen), replace=True) if len(chosen) \
        else np.zeros(0, np.int64)
    names = ", ".join(str(c) for c in whole)
    for r, d in zip(chosen, dealt, strict=True):
        reasons[r] = f"per-channel brightness and contrast of {ids[d]} ({cls(int(labels[d]))}) given to it " \
                     f"(whole-image flag of concept {names})"
    what = f"{share:.0%} of every class" + (" (retrain.augment_rate)" if rate is not None else
                                            ", so that no such statistic depends on the label")
    rows = []
    for cid in whole:
        k = class_of[cid]
        detector = whole_image_flag(scores, cid) or "a whole-image detector"
        head = f"concept {cid} ({cls(k)}, {detector}: {len(carriers_of[cid])} carriers, {shares[cid]:.0%} of the " \
               "class): a whole-image flag, so no region to paste; "
        if cid == whole[0]:
            reason = head + (f"{len(chosen)} training images ({what}) take the per-channel brightness and contrast "
                             "of training images drawn at random from all classes, replacing their originals, so "
                             "no such statistic predicts a class any more")
            if len(whole) > 1:
                reason += f"; the same shuffle corrects concept{'s' if len(whole) > 2 else ''} " + \
                          ", ".join(str(c) for c in whole[1:])
            if short:
                reason += "; too few images left in " + ", ".join(short)
            n = len(chosen)
        else:
            reason = head + f"corrected by the statistics shuffle of concept {whole[0]} (one shuffle serves every " \
                            "whole-image flag)"
            n = 0
        rows.append({"concept_id": cid, "label": k, "correction": "augment", "n_samples": n, "reason": reason})
    return chosen, dealt, rows


def _no_maps(positions: np.ndarray) -> np.ndarray:
    raise RuntimeError("drop_carriers reads no saliency maps")


def _carriers_of(cid: int, cids: np.ndarray, carriers: pd.DataFrame | None, position: pd.Series) -> np.ndarray:
    """Positions of the samples that carry flagged concept ``cid``: the carrier test's, else its members."""
    if carriers is not None and len(carriers):
        rows = carriers[carriers["concept_id"] == cid]
        if len(rows):
            ids = rows.loc[rows["carries"].astype(bool), "sample_id"]
            return np.sort(position.reindex(ids).dropna().to_numpy(dtype=np.int64))
    return np.flatnonzero(cids == cid)


def _paste_region(cid: int, k: int, region: Region, carrier_pos: np.ndarray, carriers: pd.DataFrame | None,
                  labels: np.ndarray, ids: np.ndarray, keep: np.ndarray, used: np.ndarray, rate: float | None,
                  rng: np.random.Generator, reasons: list[str], shape: tuple[int, int],
                  cls: Callable[[int], str] = class_text):
    """Concept ``cid``'s region dealt out: ``(recipients, donors, boxes (m, 4), corrections row)``."""
    donor_pos, own, n_elsewhere = carrier_boxes(cid, region, carrier_pos, carriers, ids, shape)
    chosen, dealt, row = _deal_region(cid, k, region, carrier_pos, labels, ids, keep, used, rate, rng, reasons,
                                      donor_pos, own, n_elsewhere, cls)
    # the box each donor gives (Region.paste copies it, at the same place); NaN: the region's own
    boxes = np.array([own[int(d)][0] if int(d) in own else (np.nan,) * 4 for d in dealt],
                     dtype=np.float64).reshape(-1, 4)
    return chosen, dealt, boxes, row


def _paste_unclustered(k: int, carrier_pos: np.ndarray, own: dict[int, tuple[tuple[int, int, int, int], str]],
                       labels: np.ndarray, ids: np.ndarray, keep: np.ndarray, used: np.ndarray, rate: float | None,
                       rng: np.random.Generator, reasons: list[str], regions: dict[int, Region],
                       cls: Callable[[int], str] = class_text):
    """Class ``k``'s unclustered flag dealt out: each carrier's own box (``own``) pasted into the other classes'
    images at the carriers' share of the class (``carrier_pos``, :func:`soxai.train.regions.unclustered_donors`),
    under ``regions[-1]`` (set here: every pair names its box, so one region serves every flagged class). Returns
    ``(recipients, donors, boxes (m, 4), corrections row)``."""
    region = regions.setdefault(-1, Region("unclustered", box=next(iter(own.values()))[0]))
    donor_pos = np.fromiter(own, dtype=np.int64)
    chosen, dealt, into = _deal(k, carrier_pos, donor_pos, own, region.describe(),
                                f"the unclustered flag of {cls(k)}", labels, ids, keep, used, rate, rng, reasons, cls)
    reason = (f"the unclustered samples of {cls(k)} (unclustered test): each of the {len(donor_pos)} of its "
              f"{len(carrier_pos)} carriers with a box gives its own most salient box (the one the test pasted: its "
              f"mark, wherever it sits){into}")
    boxes = np.array([own[int(d)][0] for d in dealt], dtype=np.float64).reshape(-1, 4)
    return chosen, dealt, boxes, {"concept_id": -1, "label": k, "correction": "augment", "n_samples": len(chosen),
                                  "reason": reason}


def augmented_images(images: Any, rows: np.ndarray, plan: AugmentPlan, chunk: int = 4096) -> np.ndarray:
    """The recipients' images with their concept's region pasted from their donor.

    Parameters
    ----------
    images : array-like of shape (n_total, C, H, W) (a memmap, or lazily decoded files)
    rows : int array of shape (n,), the image row of each training sample (positions as in the plan)
    chunk : recipients (and as many donors) read at a time

    Returns
    -------
    float32 array of shape (m, C, H, W), in the order of ``plan.recipients``
    """
    shape = tuple(np.asarray(images[rows[:1]]).shape[1:]) if len(rows) else (0,)
    out = np.empty((len(plan.recipients), *shape), dtype=np.float32)
    for cid, region in plan.regions.items():
        at = np.flatnonzero(plan.concepts == cid)
        for start in range(0, len(at), chunk):  # a shuffle of every image would otherwise hold 3 copies of the set
            part = at[start:start + chunk]
            recipients = np.asarray(images[rows[plan.recipients[part]]], dtype=np.float32)
            donors = np.asarray(images[rows[plan.donors[part]]], dtype=np.float32)
            out[part] = region.paste(recipients, donors, None if plan.boxes is None else plan.boxes[part])
    return out
