"""Detector: the transplant test on a concept's distinctive pixels instead of a square box.

A square box suits a compact mark; a stripe along an edge, a thin frame or a scattered stamp fills
little of any square, so pasting the best box carries only part of it. Here the pasted region is the
set of pixels where the concept's mean relevance most exceeds its class-mates' (both normalised to
sum 1), as many pixels as the transplant box holds: the mark's own pixels, whatever their shape.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from soxai.bias.config import BiasConfig
from soxai.bias.context import (
    DetectorContext,
    control_pool,
    left_out_text,
    pick_rows,
    score_row,
    scored_concepts,
    take_images,
)
from soxai.bias.verdict import compare_rates, decide


def top_pixels(weights: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask (H, W) of the ``k`` largest positive entries of ``weights`` (fewer if fewer are > 0).

    Ties are broken by position (a stable sort), so the mask is the same on every run.
    """
    flat = np.asarray(weights, dtype=np.float64).ravel()
    order = np.argsort(-flat, kind="stable")[:k]
    mask = np.zeros(flat.shape, dtype=bool)
    mask[order[flat[order] > 0]] = True
    return mask.reshape(np.shape(weights))


def distinct_pixels(concept_map: np.ndarray, others_map: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` pixels where the concept's share of relevance most exceeds its class-mates' share."""
    def share(m: np.ndarray) -> np.ndarray:
        m = np.abs(np.asarray(m, dtype=np.float64))
        total = m.sum()
        return m / total if total > 0 else m

    return top_pixels(share(concept_map) - share(others_map), k)


def paste_pixels(recipients: np.ndarray, donors: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Copy each donor's masked pixels into its recipient; ``masks`` is (H, W) shared or (n, H, W)."""
    out = np.array(recipients, dtype=np.float32, copy=True)
    masks = np.broadcast_to(masks, (len(out), *out.shape[2:]))
    for i in range(len(out)):
        out[i, :, masks[i]] = donors[i, :, masks[i]]
    return out


def detect_pixel_transplant(
    ctx: DetectorContext, cfg: BiasConfig, left_out: frozenset[int] = frozenset(), only: set[int] | None = None,
    suspected: frozenset[int] = frozenset(),
) -> list[dict[str, Any]]:
    """Paste the concept's distinctive pixels from its members into other classes' correct images.

    As the transplant test (``transplant.region_frac`` sets how many pixels: as many as its box holds),
    but the region is :func:`distinct_pixels` of the concept's mean map against the mean map of up to
    ``n_pairs`` class-mates outside it. Control: those class-mates, each pasting its own ``k`` most
    salient pixels. Score: flip rate minus control; flag at ``threshold`` with a one-sided Fisher test
    at ``max_p_value`` and an odds ratio of at least ``min_odds_ratio`` (soxai.bias.verdict). ``left_out``,
    ``only`` and ``suspected`` as for :func:`soxai.bias.transplant.detect_transplant`.
    """
    pcfg = cfg.pixel_transplant
    h, w = ctx.images.shape[2:]
    side = max(1, int(round(cfg.transplant.region_frac * min(h, w))))
    k = side * side
    rows = []
    correct = ctx.train[ctx.train["pred"] == ctx.train["label"]]
    for _, concept in scored_concepts(ctx, only).iterrows():
        cid, label = int(concept["concept_id"]), int(concept["label"])
        rng = np.random.default_rng([ctx.seed, cid + 1, 11])
        members = ctx.train[(ctx.train["concept_id"] == cid) & (ctx.train["label"] == label)]
        outsiders, skipped = control_pool(ctx, cid, label, left_out | suspected)
        pool = correct[correct["label"] != label]
        n = min(pcfg.n_pairs, len(pool))
        if n == 0 or len(members) == 0 or len(outsiders) == 0:
            why = ("no recipients of other classes to paste into" if n == 0 or len(members) == 0
                   else f"no samples of {ctx.class_text(label)} outside the concept to compare with")
            rows.append(score_row("pixel_transplant", cid, 0.0, False, why))
            continue
        recipients = take_images(ctx.images, pool, n, rng)
        rows_out = pick_rows(outsiders, n, rng)
        own = ctx.sample_maps(rows_out)
        mask = distinct_pixels(ctx.maps[int(concept["map_index"])], own.mean(axis=0), k)
        donors = ctx.images[pick_rows(members, n, rng)]
        pair = np.arange(n) % len(donors)
        flips = int(np.sum(ctx.predict(paste_pixels(recipients, donors[pair], mask)) == label))
        own_masks = np.stack([top_pixels(m, k) for m in own])
        pair_out = np.arange(n) % len(rows_out)
        control_flips = int(np.sum(
            ctx.predict(paste_pixels(recipients, ctx.images[rows_out][pair_out], own_masks[pair_out])) == label))
        flip, control = flips / n, control_flips / n
        score = flip - control
        p_value, odds = compare_rates(flips, control_flips, n)
        is_bias, verdict = decide(score, p_value, odds, pcfg.threshold, pcfg.max_p_value, pcfg.min_odds_ratio)
        ys, xs = np.nonzero(mask)
        where = (f"its {int(mask.sum())} most distinctive pixels (rows {ys.min()}-{ys.max()}, "
                 f"cols {xs.min()}-{xs.max()})" if mask.any() else "no pixel where it looks more than its class-mates")
        reason = (
            f"moved {flip:.0%} of predictions to {ctx.class_text(label)} (other images of {ctx.class_text(label)}"
            f"{left_out_text(skipped, suspected)}, each pasting its own {k} most salient pixels: {control:.0%}; "
            f"p={p_value:.1g}, odds ratio {odds:.1f}) when {where} were "
            f"pasted into {n} images of other classes; {verdict}"
        )
        box = [int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1] if mask.any() else None
        rows.append(score_row("pixel_transplant", cid, score, is_bias, reason, flip_rate=flip, control_rate=control,
                              p_value=p_value, odds_ratio=odds, n_pixels=int(mask.sum()), box=box,
                              pixels=np.flatnonzero(mask).tolist(), control_left_out=skipped))
    return rows
