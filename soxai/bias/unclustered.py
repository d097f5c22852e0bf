"""Each class's unclustered samples, tested as one group: a shortcut whose carriers form no concept.

HDBSCAN leaves a sample in the noise (concept -1) when no dense group holds it, and only concepts are scored by
the detectors. A mark stamped at a random position splits its carriers by position into groups too small to be
concepts (a square in a random corner of 10% of a class: 51 of its 70 carriers in the noise, the other 19 inside
a concept of 219 clean images; docs/DETECTION.md), so no concept ever carries it.

The test pastes each sample's *own* most salient box (side ``transplant.region_frac`` of the image, wherever it
lies: the mark moves, so each carrier's own box holds it) into the same correctly predicted images of other
classes, and takes the share moved to the sample's class as the sample's rate. A clean class's unclustered samples
are its least typical ones, and an atypical image's box can carry further than a typical one's (cells border
stripe 5%: a clean class's 98 unclustered samples moved 29% against 17% for all its clustered ones, p 1e-6, and
179 clean images were dropped). HDBSCAN's membership probability orders the clustered samples on the same scale
of typicality, so the control is the clustered class-mates at the edge of their concepts: as many as there are
unclustered samples, those of lowest membership probability. Under "no shortcut among the unclustered samples"
their rates come from the same distribution as that edge's; a shortcut carried by some of them raises their rates.
One test per class: the one-sided Mann-Whitney U test of the unclustered samples' rates against the edge's (the
samples are the units, so a class whose own images differ from each other in how far a box of them carries widens
its own null; no pooled-trial binomial that would take that spread for evidence), Bonferroni-corrected over the
classes tested, flagged at ``bias.unclustered.max_p_value``. There is no effect-size bar and no other setting: the
edge's size is the unclustered samples' number (bias logic 17; before, the control was every clustered sample).

A flagged class's carriers: every sample of the class (clustered or not) is tested with its own box by the
carrier test's sequential scheme (soxai.bias.carriers.sequential_rates), the line drawn by the carrier test's rule
(midpoint between one side's mean rate and the other's median) between the two sides of Otsu's split of the class's
rates, drawn on the first recipients' rates and again on the final ones; they go to ``bias/carriers.parquet`` under
concept -1 with their class, each with its own box in the ``window_*`` columns (what the ``augment`` correction
pastes from it), and the drop_carriers policy drops them. The class's table row, with a reason a person can read,
is in ``bias/unclustered.parquet``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from soxai.bias.carriers import WINDOW_COLUMNS
from soxai.bias.config import BiasConfig
from soxai.bias.context import DetectorContext, pick_rows
from soxai.bias.ownbox import compare_own_boxes, own_box_region
from soxai.bias.paste import OwnBox
from soxai.concepts.cluster import NOISE

UNCLUSTERED_COLUMNS = ["label", "n_unclustered", "n_clustered", "n_edge", "n_tested", "unclustered_rate",
                       "edge_rate", "p_value", "is_bias", "reason"]


def check_unclustered(ctx: DetectorContext, cfg: BiasConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Test every class's unclustered samples; the carriers of the flagged classes.

    Returns
    -------
    table : one row per class with unclustered and clustered samples (:data:`UNCLUSTERED_COLUMNS`)
    carriers : rows of ``bias/carriers.parquet`` (soxai.bias.carriers.CARRIER_COLUMNS) under concept -1, one per
        training sample of each flagged class
    """
    ucfg = cfg.unclustered
    region = own_box_region(ctx, cfg)
    correct = ctx.train[ctx.train["pred"] == ctx.train["label"]]
    classes = [k for k, part in ctx.train.groupby("label", sort=True)
               if (part["concept_id"] == NOISE).any() and (part["concept_id"] != NOISE).any()]
    rows, carriers = [], []
    for k in classes:
        cls = ctx.train[ctx.train["label"] == k]
        pool = correct[correct["label"] != k]
        noise, clustered = cls[cls["concept_id"] == NOISE], cls[cls["concept_id"] != NOISE]
        edge = concept_edge(clustered, len(noise))
        if len(pool) == 0:
            rows.append(_row(k, noise, clustered, edge, 0, np.nan, np.nan, np.nan, False,
                             "not tested: no correctly predicted images of other classes to paste into"))
            continue
        a, b, p, n_rec = compare_own_boxes(ctx, region, noise, edge, pool, int(k), ucfg.n_recipients,
                                           ucfg.max_samples, np.random.default_rng([ctx.seed, int(k) + 1, 23]))
        bar = ucfg.max_p_value / len(classes)
        flag = p <= bar
        reason = (f"the {len(noise)} unclustered samples of {ctx.class_text(k)}, each pasting its own most salient "
                  f"{region.side}x{region.side} box into {n_rec} images of other classes, moved "
                  f"{a.mean():.0%} of them to {ctx.class_text(k)} on average against {b.mean():.0%} for the "
                  f"{len(edge)} of its {len(clustered)} clustered samples at the edge of their concepts (lowest "
                  f"membership "
                  f"probability; {len(a)} and {len(b)} tested; one-sided Mann-Whitney p={p:.2g}, bar "
                  f"{bar:.2g} = {ucfg.max_p_value:g} / {len(classes)} classes): "
                  + ("a shortcut among samples that form no concept" if flag else "not flagged"))
        rows.append(_row(k, noise, clustered, edge, n_rec, a.mean(), b.mean(), p, flag, reason))
        if flag:
            carriers.append(_carriers(ctx, cfg, cls, region, int(k)))
    table = pd.DataFrame(rows, columns=UNCLUSTERED_COLUMNS) if rows else _empty_table()
    return table, (pd.concat(carriers, ignore_index=True) if carriers else None)


