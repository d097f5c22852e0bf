"""The reweight and augment variants through the train, compare and report stages of a tiny cells run."""

import json
import shutil

import numpy as np
import pytest

from soxai.run_dir import RunDir, read_json, read_parquet, write_json

pytestmark = pytest.mark.slow


def _with(cfg, **retrain):
    return cfg.model_copy(update={"retrain": cfg.retrain.model_copy(update=retrain)})


def test_run_train__reweight_and_augment_beside_the_other_variants(tiny_explained, tmp_path):
    from soxai.compare.runner import run_compare
    from soxai.report.runner import read_run, summary_sentence, write_report
    from soxai.train.runner import run_train

    cfg, base = tiny_explained
    run = RunDir(shutil.copytree(base.root, tmp_path / "run"))
    cfg = _with(cfg, variants=("baseline", "reweight", "augment"), seeds=(0, 1))
    flagged = read_json(run.manifest_json)["flagged_concepts"]
    assert flagged, "the tiny run plants an artifact that should be flagged"
    record = run_train(cfg, run)
    # reweight has no tied conflict in the tiny run: it takes the baseline's models (see below)
    assert record.metrics == {"models_trained": 4, "models_reused": 0, "models_from_baseline": 2, "processes": 1}

    samples = read_parquet(run.samples)
    train = samples[samples["split"] == "train"]
    reweight = read_parquet(run.variant_manifest("reweight", 0)).merge(train, on="sample_id")
    assert len(reweight) == len(train)
    per_class = reweight.groupby("label")["weight"].sum()
    np.testing.assert_allclose(per_class.to_numpy(), train.groupby("label").size().to_numpy())
    per_group = reweight.groupby(["label", "concept_id"])["weight"].sum()
    assert per_group.max() <= per_group.groupby(level=0).transform("max").max() + 1e-9
    assert reweight["weight"].max() <= cfg.retrain.reweight_max_upweight + 1e-9
    carriers = read_parquet(run.bias_carriers)
    found = set(carriers.loc[carriers["carries"].astype(bool), "sample_id"])
    assert found and reweight["carrier"].tolist() == reweight["sample_id"].isin(found).tolist()
    assert reweight.loc[reweight["carrier"], "weight"].max() <= 1 + 1e-9  # a shortcut's carriers: never upweighted
    # the tiny run's flag is on a minority of its class, so its conflicts are hard subgroups, tied to no flagged
    # shortcut on most of a class: reweight trains as the baseline and says why for each
    conflicts = read_parquet(run.bias_conflicts)
    named = sorted(int(c) for c in conflicts.loc[conflicts["is_conflict"].astype(bool), "concept_id"])
    assert named and not reweight["conflict"].any() and (reweight["weight"] == 1).all()
    metrics = read_json(run.variant_metrics("reweight", 0))
    assert [(r["concept_id"], r["correction"]) for r in metrics["corrections"]] == [(c, "none") for c in named]
    assert all("no flagged shortcut is carried by most of class" in r["reason"] for r in metrics["corrections"])
    assert "selection" not in metrics
    baseline = read_json(run.baseline_metrics)
    assert cfg.seed == 0 and metrics["splits"] == {s: m for s, m in baseline.items() if s != "train"}
    # nothing to change: the baseline's model for each seed, not a second training (model/ for the run's seed,
    # train/baseline/seed1 for seed 1)
    assert metrics["baseline_model"] is True
    again = read_json(run.variant_metrics("reweight", 1))
    assert again["baseline_model"] is True
    assert again["splits"] == read_json(run.variant_metrics("baseline", 1))["splits"]
    assert _state(run.variant_model("reweight", 1)) == _state(run.variant_model("baseline", 1))
    assert "baseline_model" not in read_json(run.variant_metrics("augment", 1))  # augment pastes: it trains

    augment = read_json(run.variant_metrics("augment", 1))
    ids = read_parquet(run.variant_manifest("augment", 1))
    assert {str(c["concept_id"]) for c in augment["corrections"]} == set(flagged)
    assert all(c["reason"] for c in augment["corrections"])
    assert int(ids["augment_concept"].notna().sum()) == augment["n_augmented"]
    pasted = ids[ids["augment_concept"].notna()].merge(train[["sample_id", "label"]], on="sample_id")
    donors = train.set_index("sample_id").loc[pasted["donor_id"], "label"].to_numpy()
    assert (pasted["label"].to_numpy() != donors).all()  # into other classes' images, with their own labels

    run_compare(cfg, run)
    comp = read_json(run.comparison)
    assert {"reweight", "augment"} <= set(comp["variants"]) & set(comp["gain_over_baseline"])
    assert "ci95" in comp["gain_over_baseline"]["augment"]["test_attacked"]["accuracy"]
    assert set(comp["corrections"]) == {"reweight", "augment"}
    html = write_report(cfg, run).read_text()
    assert 'id="corrections-table"' in html and "<b>augment</b>" in html
    assert "reweighting by concepts found nothing to correct and trained as the baseline" in summary_sentence(
        read_run(run))

    # each model is reused while what it depends on stays; the cap changes only reweight's weights
    assert run_train(cfg, run).reused
    again = run_train(_with(cfg, reweight_max_upweight=2.0), run)
    assert again.metrics == {"models_trained": 0, "models_reused": 4, "models_from_baseline": 2, "processes": 1}


