"""Monitoring new data against a reference run: drift into flagged concepts and the exclusion list."""

import json

import numpy as np
import pandas as pd
import pytest

from soxai.data.runner import run_data
from soxai.errors import DataError
from soxai.monitor.drift import concept_mix, mix_test, share_difference, wilson_interval
from soxai.monitor.runner import monitor_config, run_monitor, summary_lines
from soxai.runs import init_run


def _monitor(reference, root, overrides):
    cfg = monitor_config(reference, None, overrides)
    run = init_run(cfg, root)
    run_data(cfg, run)
    run_monitor(cfg, run, reference)
    return run


def test_monitor__more_artifacts_than_the_reference_is_drift_into_the_flagged_concept(tiny_explained, tmp_path):
    _, ref = tiny_explained
    run = _monitor(ref, tmp_path / "new", ["seed=11", "data.n_train_per_class=60", "data.artifact.rate=0.8"])
    info = json.loads(run.monitor_json.read_text())
    assert info["drift_into_flagged"] and info["flagged_share"]["ci95"][0] > 0
    assert info["flagged_share"]["new_share"] > 2 * info["flagged_share"]["ref_share"]
    mix = pd.read_parquet(run.monitor_drift)
    assert set(mix.loc[mix["drift"] == "up", "concept_id"]) & set(int(c) for c in info["flagged_concepts"])
    excluded = pd.read_parquet(run.monitor_exclude_parquet)
    samples = pd.read_parquet(run.samples).set_index("sample_id")
    planted = set(samples.index[(samples["split"] == "train") & (samples["group"] == "artifact")])
    assert len(excluded) == info["n_excluded"] and excluded["reason"].str.contains("flagged concept").all()
    hits = set(excluded["sample_id"]) & planted
    assert len(hits) >= 0.8 * len(planted) and len(hits) >= 0.9 * len(excluded)
    assert pd.read_csv(run.monitor_exclude_csv)["sample_id"].tolist() == excluded["sample_id"].tolist()
    assert "drift into flagged concepts" in "\n".join(summary_lines(run))


def test_monitor__same_artifact_rate_is_no_drift_into_flagged(tiny_explained, tmp_path):
    _, ref = tiny_explained
    run = _monitor(ref, tmp_path / "same", ["seed=12"])
    info = json.loads(run.monitor_json.read_text())
    lo, hi = info["flagged_share"]["ci95"]
    assert not info["drift_into_flagged"] and lo <= 0 <= hi
    assert info["n_new"] == len(pd.read_parquet(run.monitor_assignments))


def test_monitor__data_of_another_shape_is_refused(tiny_explained, tmp_path):
    _, ref = tiny_explained
    cfg = monitor_config(ref, None, ["data.image_size=16"])
    run = init_run(cfg, tmp_path / "other")
    run_data(cfg, run)
    with pytest.raises(DataError, match="same image size"):
        run_monitor(cfg, run, ref)
    assert not run.monitor_json.exists()


def test_share_difference__interval_and_exact_test():
    same = share_difference(10, 100, 10, 100)
    assert same["diff"] == 0 and same["ci95"][0] < 0 < same["ci95"][1] and same["p_value"] == 1.0
    up = share_difference(40, 100, 10, 100)
    assert up["ci95"][0] > 0 and up["p_value"] < 1e-4
    lo, hi = wilson_interval(0, 20)
    assert lo == 0 and 0 < hi < 0.2


def test_concept_mix__flagged_first_noise_last_and_shares_sum_to_one():
    ref = np.array([0] * 10 + [1] * 50 + [-1] * 40)
    new = np.array([0] * 40 + [1] * 30 + [-1] * 30)
    concepts = pd.DataFrame({"concept_id": [-1, 0, 1], "label": [0, 0, 1]})
    mix = concept_mix(ref, new, {0: "transplant"}, concepts, alpha=0.01)
    assert mix["concept_id"].tolist() == [0, 1, -1]
    assert mix.loc[0, "drift"] == "up" and np.isclose(mix["new_share"].sum(), 1)
    assert mix_test(mix)["p_value"] < 0.01
    assert mix_test(concept_mix(ref, ref, {}, concepts, 0.01))["p_value"] == 1.0
