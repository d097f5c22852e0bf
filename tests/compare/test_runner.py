"""build_comparison on a hand-made run directory: every variant side by side, the references per correction."""

import pandas as pd
import pytest

from soxai.config import load_config
from soxai.run_dir import RunDir, write_json, write_parquet

VARIANTS = ("baseline", "pruned", "random_control", "reweight", "augment", "jtt", "oracle")
# test_attacked accuracy per variant and seed
ACC = {"baseline": [0.20, 0.30, 0.25], "pruned": [0.80, 0.85, 0.90], "random_control": [0.22, 0.31, 0.24],
       "reweight": [0.30, 0.41, 0.33], "augment": [0.70, 0.78, 0.74], "jtt": [0.40, 0.45, 0.50],
       "oracle": [0.90, 0.92, 0.94]}


@pytest.fixture
def run(tmp_path):
    run = RunDir(tmp_path / "run")
    ids = [f"s{i}" for i in range(10)]
    write_parquet(run.samples, pd.DataFrame({"sample_id": ids, "split": "train", "label": [0, 1] * 5,
                                             "row": range(10)}))
    write_parquet(run.pruned_parquet, pd.DataFrame({"sample_id": ids, "keep": [False] + [True] * 9}))
    write_json(run.manifest_json, {"flagged_concepts": {"3": "why"}, "share_dropped": 0.1, "n_dropped": 1,
                                   "n_train": 10})
    for variant in VARIANTS:
        for seed, acc in enumerate(ACC[variant]):
            metrics = {"variant": variant, "seed": seed, "n_train": 10,
                       "splits": {"test_attacked": {"accuracy": acc}, "test": {"accuracy": 0.9}}}
            if variant == "augment":
                metrics["corrections"] = [{"concept_id": 3, "label": 0, "correction": "augment", "n_samples": 4,
                                           "reason": "pasted"}]
            write_json(run.variant_metrics(variant, seed), metrics)
    return run


def test_build_comparison__corrections_side_by_side_with_jtt_control_and_oracle(run):
    from soxai.compare.runner import build_comparison

    cfg = load_config(None, [f"retrain.variants=[{', '.join(VARIANTS)}]", "retrain.seeds=[0, 1, 2]"])
    comp = build_comparison(cfg, run)
    assert list(comp["variants"]) == list(VARIANTS)
    gain = comp["gain_over_baseline"]["augment"]["test_attacked"]["accuracy"]
    assert gain["mean"] == pytest.approx(0.49) and gain["n"] == 3 and gain["ci95"][0] < 0.49 < gain["ci95"][1]
    assert set(comp["over_jtt"]) == {"pruned", "reweight", "augment"}
    assert comp["over_jtt"]["reweight"]["test_attacked"]["accuracy"]["mean"] == pytest.approx((1.04 - 1.35) / 3)
    assert comp["pruned_over_jtt"] == comp["over_jtt"]["pruned"]
    assert set(comp["gap_recovered"]) == {"pruned", "random_control", "reweight", "augment", "jtt"}
    share = comp["gap_recovered"]["augment"]["test_attacked"]["accuracy"]["ratio_of_means"]
    assert share == pytest.approx(0.49 / (0.92 - 0.25))
    claims = comp["claims"]
    assert claims["augment_beats_baseline_on_test_attacked"] and claims["augment_beats_jtt_on_test_attacked_accuracy"]
    assert not claims["reweight_beats_jtt_on_test_attacked_accuracy"]
    assert claims["pruned_recovers_80pct_of_oracle_gap_on_test_attacked"]
    assert not claims["augment_recovers_80pct_of_oracle_gap_on_test_attacked"]
    assert comp["corrections"] == {"augment": [{"concept_id": 3, "label": 0, "correction": "augment",
                                                "n_samples": 4, "reason": "pasted"}]}


def test_build_comparison__two_seeds_give_means_without_intervals_or_claims(run):
    from soxai.compare.runner import build_comparison

    cfg = load_config(None, ["retrain.variants=[baseline, pruned, random_control, oracle]", "retrain.seeds=[0, 1]"])
    comp = build_comparison(cfg, run)
    gain = comp["gain_over_baseline"]["pruned"]["test_attacked"]["accuracy"]
    assert gain["mean"] == pytest.approx(0.575) and gain["n"] == 2 and gain["ci95"] is None
    assert comp["variants"]["baseline"]["test_attacked"]["accuracy"]["ci95"] is None
    # a gain of +0.575 on every seed is still no claim from two seeds
    assert not comp["claims"]["pruned_beats_baseline_on_test_attacked"]
    assert comp["gap_recovered"]["pruned"]["test"]["accuracy"]["ci95"] is None  # no gap on clean data
