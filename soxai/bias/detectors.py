"""The detector registry. Every detector returns rows of the same contract:

``concept_id, detector, score, is_bias, reason`` — higher score = more suspicious.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from soxai.bias.channels import LayerAccess, detect_channel_patch
from soxai.bias.config import BiasConfig
from soxai.bias.verdict import compare_rates, decide


@dataclass
class DetectorContext:
    """What detectors may read. Never the ``group`` or ``mask_path`` columns (evaluation only).

    images : array of shape (n_total, C, H, W); rows index it
    train : DataFrame of training samples with columns sample_id, row, label, pred, concept_id
    concepts : the concepts table (non-noise rows are scored)
    maps : float32 array of shape (n_concepts, H, W), the mean |map| of each concept, in the
        order of ``concepts``' non-noise rows (``map_index`` column)
    predict : function images (n, C, H, W) float32 -> predicted class (n,)
    seed : seeds every random draw, so the same run gives the same flags
    sample_maps : function row numbers (n,) -> the samples' own |saliency| maps (n, H, W)
    layer : access to the channels of ``model.layer`` (read, relevance, patch), for the feature-space test
        (soxai.bias.channels); None where the detectors run without the model
    """

    images: np.ndarray
    train: pd.DataFrame
    concepts: pd.DataFrame
    maps: np.ndarray
    predict: Callable[[np.ndarray], np.ndarray]
    seed: int
    sample_maps: Callable[[np.ndarray], np.ndarray]
    layer: LayerAccess | None = None

    def labels(self, rows: np.ndarray) -> np.ndarray:
        """The class labels of the training samples at image ``rows`` (n,)."""
        return self.train.set_index("row").loc[rows, "label"].to_numpy()


def salient_box(mean_map: np.ndarray, side: int) -> tuple[int, int, int, int]:
    """The side x side box holding the most mass of ``mean_map`` (shape (H, W)).

    Returns (y0, x0, y1, x1), half-open. Uses a summed-area table: every box position is scored.
    """
    h, w = mean_map.shape
    side_h, side_w = min(side, h), min(side, w)
    sat = np.pad(np.cumsum(np.cumsum(mean_map.astype(np.float64), 0), 1), ((1, 0), (1, 0)))
    sums = sat[side_h:, side_w:] - sat[:-side_h, side_w:] - sat[side_h:, :-side_w] + sat[:-side_h, :-side_w]
    y0, x0 = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(y0), int(x0), int(y0 + side_h), int(x0 + side_w)


def paste_region(
    recipients: np.ndarray, donors: np.ndarray, box: tuple[int, int, int, int] | list[tuple[int, int, int, int]]
) -> np.ndarray:
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
    box: tuple[int, int, int, int] | list[tuple[int, int, int, int]],
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


def detect_transplant(
    ctx: DetectorContext, cfg: BiasConfig, left_out: frozenset[int] = frozenset(), only: set[int] | None = None,
    suspected: frozenset[int] = frozenset(),
) -> list[dict[str, Any]]:
    """The transplant test.

    A concept's salient region (the box of ``region_frac`` x image side holding most of its mean
    relevance) is pasted from its members into images of other classes that the model gets right.
    A shortcut (a watermark, a tag) carries the class on its own and moves predictions to the
    concept's class; a real feature of the class rarely survives as a small pasted region. The
    score is the flip rate minus a control: the same box pasted from images of the same class
    outside the concept, each pasted from *its own* most salient box: how far the class's
    ordinary evidence carries in a box of that size. A real class feature that happens to
    transfer (a piece of an elongated outline) scores near its control; a shortcut scores far
    above it. Flag: score >= ``threshold``, one-sided Fisher p <= ``max_p_value`` and odds ratio >=
    ``min_odds_ratio`` (soxai.bias.verdict).

    ``left_out``: flagged concepts whose members stay out of every other concept's control, ``suspected``:
    suspects left out the same way (see :func:`clean_control_rounds`); ``only``: score just these concepts
    (default: all).
    """
    tcfg = cfg.transplant
    h, w = ctx.images.shape[2:]
    side = max(1, int(round(tcfg.region_frac * min(h, w))))
    rows = []
    correct = ctx.train[ctx.train["pred"] == ctx.train["label"]]
    for _, concept in _scored(ctx, only).iterrows():
        cid, k = int(concept["concept_id"]), int(concept["label"])
        rng = np.random.default_rng([ctx.seed, cid + 1])
        box = salient_box(ctx.maps[int(concept["map_index"])], side)
        members = ctx.train[(ctx.train["concept_id"] == cid) & (ctx.train["label"] == k)]
        outsiders, skipped = control_pool(ctx, cid, k, left_out | suspected)
        pool = correct[correct["label"] != k]
        n = min(tcfg.n_pairs, len(pool))
        if n == 0 or len(members) == 0:
            rows.append(_row(cid, 0.0, False, "no recipients of other classes to paste into"))
            continue
        recipients = _take(ctx.images, pool, n, rng)
        flips = transplant_flips(ctx.predict, ctx.images[_pick(members, n, rng)], recipients, box, k)
        control_flips = 0
        if len(outsiders):
            rows_out = _pick(outsiders, n, rng)
            own = [salient_box(m, side) for m in ctx.sample_maps(rows_out)]
            control_flips = transplant_flips(ctx.predict, ctx.images[rows_out], recipients, own, k)
        flip, control = flips / n, control_flips / n
        score = flip - control
        # Both rates come from n pastes: a real effect must also be unlikely under "no difference".
        p_value, odds = compare_rates(flips, control_flips, n)
        is_bias, verdict = decide(score, p_value, odds, tcfg.threshold, tcfg.max_p_value, tcfg.min_odds_ratio)
        y0, x0, y1, x1 = box
        control_text = (
            f"other class-{k} images{_left_out_text(skipped, suspected)}, each pasting its own most salient box: "
            f"{control:.0%}"
            if len(outsiders) else f"no class-{k} images outside the concept to serve as a control"
        )
        reason = (
            f"moved {flip:.0%} of predictions to class {k} ({control_text}; p={p_value:.1g}, odds ratio "
            f"{odds:.1f}) when its salient {y1 - y0}x{x1 - x0} region at rows {y0}-{y1 - 1}, cols {x0}-{x1 - 1} "
            f"was pasted into {n} images of other classes; {verdict}"
        )
        rows.append(_row(cid, score, is_bias, reason, flip_rate=flip, control_rate=control, p_value=p_value,
                         odds_ratio=odds, box=list(box), control_left_out=skipped))
    return rows


# A control needs class-mates: concepts are left out of it only while this many remain.
MIN_CONTROL = 20


def _scored(ctx: DetectorContext, only: set[int] | None) -> pd.DataFrame:
    """The non-noise concepts to score (all, or those in ``only``)."""
    concepts = ctx.concepts[~ctx.concepts["is_noise"]]
    return concepts if only is None else concepts[concepts["concept_id"].astype(int).isin(only)]


def control_pool(
    ctx: DetectorContext, cid: int, label: int, left_out: frozenset[int] = frozenset()
) -> tuple[pd.DataFrame, list[int]]:
    """The class-``label`` training samples outside concept ``cid`` that serve as its control, and the concepts
    of ``left_out`` actually left out of it (none when fewer than :data:`MIN_CONTROL` samples would remain)."""
    same = ctx.train[(ctx.train["concept_id"] != cid) & (ctx.train["label"] == label)]
    skip = sorted(int(c) for c in left_out if c != cid and c in set(same["concept_id"].astype(int)))
    if not skip:
        return same, []
    kept = same[~same["concept_id"].isin(skip)]
    return (kept, skip) if len(kept) >= MIN_CONTROL else (same, [])


def _left_out_text(skipped: list[int], suspected: frozenset[int] = frozenset()) -> str:
    """' (not those of flagged concept 1 or concepts 2, 3)': the concepts a control left out, flagged or suspected."""
    def named(ids: list[int], what: str) -> list[str]:
        return [f"{what}concept{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids))}"] if ids else []

    parts = (named([c for c in skipped if c not in suspected], "flagged ")
             + named([c for c in skipped if c in suspected], ""))
    return f" (not those of {' or '.join(parts)})" if parts else ""


def _replace_rows(rows: list[dict[str, Any]], detector: str, new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` with the ``detector`` rows of the concepts in ``new`` replaced by those."""
    by_concept = {int(r["concept_id"]): r for r in new}
    return [by_concept.get(int(r["concept_id"]), r) if r["detector"] == detector else r for r in rows]