def _state(path):
    from soxai.models.weights import read_safetensors

    return {k: v.tolist() for k, v in read_safetensors(path)[0].items()}


def test_run_train__a_variant_with_nothing_to_change_trains_where_no_current_baseline_model_is_there(
        tiny_explained, tmp_path):
    from soxai.train.runner import run_train

    cfg, base = tiny_explained
    run = RunDir(shutil.copytree(base.root, tmp_path / "run"))
    info = read_json(run.manifest_json)
    write_json(run.manifest_json, {**info, "flagged_concepts": {}})
    cfg = _with(cfg, variants=("augment", "baseline"), seeds=(0, 1))  # the baseline's models train first anyway
    assert run_train(cfg, run).metrics == {"models_trained": 2, "models_reused": 0, "models_from_baseline": 2,
                                           "processes": 1}
    assert read_json(run.variant_metrics("augment", 1))["baseline_model"] is True
    assert "baseline_model" not in read_json(run.variant_metrics("baseline", 1))  # the baseline trains itself
    # a baseline model of another recipe or data is not the baseline's: augment trains its own, the same model
    metrics = read_json(run.variant_metrics("baseline", 1))
    write_json(run.variant_metrics("baseline", 1), {**metrics, "fingerprint": "of another recipe"})
    shutil.rmtree(run.root / "train" / "augment" / "seed1")
    assert run_train(_with(cfg, variants=("augment",)), run).metrics == {
        "models_trained": 1, "models_reused": 1, "models_from_baseline": 0, "processes": 1}
    trained = read_json(run.variant_metrics("augment", 1))
    assert "baseline_model" not in trained and trained["splits"] == metrics["splits"]
    assert _state(run.variant_model("augment", 1)) == _state(run.variant_model("baseline", 1))


def test_run_train__augment_with_nothing_flagged_trains_on_the_unchanged_set(tiny_explained, tmp_path):
    from soxai.train.runner import run_train

    cfg, base = tiny_explained
    run = RunDir(shutil.copytree(base.root, tmp_path / "run"))
    info = read_json(run.manifest_json)
    write_json(run.manifest_json, {**info, "flagged_concepts": {}})
    run_train(_with(cfg, variants=("augment",), seeds=(0, 1)), run)
    metrics = json.loads(run.variant_metrics("augment", 0).read_text())
    assert metrics["n_augmented"] == 0 and metrics["n_train"] == info["n_train"]
    assert [c["correction"] for c in metrics["corrections"]] == ["none"]
    assert "nothing flagged" in metrics["corrections"][0]["reason"]
    ids = read_parquet(run.variant_manifest("augment", 0))
    samples = read_parquet(run.samples)
    assert sorted(ids["sample_id"]) == sorted(samples.loc[samples["split"] == "train", "sample_id"])
    assert ids["augment_concept"].isna().all() and (ids["reason"] == "").all() and (ids["weight"] == 1).all()
    # the baseline's samples and pixels: for the baseline's seed, the baseline model
    baseline = read_json(run.baseline_metrics)
    assert cfg.seed == 0 and metrics["splits"] == {s: m for s, m in baseline.items() if s != "train"}


