"""Detector: the transplant test, a concept's salient box pasted into other classes' images."""

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
from soxai.bias.paste import salient_box, transplant_flips
from soxai.bias.verdict import compare_rates, decide, majority_test


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
    above it. Flag: one-sided Fisher p, Bonferroni-corrected over the run's concepts, <= ``max_p_value``, odds
    ratio >= ``min_odds_ratio`` and score >= ``threshold`` (0 by default: no effect-size bar; soxai.bias.verdict);
    or, with ``majority`` (the default), the box alone moves most recipients (soxai.bias.verdict.majority_test,
    corrected the same way), whatever the control and ``threshold``: the score, flip minus control, can then be
    negative. ``majority_p_value`` is that test's corrected p (1.0 with ``majority`` off).

    ``left_out``: flagged concepts whose members stay out of every other concept's control, ``suspected``:
    suspects left out the same way (see :func:`soxai.bias.rounds.clean_control_rounds`); ``only``: score just
    these concepts (default: all).
    """
    tcfg = cfg.transplant
    h, w = ctx.images.shape[2:]
    side = max(1, int(round(tcfg.region_frac * min(h, w))))
    rows = []
    correct = ctx.train[ctx.train["pred"] == ctx.train["label"]]
    # the family the p-values are corrected over: every concept of the run, also when a round re-tests a few
    n_concepts = max(1, len(scored_concepts(ctx)))
    for _, concept in scored_concepts(ctx, only).iterrows():
        cid, k = int(concept["concept_id"]), int(concept["label"])
        rng = np.random.default_rng([ctx.seed, cid + 1])
        box = salient_box(ctx.maps[int(concept["map_index"])], side)
        members = ctx.train[(ctx.train["concept_id"] == cid) & (ctx.train["label"] == k)]
        outsiders, skipped = control_pool(ctx, cid, k, left_out | suspected)
        pool = correct[correct["label"] != k]
        n = min(tcfg.n_pairs, len(pool))
        if n == 0 or len(members) == 0:
            rows.append(score_row("transplant", cid, 0.0, False, "no recipients of other classes to paste into"))
            continue
        recipients = take_images(ctx.images, pool, n, rng)
        flips = transplant_flips(ctx.predict, ctx.images[pick_rows(members, n, rng)], recipients, box, k)
        control_flips = 0
        if len(outsiders):
            rows_out = pick_rows(outsiders, n, rng)
            own = [salient_box(m, side) for m in ctx.sample_maps(rows_out)]
            control_flips = transplant_flips(ctx.predict, ctx.images[rows_out], recipients, own, k)
        flip, control = flips / n, control_flips / n
        score = flip - control
        # Both rates come from n pastes: a real effect must also be unlikely under "no difference".
        p_value, odds = compare_rates(flips, control_flips, n)
        is_bias, verdict = decide(score, p_value, odds, tcfg.threshold, tcfg.max_p_value, tcfg.min_odds_ratio,
                                  n_tests=n_concepts)
        most, p_most = majority_test(flips, n, n_concepts, tcfg.max_p_value) if tcfg.majority else (False, 1.0)
        if most and not is_bias:
            is_bias = True
            verdict = (f"against its class-mates it is not flagged (p={p_value:.1g} x{n_concepts} concepts, odds "
                       f"ratio {odds:.1f}), but the box alone moved most of the recipients (binomial test against "
                       f"half, x{n_concepts} concepts (Bonferroni) = {p_most:.1g} <= {tcfg.max_p_value:.1g}): it "
                       f"outweighs the rest of the image for most images of other classes, a shortcut that the "
                       f"class's other samples carry too")
        y0, x0, y1, x1 = box
        control_text = (
            f"other images of {ctx.class_text(k)}{left_out_text(skipped, suspected)}, each pasting its own most "
            f"salient box: {control:.0%}"
            if len(outsiders) else f"no images of {ctx.class_text(k)} outside the concept to serve as a control"
        )
        reason = (
            f"moved {flip:.0%} of predictions to {ctx.class_text(k)} ({control_text}; p={p_value:.1g}, odds ratio "
            f"{odds:.1f}) when its salient {y1 - y0}x{x1 - x0} region at rows {y0}-{y1 - 1}, cols {x0}-{x1 - 1} "
            f"was pasted into {n} images of other classes; {verdict}"
        )
        rows.append(score_row("transplant", cid, score, is_bias, reason, flip_rate=flip, control_rate=control,
                              p_value=p_value, odds_ratio=odds, box=list(box), control_left_out=skipped,
                              majority_p_value=p_most))
    return rows