def clean_control_rounds(
    ctx: DetectorContext, cfg: BiasConfig, rows: list[dict[str, Any]],
    decide: Callable[[list[dict[str, Any]]], set[int]],
) -> list[dict[str, Any]]:
    """Test again, with cleaner controls, the concepts the stage left unflagged in a class where it flagged some
    (``clean_control``), and the concepts of a class that look like one shortcut split in parts
    (``bias.mutual_control``).

    The control of ``transplant`` and ``pixel_transplant`` is a concept's class-mates, each pasting its own
    most salient region. Where one mark is split over several concepts, each one's class-mates include the
    others, whose own region is the same mark: the control moves recipients too and hides the shortcut.

    - A mark in several places (a watermark in a random corner): one concept per place. On cells with a
      square in a random corner of 30% of class 0 the controls reached 13-20% and the weakest corner went
      unflagged. So the members of the concepts the stage flags (``decide``: the flagged set of the rows so
      far, by any detector or a person's override) are left out of their class's other controls while
      :data:`MIN_CONTROL` class-mates remain, and the detectors with ``clean_control`` on score those concepts
      again, until no new concept is flagged. A real concept's control changes only where a shortcut of its
      class was found.
    - One mark in one place on varied images (a corner patch on 30% of MNIST's zeros): the marked zeros
      form three concepts by their shapes, none flagged (odds ratios 3.4-6.2 under the bar of 8, since each
      control holds the other two), so there is no flag to start from. When that loop ends, the unflagged
      concepts of a class whose paste test is significant (Fisher p <= the detector's ``max_p_value``, at any
      difference), if there are two or more, are :func:`suspects`. Each is tested again with the others left
      out of its control; a row that then passes every bar replaces the old one (the others stay as they
      were), and the ``clean_control`` loop runs again. On the explain runs of the held-out and efficacy
      cases, no real concept passed this way (the highest odds ratio of a real one: 6.1).

    Terminates: each round tests a concept (or a group of suspects) again only with a set left out that it has
    not been tested with, and flagged sets only grow.

    Returns ``rows`` with the rescored concepts' rows replaced (each names what its control left out).
    """
    redoable = {name: BIAS_DETECTORS[name] for name in CLEAN_CONTROL_DETECTORS
                if name in cfg.detectors and getattr(cfg, name).clean_control}
    if not redoable:
        return rows
    label_of = {int(c): int(k) for c, k in zip(ctx.concepts["concept_id"], ctx.concepts["label"], strict=True)}
    tried: dict[tuple[str, int], list[int]] = {}
    tried_groups: set[tuple[frozenset[int], frozenset[int]]] = set()
    while True:
        flagged = decide(rows)
        redo: dict[str, set[int]] = {name: set() for name in redoable}
        for r in rows:
            name, cid = r["detector"], int(r["concept_id"])
            if name not in redoable or cid in flagged:
                continue
            out = sorted(c for c in flagged if label_of.get(c) == label_of.get(cid))
            if out and tried.get((name, cid)) != out:
                tried[(name, cid)] = out
                redo[name].add(cid)
        if any(redo.values()):
            for name, cids in redo.items():
                if cids:
                    rows = _replace_rows(rows, name, redoable[name](ctx, cfg, left_out=frozenset(flagged), only=cids))
            continue
        if not cfg.mutual_control:
            return rows
        groups = [g for g in suspects(rows, cfg, label_of, flagged, redoable)
                  if (g, frozenset(flagged)) not in tried_groups]
        if not groups:
            return rows
        for group in groups:
            tried_groups.add((group, frozenset(flagged)))
            for name, detect in redoable.items():
                again = [r for r in detect(ctx, cfg, left_out=frozenset(flagged), only=set(group), suspected=group)
                         if r["is_bias"]]
                for r in again:
                    others = sorted(group - {int(r["concept_id"])})
                    r["reason"] += (f"; tested with the other concepts of its class whose paste test is also "
                                    f"significant ({', '.join(map(str, others))}) left out of its control")
                rows = _replace_rows(rows, name, again)


