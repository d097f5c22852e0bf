"""Runner of the compare stage: ``compare/comparison.json``."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from soxai.config import Config
from soxai.data.runner import read_samples
from soxai.run_dir import RunDir, read_json, read_parquet, write_json
from soxai.stage import StageRecord, fingerprint, run_stage, upstream

METRICS = ("accuracy", "worst_group_accuracy")
# the variants that correct the training set (the others are references: baseline, random control, JTT, oracle)
CORRECTIONS = ("pruned", "reweight", "augment")


def run_compare(cfg: Config, run: RunDir) -> StageRecord:
    """Summarise every variant per evaluation split over seeds, the paired gain over the baseline,
    detection quality against the evaluation-only ``group`` column, and the cost of pruning."""
    fp = fingerprint("compare", cfg.section_hash("retrain"), *upstream(run, "train"))

    def body():
        result = build_comparison(cfg, run)
        return [write_json(run.comparison, result)], {"claims": result["claims"]}

    return run_stage(run, "compare", fp, body)


def build_comparison(cfg: Config, run: RunDir) -> dict[str, Any]:
    from soxai.compare.stats import excludes_zero, summarize

    per_seed, n_train, corrections = _read_metrics(cfg, run)
    variants = {
        v: {s: {k: summarize([vals[seed] for seed in sorted(vals)]) for k, vals in ms.items()} for s, ms in sp.items()}
        for v, sp in per_seed.items()
    }
    gains = {v: _paired(per_seed[v], per_seed["baseline"]) for v in per_seed if v != "baseline"} \
        if "baseline" in per_seed else {}
    claims = {
        f"{v}_beats_baseline_on_{s}": bool(g["accuracy"]["mean"] > 0 and excludes_zero(g["accuracy"]))
        for v, sp in gains.items() for s, g in sp.items() if s != "val"
    }
    # the control answers "is it the choice of samples, or just dropping that many?"
    over_control = (
        _paired(per_seed["pruned"], per_seed["random_control"])
        if {"pruned", "random_control"} <= set(per_seed) else {}
    )
    claims.update({
        f"pruned_beats_random_control_on_{s}": bool(g["accuracy"]["mean"] > 0 and excludes_zero(g["accuracy"]))
        for s, g in over_control.items() if s != "val"
    })
    # the reference variants: the share of the baseline-to-oracle gap each variant recovers, and JTT
    gap = _gap_recovered(per_seed) if {"baseline", "oracle"} <= set(per_seed) else {}
    over_jtt = {v: _paired(per_seed[v], per_seed["jtt"]) for v in CORRECTIONS if v in per_seed} \
        if "jtt" in per_seed else {}
    claims.update({
        f"{v}_beats_jtt_on_{s}_{k}": bool(g[k]["mean"] > 0 and excludes_zero(g[k]))
        for v, sp in over_jtt.items() for s, g in sp.items() if s != "val" for k in g
    })
    claims.update({
        f"{v}_recovers_80pct_of_oracle_gap_on_{s}": bool(g["accuracy"]["mean"] >= 0.8)
        for v in CORRECTIONS for s, g in gap.get(v, {}).items() if s != "val" and "accuracy" in g
    })
    detection = _detection(run)
    info = read_json(run.manifest_json)
    cost = {"share_dropped": info["share_dropped"], "n_dropped": info["n_dropped"], "n_train": info["n_train"]}
    if "pruned" in gains and "test" in gains["pruned"]:
        cost["clean_test_accuracy_change"] = gains["pruned"]["test"]["accuracy"]
    return {
        "seeds": list(cfg.retrain.seeds),
        "n_train": n_train,
        "variants": variants,
        "gain_over_baseline": gains,
        "pruned_over_random_control": over_control,
        "pruned_over_jtt": over_jtt.get("pruned", {}),
        "over_jtt": over_jtt,
        "gap_recovered": gap,
        "corrections": corrections,
        "claims": claims,
        "detection": detection,
        "cost": cost,
    }


def _read_metrics(cfg: Config, run: RunDir):
    """Every variant's metrics.json: ``per_seed[variant][split][metric][seed]``, ``n_train[variant]`` and the
    ``corrections`` rows of each correction variant (the same decisions for every seed: the first seed's)."""
    per_seed: dict[str, dict[str, dict[str, dict[int, float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(dict))
    )
    n_train: dict[str, int] = {}
    corrections: dict[str, list[dict[str, Any]]] = {}
    for variant in cfg.retrain.variants:
        for seed in cfg.retrain.seeds:
            m = read_json(run.variant_metrics(variant, seed))
            n_train[variant] = m["n_train"]
            if "corrections" in m and variant not in corrections:  # the same decisions for every seed
                corrections[variant] = m["corrections"]
            for split, sm in m["splits"].items():
                for metric in METRICS:
                    if metric in sm:
                        per_seed[variant][split][metric][seed] = sm[metric]
    return per_seed, n_train, corrections


def _detection(run: RunDir) -> dict[str, Any] | None:
    """Precision and recall of the pruned samples against the evaluation-only ``group`` column, and the share of
    artifact concepts (most members planted) that got flagged; None when the data has no groups."""
    from soxai.compare.stats import detection_scores

    manifest = read_parquet(run.pruned_parquet)
    samples = read_samples(run)
    train = samples[samples["split"] == "train"].merge(manifest[["sample_id", "keep"]], on="sample_id")
    detection = None
    if "group" in train and train["group"].notna().any():
        planted = (train["group"] == "artifact").to_numpy()
        detection = detection_scores(~train["keep"].to_numpy(dtype=bool), planted)
        assign = read_parquet(run.assignments).merge(train[["sample_id", "group"]], on="sample_id")
        flagged = set(read_json(run.manifest_json)["flagged_concepts"])
        artifact_concepts = [
            int(c) for c, g in assign.groupby("concept_id")["group"]
            if c >= 0 and (g == "artifact").mean() > 0.5
        ]
        detection["artifact_concepts"] = artifact_concepts
        detection["artifact_concepts_flagged_share"] = (
            float(np.mean([str(c) in flagged for c in artifact_concepts])) if artifact_concepts else float("nan")
        )
    return detection


def _paired(a: dict, b: dict) -> dict[str, Any]:
    """Per split and metric: summary of a - b, paired by seed (seeds present in both)."""
    from soxai.compare.stats import summarize

    return {
        s: {k: summarize([vals[seed] - b[s][k][seed] for seed in sorted(vals) if seed in b[s][k]])
            for k, vals in ms.items()}
        for s, ms in a.items()
    }


def _gap_recovered(per_seed: dict) -> dict[str, Any]:
    """Per variant, split and metric: (variant - baseline) / (oracle - baseline), one ratio per seed.

    1 = the variant closes the whole gap to the oracle, 0 = no better than the baseline. The summary's
    interval is over the per-seed ratios; ``ratio_of_means`` is the same share from the seed means
    (steadier when a seed's gap is small). A split where the oracle is not better than the baseline
    (gap of the means below 0.005) has no gap to recover: ``nan``.
    """
    from soxai.compare.stats import summarize

    base, oracle = per_seed["baseline"], per_seed["oracle"]
    out: dict[str, Any] = {}
    for variant, splits in per_seed.items():
        if variant in ("baseline", "oracle"):
            continue
        out[variant] = {}
        for split, metrics in splits.items():
            out[variant][split] = {}
            for k, vals in metrics.items():
                seeds = [sd for sd in sorted(vals) if sd in base[split][k] and sd in oracle[split][k]]
                if not seeds:
                    continue
                v = np.array([vals[sd] for sd in seeds])
                b = np.array([base[split][k][sd] for sd in seeds])
                o = np.array([oracle[split][k][sd] for sd in seeds])
                gap_mean = float(o.mean() - b.mean())
                if gap_mean < 0.005:
                    nan = float("nan")
                    out[variant][split][k] = {"mean": nan, "ci95": None, "values": [], "n": 0,
                                              "ratio_of_means": nan, "oracle_gap": gap_mean}
                    continue
                per = [float((vi - bi) / (oi - bi)) if abs(oi - bi) > 1e-9 else float("nan")
                       for vi, bi, oi in zip(v, b, o, strict=True)]
                summary = summarize([p for p in per if np.isfinite(p)])
                summary["ratio_of_means"] = float((v.mean() - b.mean()) / gap_mean)
                summary["oracle_gap"] = gap_mean
                out[variant][split][k] = summary
    return out