def test_run_train__augment_reads_the_unclustered_flag_from_the_manifest(tiny_explained, tmp_path):
    """A class the unclustered test flagged (manifest.json's flagged_unclustered; its carriers under concept -1 with
    their own boxes) is augmented through the train stage: its carriers' boxes pasted into other classes."""
    import pandas as pd

    from soxai.bias.carriers import WINDOW_COLUMNS
    from soxai.data.class_names import class_text, read_class_names
    from soxai.run_dir import write_parquet
    from soxai.train.runner import run_train

    cfg, base = tiny_explained
    run = RunDir(shutil.copytree(base.root, tmp_path / "run"))
    info = read_json(run.manifest_json)
    cid = int(next(iter(info["flagged_concepts"])))  # the tiny run's flagged concept, its carriers made unclustered
    carriers = read_parquet(run.bias_carriers)
    found = carriers[(carriers["concept_id"] == cid) & carriers["carries"].astype(bool)].copy()
    k = int(found["label"].iloc[0])
    scores = read_parquet(run.bias_scores)
    box = scores[(scores["concept_id"] == cid) & (scores["detector"] == "transplant")]["box"].iloc[0]
    found["concept_id"] = -1
    found[WINDOW_COLUMNS] = np.asarray(box, dtype=np.float64)
    write_parquet(run.bias_carriers, pd.concat([carriers, found], ignore_index=True))
    write_json(run.manifest_json, {**info, "flagged_concepts": {}, "flagged_unclustered": {str(k): "a moving mark"}})
    run_train(_with(cfg, variants=("augment",), seeds=(0, 1)), run)
    metrics = read_json(run.variant_metrics("augment", 0))
    (row,) = metrics["corrections"]
    assert (row["concept_id"], row["label"], row["correction"]) == (-1, k, "augment")
    named = class_text(k, read_class_names(run))  # "class round": the run's names, as `soxai concepts` shows them
    assert named != f"class {k}"
    assert f"the unclustered samples of {named}" in row["reason"] and metrics["n_augmented"] == row["n_samples"] > 0
    ids = read_parquet(run.variant_manifest("augment", 0))
    pasted = ids[ids["augment_concept"].notna()]
    assert len(pasted) == metrics["n_augmented"] and (pasted["augment_concept"] == -1).all()
    assert pasted["donor_id"].isin(set(found["sample_id"])).all()
    assert pasted["reason"].str.contains(f"the unclustered flag of {named}").all()


def test_run_train__reweight_without_the_conflict_table_says_how_to_get_it(tiny_explained, tmp_path):
    from soxai.errors import StageError
    from soxai.train.runner import run_train

    cfg, base = tiny_explained
    run = RunDir(shutil.copytree(base.root, tmp_path / "run"))
    run.bias_conflicts.unlink()
    with pytest.raises(StageError, match="bias/conflicts.parquet is missing.*run the bias stage again"):
        run_train(_with(cfg, variants=("baseline", "reweight"), seeds=(0, 1)), run)
    assert not any(run.root.glob("train/reweight/*/model.safetensors"))


def test_train_model__a_crash_while_training_leaves_no_metrics_beside_another_models_checkpoint(
        tiny_explained, tmp_path, monkeypatch):
    """The kept metrics.json goes before the new files are written: a model that crashes mid-way leaves no
    metrics.json claiming the checkpoint there (which a variant with nothing to change would take)."""
    import soxai.train.runner as runner
    from soxai.train.variants import VariantPlan

    cfg, base = tiny_explained
    run = RunDir(shutil.copytree(base.root, tmp_path / "run"))
    cfg = _with(cfg, variants=("baseline",), seeds=(0, 1))
    runner.run_train(cfg, run)
    metrics = read_json(run.variant_metrics("baseline", 1))
    write_json(run.variant_metrics("baseline", 1), {**metrics, "fingerprint": "of another recipe"})

    def crashes():
        raise RuntimeError("the machine went down")

    monkeypatch.setattr(runner, "plan_variant", lambda variant, inputs, seed: VariantPlan(
        np.ones(len(inputs.train), dtype=bool), [], crashes))
    with pytest.raises(RuntimeError, match="went down"):
        runner.run_train(cfg, run)
    assert not run.variant_metrics("baseline", 1).exists() and run.variant_model("baseline", 1).exists()
