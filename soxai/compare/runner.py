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


def run_compare(cfg: Config, run: RunDir) -> StageRecord:
    """Summarise every variant per evaluation split over seeds, the paired gain over the baseline,
    detection quality against the evaluation-only ``group`` column, and the cost of pruning."""
    fp = fingerprint("compare", cfg.section_hash("retrain"), *upstream(run, "train"))

    def body():
        result = build_comparison(cfg, run)
        return [write_json(run.comparison, result)], {"claims": result["claims"]}

    return run_stage(run, "compare", fp, body)


def build_comparison(cfg: Config, run: RunDir) -> dict[str, Any]:
    from soxai.compare.stats import detection_scores, excludes_zero, summarize

    per_seed: dict[str, dict[str, dict[str, dict[int, float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(dict))
    )
    n_train: dict[str, int] = {}
    for variant in cfg.retrain.variants:
        for seed in cfg.retrain.seeds:
            m = read_json(run.variant_metrics(variant, seed))
            n_train[variant] = m["n_train"]
            for split, sm in m["splits"].items():
                for metric in METRICS:
                    if metric in sm:
                        per_seed[variant][split][metric][seed] = sm[metric]
    variants = {
        v: {s: {k: summarize([vals[seed] for seed in sorted(vals)]) for k, vals in ms.items()} for s, ms in sp.items()}
        for v, sp in per_seed.items()
    }
    gains: dict[str, Any] = {}
    if "baseline" in per_seed:
        base = per_seed["baseline"]
        for v, sp in per_seed.items():
            if v == "baseline":
                continue
            gains[v] = {
                s: {k: summarize([vals[seed] - base[s][k][seed] for seed in sorted(vals) if seed in base[s][k]])
                    for k, vals in ms.items()}
                for s, ms in sp.items()
            }
    claims = {
        f"{v}_beats_baseline_on_{s}": bool(g["accuracy"]["mean"] > 0 and excludes_zero(g["accuracy"]))
        for v, sp in gains.items() for s, g in sp.items() if s != "val"
    }
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
    info = read_json(run.manifest_json)
    cost = {"share_dropped": info["share_dropped"], "n_dropped": info["n_dropped"], "n_train": info["n_train"]}
    if "pruned" in gains and "test" in gains["pruned"]:
        cost["clean_test_accuracy_change"] = gains["pruned"]["test"]["accuracy"]
    return {
        "seeds": list(cfg.retrain.seeds),
        "n_train": n_train,
        "variants": variants,
        "gain_over_baseline": gains,
        "claims": claims,
        "detection": detection,
        "cost": cost,
    }
