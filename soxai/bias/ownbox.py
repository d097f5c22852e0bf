"""Detector: each member's own most salient box, against its class-mates' own boxes — one test, one bar.

The transplant test (soxai.bias.transplant) pastes one box, the concept's mean salient region, from every member,
and measures it against class-mates that paste their own: a mark that moves is in that box for some members only,
and its odds-ratio bar, effect threshold and control rounds were set on built-in cases. This test treats members
and class-mates alike: every tested sample pastes *its own* most salient box (side ``transplant.region_frac``)
into the same correctly predicted images of other classes, and its rate is the share moved to the concept's
class. A shortcut raises its carriers' rates wherever it sits; a real feature of the class raises the rates of
the class-mates too. One one-sided Mann-Whitney U test of the members' rates against the class-mates' (samples
are the units, so the spread among a class's own images widens its own null), Bonferroni-corrected over the
concepts scored, flagged at ``own_box.max_p_value``: no effect threshold, no odds ratio, no control rounds.
Opt-in (``bias.detectors=[own_box]``); docs/DETECTION.md compares it with the default stack on one matrix.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from soxai.bias.config import BiasConfig
from soxai.bias.context import DetectorContext, pick_rows, score_row, scored_concepts
from soxai.bias.paste import OwnBox


def own_box_region(ctx: DetectorContext, cfg: BiasConfig) -> OwnBox:
    """Each sample's own most salient box, of side ``transplant.region_frac`` of the images' shorter side."""
    h, w = ctx.images.shape[2:]
    return OwnBox(max(1, int(round(cfg.transplant.region_frac * min(h, w)))), ctx.sample_maps, ctx.predict)


def compare_own_boxes(ctx: DetectorContext, region: OwnBox, first: pd.DataFrame, second: pd.DataFrame,
                      pool: pd.DataFrame, k: int, n_recipients: int, max_samples: int,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Up to ``max_samples`` of each group paste their own boxes into the same ``n_recipients`` images of
    ``pool``; returns the two groups' rates of recipients moved to class ``k``, the one-sided Mann-Whitney p of
    the first against the second, and the number of recipients."""
    from scipy.stats import mannwhitneyu

    recipients = np.asarray(ctx.images[pick_rows(pool, n_recipients, rng)], dtype=np.float32)
    a = region.flip_rates(ctx.images, pick_rows(first, max_samples, rng), recipients, k)
    b = region.flip_rates(ctx.images, pick_rows(second, max_samples, rng), recipients, k)
    p = float(mannwhitneyu(a, b, alternative="greater").pvalue) if max(a.max(), b.max()) > 0 else 1.0
    return a, b, p, len(recipients)


def detect_own_box(ctx: DetectorContext, cfg: BiasConfig) -> list[dict[str, Any]]:
    """The own-box test of every scored concept (module docstring)."""
    ocfg = cfg.own_box
    region = own_box_region(ctx, cfg)
    concepts = scored_concepts(ctx)
    bar = ocfg.max_p_value / max(len(concepts), 1)
    correct = ctx.train[ctx.train["pred"] == ctx.train["label"]]
    rows = []
    for _, concept in concepts.iterrows():
        cid, k = int(concept["concept_id"]), int(concept["label"])
        same, inside = ctx.train["label"] == k, ctx.train["concept_id"] == cid
        members, mates = ctx.train[same & inside], ctx.train[same & ~inside]
        pool = correct[correct["label"] != k]
        if len(pool) == 0 or len(members) == 0 or len(mates) == 0:
            why = "no other-class images to paste into" if len(pool) == 0 else "no class-mates to compare with"
            rows.append(score_row("own_box", cid, 0.0, False, f"not tested: {why}", p_value=1.0))
            continue
        a, b, p, n_rec = compare_own_boxes(ctx, region, members, mates, pool, k, ocfg.n_recipients,
                                           ocfg.max_samples, np.random.default_rng([ctx.seed, cid + 1, 31]))
        flag = p <= bar
        reason = (f"its members, each pasting its own most salient {region.side}x{region.side} box into "
                  f"{n_rec} images of other classes, moved {a.mean():.0%} of them to {ctx.class_text(k)} on average "
                  f"against {b.mean():.0%} for its class-mates ({len(a)} and {len(b)} tested; one-sided Mann-Whitney "
                  f"p={p:.2g}, bar {bar:.2g} = {ocfg.max_p_value:g} / {len(concepts)} concepts): "
                  + ("flagged" if flag else "not flagged"))
        rows.append(score_row("own_box", cid, float(a.mean() - b.mean()), flag, reason, p_value=p,
                              flip_rate=float(a.mean()), control_rate=float(b.mean())))
    return rows
