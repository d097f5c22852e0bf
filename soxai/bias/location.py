"""Detector: spatial concentration and location consistency of a concept's relevance.

A shortcut such as a watermark or a tag is small and sits in the same place: the members of its
concept put much of their relevance into one small box, and they agree on where that box is. A real
class feature (an outline, a texture of the whole object) spreads its relevance and moves with the
object. Both are measured against the class's other samples, so a class whose every sample looks at
one place (a centred object) is not flagged for it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from soxai.bias.config import BiasConfig
from soxai.bias.context import DetectorContext, pick_rows, score_row, scored_concepts
from soxai.bias.paste import salient_box


def box_mass(maps: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Share of each |map|'s mass inside ``box`` (maps of shape (n, H, W)); 0 for an all-zero map."""
    a = np.abs(np.asarray(maps, dtype=np.float64))
    y0, x0, y1, x1 = box
    total = a.sum(axis=(1, 2))
    return np.where(total > 0, a[:, y0:y1, x0:x1].sum(axis=(1, 2)) / np.where(total > 0, total, 1.0), 0.0)


def same_place(maps: np.ndarray, box: tuple[int, int, int, int], side: int) -> np.ndarray:
    """Whether each map's own most salient side x side box lies within half a box of ``box`` (bool (n,))."""
    y0, x0 = box[0], box[1]
    out = np.empty(len(maps), dtype=bool)
    for i, m in enumerate(maps):
        oy, ox, _, _ = salient_box(m, side)
        out[i] = abs(oy - y0) <= side / 2 and abs(ox - x0) <= side / 2
    return out


def detect_concentration(ctx: DetectorContext, cfg: BiasConfig) -> list[dict[str, Any]]:
    """Flag a concept whose members concentrate their relevance in one small box, all in the same place.

    For each concept: the box (``region_frac`` x image side) holding most of its mean relevance;
    ``mass`` = the members' mean share of relevance in it, ``control`` = the same share for the
    class's other samples; ``consistency`` = the share of members whose own most salient box lies
    within half a box of it. Score: mass - control. Flag when the score reaches ``threshold`` and
    consistency reaches ``min_consistency``.
    """
    ccfg = cfg.concentration
    h, w = ctx.images.shape[2:]
    side = max(1, int(round(ccfg.region_frac * min(h, w))))
    rows = []
    for _, concept in scored_concepts(ctx).iterrows():
        cid, k = int(concept["concept_id"]), int(concept["label"])
        rng = np.random.default_rng([ctx.seed, cid + 1, 7])
        box = salient_box(ctx.maps[int(concept["map_index"])], side)
        members = ctx.train[(ctx.train["concept_id"] == cid) & (ctx.train["label"] == k)]
        outsiders = ctx.train[(ctx.train["concept_id"] != cid) & (ctx.train["label"] == k)]
        if len(members) == 0 or len(outsiders) == 0:
            rows.append(score_row("concentration", cid, 0.0, False,
                                  f"no samples of {ctx.class_text(k)} outside the concept to compare with"))
            continue
        member_maps = ctx.sample_maps(pick_rows(members, ccfg.n_samples, rng))
        control_maps = ctx.sample_maps(pick_rows(outsiders, ccfg.n_samples, rng))
        mass, control = float(box_mass(member_maps, box).mean()), float(box_mass(control_maps, box).mean())
        consistency = float(same_place(member_maps, box, side).mean())
        control_consistency = float(same_place(control_maps, box, side).mean())
        score = mass - control
        is_bias = score >= ccfg.threshold and consistency >= ccfg.min_consistency
        y0, x0, y1, x1 = box
        reason = (
            f"members put {mass:.0%} of their relevance in the {y1 - y0}x{x1 - x0} box at rows {y0}-{y1 - 1}, "
            f"cols {x0}-{x1 - 1} (other samples of {ctx.class_text(k)}: {control:.0%}); {consistency:.0%} of "
            f"members have their most salient box there (others: {control_consistency:.0%}); difference {score:+.2f} "
            f"is "
            f"{'at or above' if score >= ccfg.threshold else 'below'} the threshold {ccfg.threshold:.2f}"
            + ("" if consistency >= ccfg.min_consistency or score < ccfg.threshold
               else f" but members agree on the place less than {ccfg.min_consistency:.0%}")
        )
        rows.append(score_row("concentration", cid, score, is_bias, reason, mass=mass, control_mass=control,
                              consistency=consistency, control_consistency=control_consistency, box=list(box)))
    return rows
