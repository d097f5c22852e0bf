"""Detectors that transplant a concept into other classes' images and measure the damage.

``transplant_accuracy``: the accuracy of other-class images after the concept's salient region is
pasted in, against the same paste from the class's other samples (any error counts, not only a move
to the concept's class). ``statistics_transplant``: the members' global intensity statistics (per
channel mean and spread) are given to other classes' images — a tint, a colour cast or an exposure
shift is a shortcut no box holds, and a real shape feature does not travel this way. A recipient that
leaves its class counts, wherever it goes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from soxai.bias.config import BiasConfig
from soxai.bias.context import DetectorContext, pick_rows, score_row, scored_concepts
from soxai.bias.paste import paste_region, salient_box
from soxai.bias.verdict import compare_rates, decide


def detect_transplant_accuracy(ctx: DetectorContext, cfg: BiasConfig) -> list[dict[str, Any]]:
    """Accuracy disparity under transplant.

    Recipients: up to ``n_pairs`` images of other classes (right or wrong). Pasting the concept's
    salient box from its members lowers their accuracy by ``drop``; pasting each class-mate's own
    most salient box lowers it by ``control_drop``. Score: drop - control_drop; flag when it reaches
    ``threshold`` and a one-sided Fisher test of errors vs control errors gives p <= ``max_p_value``.
    """
    dcfg = cfg.transplant_accuracy
    h, w = ctx.images.shape[2:]
    side = max(1, int(round(cfg.transplant.region_frac * min(h, w))))
    rows = []
    for _, concept in scored_concepts(ctx).iterrows():
        cid, k = int(concept["concept_id"]), int(concept["label"])
        rng = np.random.default_rng([ctx.seed, cid + 1, 11])
        box = salient_box(ctx.maps[int(concept["map_index"])], side)
        members = ctx.train[(ctx.train["concept_id"] == cid) & (ctx.train["label"] == k)]
        outsiders = ctx.train[(ctx.train["concept_id"] != cid) & (ctx.train["label"] == k)]
        pool = ctx.train[ctx.train["label"] != k]
        n = min(dcfg.n_pairs, len(pool))
        if n == 0 or len(members) == 0 or len(outsiders) == 0:
            rows.append(score_row("transplant_accuracy", cid, 0.0, False,
                             "no other-class images or no class-mates outside the concept to compare with"))
            continue
        rec_rows = pick_rows(pool, n, rng)
        truth = ctx.labels(rec_rows)
        recipients = np.asarray(ctx.images[rec_rows], dtype=np.float32)
        before = float(np.mean(ctx.predict(recipients) == truth))
        donors = ctx.images[pick_rows(members, n, rng)]
        pair = np.arange(n) % len(donors)
        wrong = int(np.sum(ctx.predict(paste_region(recipients, donors[pair], box)) != truth))
        out_rows = pick_rows(outsiders, n, rng)
        own = [salient_box(m, side) for m in ctx.sample_maps(out_rows)]
        pair_c = np.arange(n) % len(out_rows)
        wrong_c = int(np.sum(ctx.predict(
            paste_region(recipients, ctx.images[out_rows][pair_c], [own[i] for i in pair_c])) != truth))
        acc, acc_c = 1 - wrong / n, 1 - wrong_c / n
        score = acc_c - acc
        p_value, odds = compare_rates(wrong, wrong_c, n)
        is_bias, verdict = decide(score, p_value, odds, dcfg.threshold, dcfg.max_p_value)
        y0, x0, y1, x1 = box
        reason = (
            f"accuracy of {n} other-class images fell from {before:.0%} to {acc:.0%} when its salient "
            f"{y1 - y0}x{x1 - x0} region at rows {y0}-{y1 - 1}, cols {x0}-{x1 - 1} was pasted in (other images of "
            f"{ctx.class_text(k)}, each pasting its own most salient box: {acc_c:.0%}; p={p_value:.1g}); "
            f"accuracy {verdict}"
        )
        rows.append(score_row("transplant_accuracy", cid, score, is_bias, reason, accuracy_before=before,
                         accuracy_pasted=acc, accuracy_control=acc_c, p_value=p_value, odds_ratio=odds,
                         box=list(box)))
    return rows


def match_statistics(recipients: np.ndarray, donors: np.ndarray) -> np.ndarray:
    """Give each recipient its donor's per-channel mean and standard deviation, clipped to [0, 1].

    recipients, donors : arrays of shape (n, C, H, W). Returns float32 (n, C, H, W).
    """
    r = np.asarray(recipients, dtype=np.float32)
    d = np.asarray(donors, dtype=np.float32)
    mr, sr = r.mean(axis=(2, 3), keepdims=True), r.std(axis=(2, 3), keepdims=True)
    md, sd = d.mean(axis=(2, 3), keepdims=True), d.std(axis=(2, 3), keepdims=True)
    return np.clip((r - mr) / np.where(sr > 0, sr, 1.0) * sd + md, 0.0, 1.0).astype(np.float32)


def detect_statistics_transplant(ctx: DetectorContext, cfg: BiasConfig) -> list[dict[str, Any]]:
    """Give other classes' correctly predicted images the members' global statistics; count the moves.

    Score: the share of recipients moved off their own class with the members' statistics minus the
    share with the statistics of the class's other samples. Any move counts, not only one to the
    concept's class: a tint the model half learned sends a recipient to class k only at times and
    elsewhere the rest (on the digits tint case the true tint moved 41% of recipients, 18% of them to
    class k). Flag when the score reaches ``threshold`` with a one-sided Fisher test p <= ``max_p_value``,
    Bonferroni-corrected over the run's concepts, and an odds ratio of at least ``min_odds_ratio``: the
    transplant test's rule (soxai.bias.verdict.decide).
    """
    scfg = cfg.statistics_transplant
    rows = []
    correct = ctx.train[ctx.train["pred"] == ctx.train["label"]]
    concepts = scored_concepts(ctx)
    n_concepts = len(concepts)  # the Bonferroni factor
    for _, concept in concepts.iterrows():
        cid, k = int(concept["concept_id"]), int(concept["label"])
        rng = np.random.default_rng([ctx.seed, cid + 1, 13])
        members = ctx.train[(ctx.train["concept_id"] == cid) & (ctx.train["label"] == k)]
        outsiders = ctx.train[(ctx.train["concept_id"] != cid) & (ctx.train["label"] == k)]
        pool = correct[correct["label"] != k]
        n = min(scfg.n_pairs, len(pool))
        if n == 0 or len(members) == 0 or len(outsiders) == 0:
            rows.append(score_row("statistics_transplant", cid, 0.0, False,
                             "no other-class images or no class-mates outside the concept to compare with"))
            continue
        rec_rows = pick_rows(pool, n, rng)
        truth = ctx.labels(rec_rows)
        recipients = np.asarray(ctx.images[rec_rows], dtype=np.float32)
        donors = ctx.images[pick_rows(members, n, rng)]
        controls = ctx.images[pick_rows(outsiders, n, rng)]
        pred = ctx.predict(match_statistics(recipients, donors[np.arange(n) % len(donors)]))
        pred_c = ctx.predict(match_statistics(recipients, controls[np.arange(n) % len(controls)]))
        moved, moved_c = int(np.sum(pred != truth)), int(np.sum(pred_c != truth))
        flips, flips_c = int(np.sum(pred == k)), int(np.sum(pred_c == k))
        score = (moved - moved_c) / n
        p_value, odds = compare_rates(moved, moved_c, n)
        is_bias, verdict = decide(score, p_value, odds, scfg.threshold, scfg.max_p_value, scfg.min_odds_ratio,
                                  n_tests=n_concepts)
        reason = (
            f"moved {moved / n:.0%} of {n} correctly predicted other-class images off their class ({flips / n:.0%} "
            f"to {ctx.class_text(k)}) when they took its members' brightness and contrast (other images of "
            f"{ctx.class_text(k)}: {moved_c / n:.0%}, {flips_c / n:.0%} to it; p={p_value:.1g}, odds ratio "
            f"{odds:.1f}); {verdict}"
        )
        rows.append(score_row("statistics_transplant", cid, score, is_bias, reason, moved_rate=moved / n,
                         control_moved_rate=moved_c / n, flip_rate=flips / n, control_rate=flips_c / n,
                         p_value=p_value, odds_ratio=odds))
    return rows
