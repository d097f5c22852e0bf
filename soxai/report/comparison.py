"""The comparison in words and rows: the gains per variant and split, the corrections each variant made, and the
one sentence that opens the report, the Prefect summary and the end of `soxai run` (built from a
:class:`soxai.report.runner.RunView`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from soxai.compare.stats import format_summary, seeds_phrase


def signed_summary(summary: dict[str, Any] | None) -> str:
    """A difference: '+0.300 [+0.250, +0.350]', '+0.300 (n=2, no interval)' below 3 seeds, '–' when missing."""
    return format_summary(summary, signed=True)


def reported_splits(comparison: dict[str, Any]) -> list[str]:
    """The evaluation splits of a comparison other than val, in the order the comparison lists them."""
    return [s for s in next(iter(comparison["variants"].values()), {}) if s != "val"]


def comparison_frame(comparison: dict[str, Any], fmt=format_summary, signed=signed_summary) -> pd.DataFrame:
    """One row per test split and variant: accuracy and worst-group accuracy, and the paired gains.

    Columns: split, variant, accuracy, worst_group_accuracy, gain_accuracy, gain_worst_group
    (over the baseline, paired by seed), over_control_accuracy, over_control_worst_group (pruned
    minus the random control; pruned rows only), over_jtt_accuracy, over_jtt_worst_group (a correction
    minus JTT; with a jtt variant), oracle_gap_accuracy, oracle_gap_worst_group (the share of the
    baseline-to-oracle gap the variant recovers, from the seed means; with an oracle variant). Cells are
    formatted by ``fmt`` (levels) and ``signed`` (differences), 'mean [lo, hi]' with the 95% interval by
    default; a cell that does not apply is ''.
    """
    rows = []
    gains = comparison.get("gain_over_baseline", {})
    control = comparison.get("pruned_over_random_control", {})
    over_jtt = comparison.get("over_jtt") or ({"pruned": comparison["pruned_over_jtt"]}
                                              if comparison.get("pruned_over_jtt") else {})
    gap = comparison.get("gap_recovered", {})
    for split in reported_splits(comparison):
        for variant, per_split in comparison["variants"].items():
            ms = per_split.get(split, {})
            g = gains.get(variant, {}).get(split, {})
            oc = control.get(split, {}) if variant == "pruned" else {}
            oj = over_jtt.get(variant, {}).get(split, {})
            gp = gap.get(variant, {}).get(split, {})
            rows.append({
                "split": split, "variant": variant,
                "accuracy": fmt(ms.get("accuracy")), "worst_group_accuracy": fmt(ms.get("worst_group_accuracy")),
                "gain_accuracy": signed(g.get("accuracy")) if g else "",
                "gain_worst_group": signed(g.get("worst_group_accuracy")) if g else "",
                "over_control_accuracy": signed(oc.get("accuracy")) if oc else "",
                "over_control_worst_group": signed(oc.get("worst_group_accuracy")) if oc else "",
                "over_jtt_accuracy": signed(oj.get("accuracy")) if oj else "",
                "over_jtt_worst_group": signed(oj.get("worst_group_accuracy")) if oj else "",
                "oracle_gap_accuracy": _share(gp.get("accuracy")),
                "oracle_gap_worst_group": _share(gp.get("worst_group_accuracy")),
            })
    return pd.DataFrame(rows)


def _share(gap: dict[str, Any] | None) -> str:
    """'73%' of the oracle gap recovered (from the seed means), '' when there is no gap to recover."""
    if not gap:
        return ""
    ratio = gap.get("ratio_of_means", gap.get("mean"))
    return "" if ratio is None or not np.isfinite(ratio) else f"{ratio:.0%}"


# what each correction variant is, in the words of the summary sentence and the report
CORRECTION_NAMES = {"pruned": "pruning", "reweight": "reweighting by concepts",
                    "augment": "augmenting other classes with the flagged regions"}


def corrections_rows(comparison: dict[str, Any] | None) -> list[dict[str, str]]:
    """One row per correction decision of the reweight and augment variants (``comparison['corrections']``):
    variant, concept ('' when it is about the whole set), class, correction, samples, reason."""
    rows = []
    for variant, entries in ((comparison or {}).get("corrections") or {}).items():
        for e in entries:
            cid = e.get("concept_id")
            rows.append({"variant": variant, "concept": "" if cid is None else ("noise" if cid < 0 else str(cid)),
                         "label": "" if e.get("label") is None else str(e["label"]),
                         "correction": str(e.get("correction", "")), "samples": f"{int(e.get('n_samples', 0)):,}",
                         "reason": str(e.get("reason", ""))})
    return rows


# view is a soxai.report.runner.RunView, not imported by name: the runner imports this module.
def summary_sentence(view: Any) -> str:
    """One sentence: what was found, what the manifest drops, and what pruning bought (95% intervals from 3 seeds
    on; below that means only, and the sentence says so)."""
    real = view.concepts[~view.concepts["is_noise"].astype(bool)]
    n_train = int((view.samples["split"] == "train").sum())
    found = f"{len(real)} concept{'s' if len(real) != 1 else ''} in {n_train:,} training samples"
    unclustered = sorted(int(k) for k in ((view.manifest_info or {}).get("flagged_unclustered") or {}))
    if not view.flagged and not unclustered:
        text = f"Nothing flagged: soxai found {found} and no detector flagged any, so the pruned manifest keeps " \
               "every sample and there is nothing for pruning to buy"
        others = _other_corrections(view.comparison) if view.comparison else ""
        seeds = f" ({seeds_phrase(len(view.comparison.get('seeds', [])))})" if others else ""
        return f"{text}{others}{seeds}."
    ids = sorted(view.flagged)
    names = []
    for cid in ids[:5]:
        c = real[real["concept_id"] == cid]
        names.append(f"{cid}: {view.class_text(int(c['label'].iloc[0]))}, {int(c['size'].iloc[0]):,} samples"
                     if len(c) else str(cid))
    listed = "; ".join(names) + (f"; and {len(ids) - 5} more" if len(ids) > 5 else "")
    head = f"soxai flagged {len(ids)} of {found}" + (f" (concept{'s' if len(ids) > 1 else ''} {listed})" if ids else "")
    if unclustered:  # soxai.bias.unclustered: a shortcut among samples that form no concept
        classes = ", ".join(view.class_text(k) for k in unclustered)
        head += f" and a shortcut among the unclustered samples of {classes}"
    info = view.manifest_info or {}
    comp = view.comparison
    retrained = bool(comp) and "pruned" in comp.get("gain_over_baseline", {})
    if info:
        verb = "dropped" if retrained else "drops"
        head += f"; pruning {verb} {info['n_dropped']:,} of {info['n_train']:,} training samples " \
                f"({info['share_dropped']:.1%}"
        outside, kept = info.get("dropped_outside_flagged", 0), info.get("members_kept", 0)
        moved = ([f"found {outside:,} outside the flagged concepts"] if outside else []) \
            + ([f"kept {kept:,} members that do not carry the shortcut"] if kept else [])
        if moved:  # the carrier test moved the line the concepts drew
            head += "; the carrier test " + " and ".join(moved)
        head += ")"
    if not comp and view.stale.get("compare"):
        return f"{head}; the last retraining predates this manifest ({view.stale['compare']}): run `soxai " \
               "retrain RUN_DIR` to measure what pruning buys now."
    if not comp:
        return f"{head}; not retrained yet: run `soxai retrain RUN_DIR` to measure what pruning buys."
    others = _other_corrections(comp)
    if not retrained:
        return f"{head}; the comparison has no pruned variant (see retrain.variants), so it cannot say what " \
               f"pruning bought{others} ({seeds_phrase(len(comp.get('seeds', [])))})."
    splits = reported_splits(comp)
    gains = comp["gain_over_baseline"]["pruned"]
    control = comp.get("pruned_over_random_control", {})
    metric = comp.get("metric", "accuracy")  # a segmentation run's comparison says "miou"
    text = f"{head} and changed {'mIoU' if metric == 'miou' else metric} by " + " and ".join(
        f"{signed_summary(gains.get(s, {}).get(metric))} on {s}" for s in splits) + " versus the baseline"
    if control:
        text += ", and by " + " and ".join(
            f"{signed_summary(control.get(s, {}).get(metric))} on {s}" for s in splits
        ) + " versus a random prune of the same size"
    return f"{text}{others} ({seeds_phrase(len(comp.get('seeds', [])))})."


def _other_corrections(comp: dict[str, Any]) -> str:
    """'; reweighting by concepts changed accuracy by ... on test and ... on test_attacked versus the baseline' for
    each correction variant other than pruning in the comparison ('... found nothing to correct and trained as
    the baseline' for a reweight whose every decision is 'none'); '' when there is none."""
    splits = reported_splits(comp)
    parts = []
    for variant in ("reweight", "augment"):
        gains = comp.get("gain_over_baseline", {}).get(variant)
        entries = (comp.get("corrections") or {}).get(variant)
        # reweight with no tied conflict is the baseline's recipe; augment's 'none' rows may be a fallback of 'none'
        if variant == "reweight" and gains and entries and all(e.get("correction") == "none" for e in entries):
            parts.append(f"{CORRECTION_NAMES[variant]} found nothing to correct and trained as the baseline")
        elif gains:
            parts.append(f"{CORRECTION_NAMES[variant]} changed accuracy by " + " and ".join(
                f"{signed_summary(gains.get(s, {}).get('accuracy'))} on {s}" for s in splits) + " versus the baseline")
    return "".join(f"; {p}" for p in parts)


# ---------------------------------------------------------------- the HTML report


def conflict_sentence(view: Any) -> str:
    """'Conflicts, not pruned (...): concept 2 (class lobed, 127 samples: the baseline wrong on 96% against 1% of
    the rest of its class).' naming each concept the conflict test found, or '' where it found none.
    ``view``: a soxai.report.runner.RunView (its ``conflicts``, ``class_text``)."""
    parts = [f"concept {int(cid)} ({view.class_text(int(r.label))}, {int(r.n)} samples: the baseline wrong on "
             f"{r.error_rate:.0%} against {r.rest_error_rate:.0%} of the rest of its class)"
             for cid, r in view.conflicts.iterrows()]
    if not parts:
        return ""
    return ("Conflicts, not pruned (a shortcut on most of a class leaves its minority wrong; the reweight variant "
            "upweights those tied to a flagged shortcut on most of their class or of the class their errors go to): "
            f"{'; '.join(parts)}.")
