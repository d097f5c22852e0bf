"""Assigning new samples to the concepts of a fitted run."""

import numpy as np
import pandas as pd
import pytest

from soxai.concepts.assign import ConceptModel, fit_pca, load_run_concept_model, new_sample_features
from soxai.errors import StageError


def _blobs(n_per: int, seed: int):
    # three tight blobs in 12-d: two of class 0, one of class 1
    rng = np.random.default_rng(seed)
    centres = np.eye(12)[:3] * 4
    x = np.concatenate([c + 0.3 * rng.standard_normal((n_per, 12)) for c in centres])
    concept = np.repeat([0, 1, 2], n_per)
    label = np.repeat([0, 0, 1], n_per)
    return x, label, concept


def test_concept_model__fitted_samples_keep_their_concepts_and_held_out_ones_land_in_theirs():
    x, label, concept = _blobs(60, seed=0)
    model = ConceptModel(n_components=5).fit(x, label, concept)
    again = model.assign(x, label)
    assert (again["concept_id"].to_numpy() == concept).mean() >= 0.97
    new_x, new_label, new_concept = _blobs(30, seed=1)
    held_out = model.assign(new_x, new_label)
    assert (held_out["concept_id"].to_numpy() == new_concept).mean() >= 0.95
    assert (held_out["votes"] > 0.5).all() and (held_out["distance"] <= held_out["radius"]).mean() >= 0.95


def test_concept_model__far_samples_and_unknown_classes_are_noise():
    x, label, concept = _blobs(60, seed=0)
    model = ConceptModel(n_components=5).fit(x, label, concept)
    far = np.full((4, 12), 20.0)
    out = model.assign(np.concatenate([far, x[:2]]), np.array([0, 0, 1, 1, 0, 0]))
    assert (out["concept_id"].to_numpy()[:4] == -1).all() and (out["concept_id"].to_numpy()[4:] == 0).all()
    unseen = model.assign(x[:3], np.array([7, 7, 7]))  # a class the reference never saw
    assert (unseen["concept_id"] == -1).all()


def test_concept_model__noise_neighbourhood_votes_noise():
    x, label, concept = _blobs(60, seed=0)
    concept = concept.copy()
    concept[120:] = -1  # the third blob was noise in the reference
    model = ConceptModel(n_components=5).fit(x, label, concept)
    new_x, new_label, _ = _blobs(30, seed=2)
    assert (model.assign(new_x[60:], new_label[60:])["concept_id"] == -1).all()


def test_concept_model__save_load_round_trip_without_pickle(tmp_path):
    x, label, concept = _blobs(40, seed=0)
    model = ConceptModel(n_components=4).fit(x, label, concept, np.array([f"s{i}" for i in range(len(x))]))
    paths = model.save(tmp_path / "model")
    assert {p.suffix for p in paths} == {".npy", ".parquet", ".json"}
    for p in paths:
        if p.suffix == ".npy":
            np.load(p, allow_pickle=False)
    loaded = ConceptModel.load(tmp_path / "model")
    new_x, new_label, _ = _blobs(10, seed=3)
    pd.testing.assert_frame_equal(model.assign(new_x, new_label), loaded.assign(new_x, new_label))


def test_concept_model__wrong_feature_size_says_how_to_fix():
    x, label, concept = _blobs(20, seed=0)
    model = ConceptModel(n_components=3).fit(x, label, concept)
    with pytest.raises(StageError, match="reference run's embed config"):
        model.assign(x[:, :5], label)
    with pytest.raises(StageError, match="run the concepts stage"):
        ConceptModel.load("/nonexistent/model")


def test_fit_pca__axes_are_deterministic_and_orthonormal():
    x, _, _ = _blobs(30, seed=4)
    mean, comps = fit_pca(x, 4)
    mean2, comps2 = fit_pca(x.copy(), 4)
    assert np.array_equal(comps, comps2) and np.allclose(comps @ comps.T, np.eye(4), atol=1e-9)
    assert (comps[np.arange(4), np.abs(comps).argmax(axis=1)] > 0).all()


def test_run_concept_model__reproduces_the_runs_concepts(tiny_explained):
    _, run = tiny_explained
    assert (run.concept_model / "model.json").is_file()
    model = load_run_concept_model(run)
    assign = pd.read_parquet(run.assignments)
    features = np.load(run.features, allow_pickle=False)
    again = model.assign(features, assign["label"].to_numpy())["concept_id"].to_numpy()
    assert (again == assign["concept_id"].to_numpy()).mean() >= 0.9
    real = assign["concept_id"].to_numpy() >= 0
    assert (again[real] == assign["concept_id"].to_numpy()[real]).mean() >= 0.9


def test_run_concept_model__reproduces_the_smoke_runs_concepts_at_the_default_features(smoke_run_dir):
    from soxai.config import load_run_config
    from soxai.run_dir import RunDir

    run = RunDir(smoke_run_dir)
    assert load_run_config(run).embed.features == "channels+pooled"  # the default
    model = load_run_concept_model(run)
    assign = pd.read_parquet(run.assignments)
    features = np.load(run.features, allow_pickle=False)
    again = model.assign(features, assign["label"].to_numpy())["concept_id"].to_numpy()
    real = assign["concept_id"].to_numpy() >= 0
    assert real.any()
    assert (again[real] == assign["concept_id"].to_numpy()[real]).mean() >= 0.9


def test_run_concept_model__held_out_planted_samples_land_in_the_flagged_concept(tiny_explained):
    from soxai.bias.decide import flagged_concepts
    from soxai.data.sources import build_dataset
    from soxai.saliency.runner import explain_rows, explainer_model

    cfg, run = tiny_explained
    flagged = flagged_concepts(pd.read_parquet(run.bias_scores))
    assert flagged, "the tiny run should flag its planted concept"
    new = build_dataset(cfg.data, seed=cfg.seed + 17)  # new images of the same kind
    train = new.samples[new.samples["split"] == "train"]
    model, layer, device = explainer_model(cfg, run)
    _, _, maps = explain_rows(cfg, model, new.images, train["row"].to_numpy(), train["label"].to_numpy(), device,
                              layer)
    out = load_run_concept_model(run).assign(new_sample_features(cfg, maps), train["label"].to_numpy())
    in_flagged = out["concept_id"].isin(list(flagged)).to_numpy()
    planted = (train["group"] == "artifact").to_numpy()
    assert planted.sum() >= 5
    assert in_flagged[planted].mean() >= 0.8  # recall of the planted samples
    assert planted[in_flagged].mean() >= 0.9  # and little else lands there


def test_member_nn_distances__exact_when_small_and_close_when_sampled():
    import numpy as np

    from soxai.concepts.assign import _member_nn_distances, _nearest

    rng = np.random.default_rng(0)
    small = rng.normal(size=(300, 8))
    np.testing.assert_allclose(_member_nn_distances(small), _nearest(small, small, 1, exclude_self=True)[1][:, 0])
    large = rng.normal(size=(5000, 8))
    exact = np.quantile(_nearest(large, large, 1, exclude_self=True)[1][:, 0], 0.95)
    sampled = np.quantile(_member_nn_distances(large, max_queries=1000), 0.95)
    assert abs(sampled - exact) / exact < 0.05