def suspects(
    rows: list[dict[str, Any]], cfg: BiasConfig, label_of: dict[int, int], flagged: set[int],
    detectors: Collection[str],
) -> list[frozenset[int]]:
    """Per class, the unflagged concepts whose row under one of ``detectors`` has Fisher p <= that detector's
    ``max_p_value`` (at any difference), when a class has two or more of them (see :func:`clean_control_rounds`).
    """
    by_class: dict[int, set[int]] = {}
    for r in rows:
        name, cid = r["detector"], int(r["concept_id"])
        p_value = r.get("p_value")
        if name in detectors and cid not in flagged and p_value is not None and np.isfinite(p_value) \
                and p_value <= getattr(cfg, name).max_p_value:
            by_class.setdefault(label_of[cid], set()).add(cid)
    return [frozenset(g) for _, g in sorted(by_class.items()) if len(g) >= 2]


def _pick(frame: pd.DataFrame, n: int, rng: np.random.Generator) -> np.ndarray:
    """Up to n image rows of ``frame``, drawn without replacement, sorted (memmap-friendly)."""
    rows = frame["row"].to_numpy()
    return np.sort(rows[rng.choice(len(rows), size=min(n, len(rows)), replace=False)])


def _take(images: np.ndarray, frame: pd.DataFrame, n: int, rng: np.random.Generator) -> np.ndarray:
    return np.asarray(images[_pick(frame, n, rng)], dtype=np.float32)


def _row(cid: int, score: float, is_bias: bool, reason: str, **extra: Any) -> dict[str, Any]:
    return {"concept_id": cid, "detector": "transplant", "score": float(score), "is_bias": bool(is_bias),
            "reason": reason, **extra}


# The other detectors build on the helpers above, so they are imported once those exist.
from soxai.bias.disparity import detect_statistics_transplant, detect_transplant_accuracy  # noqa: E402
from soxai.bias.location import detect_concentration  # noqa: E402
from soxai.bias.pixels import detect_pixel_transplant  # noqa: E402

# detectors whose control is the class-mates' own regions (they take left_out=, only= and suspected=)
CLEAN_CONTROL_DETECTORS = ("transplant", "pixel_transplant")

# detectors that test the whole image, not a region (the region prune policy drops all members they flag)
WHOLE_IMAGE_DETECTORS = ("statistics_transplant",)

BIAS_DETECTORS: dict[str, Callable[[DetectorContext, BiasConfig], list[dict[str, Any]]]] = {
    "transplant": detect_transplant,
    "concentration": detect_concentration,
    "pixel_transplant": detect_pixel_transplant,
    "transplant_accuracy": detect_transplant_accuracy,
    "statistics_transplant": detect_statistics_transplant,
    "channel_patch": detect_channel_patch,
}