def concept_edge(clustered: pd.DataFrame, n: int) -> pd.DataFrame:
    """The ``n`` samples of ``clustered`` with the lowest HDBSCAN membership probability (ties: by row; a missing
    probability counts as the most typical), the control of the unclustered test (module docstring); all of them
    where there are fewer. In a run clustered on a sample (``embed.fit_sample``), the samples placed afterwards
    carry their neighbours' vote share in that column, not a membership probability: the edge then mixes the two
    scales."""
    return clustered.sort_values(["probability", "row"], kind="stable", na_position="last").head(n)


def otsu_cut(values: np.ndarray) -> float:
    """The cut of ``values`` that maximises the between-group variance of the two sides (Otsu 1979): the
    midpoint between the two adjacent distinct values where the split is best; +inf for fewer than two."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    distinct = np.unique(v)
    if len(distinct) < 2:
        return float("inf")
    cuts = (distinct[:-1] + distinct[1:]) / 2
    n, total = len(v), v.sum()
    below = np.searchsorted(v, cuts, side="right")  # how many values fall at or below each cut
    csum = np.concatenate([[0.0], np.cumsum(v)])[below]
    w0 = below / n
    mu0, mu1 = csum / below, (total - csum) / (n - below)
    return float(cuts[int(np.argmax(w0 * (1 - w0) * (mu0 - mu1) ** 2))])


def _row(k, noise: pd.DataFrame, clustered: pd.DataFrame, edge: pd.DataFrame, n_tested: int, a: float, b: float,
         p: float, flag: bool, reason: str) -> dict[str, Any]:
    return {"label": int(k), "n_unclustered": len(noise), "n_clustered": len(clustered), "n_edge": len(edge),
            "n_tested": n_tested, "unclustered_rate": float(a), "edge_rate": float(b), "p_value": float(p),
            "is_bias": bool(flag), "reason": reason}


def _empty_table() -> pd.DataFrame:
    dtypes = ("int64", "int64", "int64", "int64", "int64", "float64", "float64", "float64", "bool", "str")
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(UNCLUSTERED_COLUMNS, dtypes, strict=True)})


def _carriers(ctx: DetectorContext, cfg: BiasConfig, cls: pd.DataFrame, region: OwnBox, k: int) -> pd.DataFrame:
    """The carrier test of a flagged class with each sample's own box: CARRIER_COLUMNS rows under concept -1."""
    from soxai.bias.carriers import FIRST_STAGE, sequential_rates

    ccfg = cfg.carriers
    cls = cls.sort_values("row", kind="stable")
    member = (cls["concept_id"] == NOISE).to_numpy()
    correct = ctx.train[(ctx.train["pred"] == ctx.train["label"]) & (ctx.train["label"] != k)]
    rng = np.random.default_rng([ctx.seed, k + 1, 29])
    recipients = np.asarray(ctx.images[pick_rows(correct, ccfg.n_recipients, rng)], dtype=np.float32)
    # the unclustered samples are a mix (on the random-corner square, 51 carriers among 215): their mean rate is
    # no carrier's. The carriers' side is the upper part of the class's two-way split of its rates instead (Otsu's:
    # the cut that best separates the rates into two groups; parameter-free; drawn on the first rates and again on
    # the final ones), and the carrier test's own rule then draws the line between that side's mean and the other
    # samples' median
    rates, n_tested, t, upper = sequential_rates(ctx.predict, ctx.images, cls["row"].to_numpy(), recipients, k,
                                                 region, lambda first: first > otsu_cut(first), ccfg.min_gap)
    # each sample's own most salient box, the one it pasted: what augment pastes from a carrier (its mark, wherever
    # it sits)
    own = np.array(region.boxes(cls["row"].to_numpy()), dtype=np.float64).reshape(-1, 4)
    out = pd.DataFrame({"sample_id": cls["sample_id"].to_numpy(), "concept_id": NOISE, "label": k, "member": member,
                        "flip_rate": rates, "n_recipients": n_tested, "channel_score": np.nan,
                        "channel_threshold": np.nan, "channel_y": np.nan, "channel_x": np.nan,
                        **dict(zip(WINDOW_COLUMNS, own.T, strict=True))})
    if t is None:
        out["threshold"], out["carries"] = np.nan, False
        out["test"] = (f"no carriers: {region.describe()} from single samples moved the upper side of the class's "
                       f"split {np.mean(rates[upper]) if upper.any() else 0:.0%} vs the rest's "
                       f"{np.median(rates[~upper]) if (~upper).any() else 0:.0%} of their recipients, a gap below "
                       f"{ccfg.min_gap:.2f}")
    else:
        out["threshold"], out["carries"] = t, rates >= t
        out["test"] = (f"unclustered: {region.describe()} pasted from each sample of {ctx.class_text(k)} into "
                       f"{FIRST_STAGE} recipients, more (up to {len(recipients)}) where that left it in doubt")
    return out
