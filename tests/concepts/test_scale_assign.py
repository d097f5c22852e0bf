"""Fit on a sample, assign the rest: the planted group is found in both halves, the same every time and on Dask."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from soxai.concepts.cluster import mean_maps
from soxai.concepts.scale import fit_and_assign, mean_maps_streamed
from soxai.embed.config import EmbedConfig
from soxai.embed.sample import fit_on_sample
from soxai.run_dir import write_npy

N, FIT = 3000, 1200


def _blob(cy: float, cx: float) -> np.ndarray:
    yy, xx = np.mgrid[0:8, 0:8]
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 2.0).ravel()


def _vectors(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pooled-map-like vectors: 3 classes, two strategies each, a planted corner group in a third of class 0."""
    rng = np.random.default_rng(seed)
    protos = np.array([[_blob(2, 5), _blob(5, 2)], [_blob(3, 3), _blob(6, 6)], [_blob(2, 2), _blob(5, 5)]])
    labels = rng.integers(0, 3, size=N)
    planted = (labels == 0) & (rng.random(N) < 1 / 3)
    x = protos[labels, rng.integers(0, 2, size=N)]
    x[planted] = protos[0, 0] + 1.5 * _blob(0, 7)
    x = np.abs(x * rng.uniform(0.7, 1.3, size=(N, 1)) + rng.normal(0, 0.05, size=x.shape))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels, planted


def _fit(path, labels, chunk=700):
    ecfg = EmbedConfig(features="pooled", fit_sample=FIT)
    emb, fitted = fit_on_sample(path, labels, ecfg, seed=0, chunk=chunk)
    cids, probs, _, model = fit_and_assign(emb, labels, fitted, path, np.arange(N), 30, 10, True, ecfg.pca_components,
                                           chunk=chunk)
    return emb, fitted, cids, probs, model


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    x, labels, planted = _vectors()
    path = write_npy(tmp_path_factory.mktemp("scale") / "features.npy", x)
    return path, labels, planted, _fit(path, labels)


def test_fit_on_sample__fits_the_stratified_share_and_places_the_rest(synthetic):
    _, labels, _, (emb, fitted, *_) = synthetic
    assert abs(int(fitted.sum()) - FIT) <= 3
    for g in range(3):  # per class in proportion
        assert abs(fitted[labels == g].mean() - FIT / N) < 0.01
    assert emb.shape == (N, 2) and np.isfinite(emb).all()


def test_fit_and_assign__assigned_samples_land_in_the_planted_concept(synthetic):
    _, labels, planted, (_, fitted, cids, probs, _) = synthetic
    values, counts = np.unique(cids[fitted & planted], return_counts=True)
    concept = values[np.argmax(counts)]
    assert concept >= 0 and counts.max() >= 0.95 * (fitted & planted).sum()  # HDBSCAN found it on the sample
    assigned = ~fitted & planted
    assert (cids[assigned] == concept).mean() >= 0.95  # recall among the assigned
    assert planted[~fitted & (cids == concept)].mean() >= 0.95  # precision among the assigned
    assert np.all(probs[~fitted & (cids >= 0)] > 0) and np.all(probs[cids < 0] == 0)


def test_fit_on_sample__same_outputs_twice_and_whatever_the_block_size(synthetic):
    """The same bits every time at the same block size. At another block size the concepts, their probabilities
    and the fitted sample's coordinates are the same bits too; the coordinates of the samples placed outside the
    sample may move in the last float32 digit, because BLAS rounds a matrix product by the shape of the block
    (seen with numpy 2.4's OpenBLAS: 653 of 1,800 placed rows, at most 2e-6)."""
    path, labels, _, (emb, fitted, cids, probs, model) = synthetic
    again = _fit(path, labels)
    assert all(np.array_equal(a, b) for a, b in zip((emb, fitted, cids, probs), again[:4], strict=True))
    emb2, fitted2, cids2, probs2, model2 = _fit(path, labels, chunk=1024)
    assert np.array_equal(fitted, fitted2) and np.array_equal(emb[fitted], emb2[fitted])
    np.testing.assert_allclose(emb2, emb, rtol=0, atol=1e-5)
    assert np.array_equal(cids, cids2) and np.array_equal(probs, probs2)
    assert np.array_equal(model.points_, model2.points_)


def test_fit_on_sample__same_outputs_as_tasks_of_a_local_cluster(synthetic):
    distributed = pytest.importorskip("distributed")
    path, labels, _, (emb, fitted, cids, probs, _) = synthetic
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        emb2, fitted2, cids2, probs2, _ = client.submit(_fit, path, labels, pure=False).result()
    assert np.array_equal(emb, emb2) and np.array_equal(fitted, fitted2)
    assert np.array_equal(cids, cids2) and np.array_equal(probs, probs2)


def test_mean_maps_streamed__equals_mean_maps():
    rng = np.random.default_rng(0)
    maps = rng.standard_normal((500, 6, 5)).astype(np.float32)
    cids = rng.integers(-1, 4, size=500)
    ids = [3, 0, 2]  # concept 1 left out, as noise is
    blocks = (maps[i : i + 128] for i in range(0, 500, 128))
    np.testing.assert_allclose(mean_maps_streamed(blocks, cids, ids, (6, 5)), mean_maps(maps, cids, ids), atol=1e-6)


def test_run_concepts__a_run_over_fit_sample_marks_fitted_and_assigned(tiny_explained, tmp_path):
    from soxai.concepts.assign import ConceptModel, fit_run_concept_model
    from soxai.concepts.runner import run_concepts
    from soxai.config import load_config
    from soxai.embed.runner import run_embed
    from soxai.run_dir import RunDir, read_parquet

    cfg, base = tiny_explained
    run = RunDir(shutil.copytree(base.root, tmp_path / "run"))
    cfg = load_config(run.config, ["embed.fit_sample=60", "concepts.min_cluster_size=5"])
    embed, concepts = run_embed(cfg, run), run_concepts(cfg, run)
    emb, assigned = read_parquet(run.embedding), read_parquet(run.assignments)
    n = embed.metrics["n"]
    assert embed.metrics["n_fitted"] + embed.metrics["n_placed"] == n and embed.metrics["n_fitted"] < n
    assert concepts.metrics["n_fitted"] == int(emb["fitted"].sum()) == embed.metrics["n_fitted"]
    assert concepts.metrics["n_assigned"] == embed.metrics["n_placed"]
    assert np.array_equal(assigned["fitted"], emb["fitted"]) and len(assigned) == n
    saved = ConceptModel.load(run.concept_model)
    assert len(saved.points_) == embed.metrics["n_fitted"]  # the model of the fitted samples
    assert np.array_equal(fit_run_concept_model(cfg, run).points_, saved.points_)


def test_write_features__a_block_that_raises_leaves_the_old_features(tiny_explained, tmp_path, monkeypatch):
    import soxai.embed.features as features
    from soxai.embed.runner import write_features
    from soxai.run_dir import RunDir
    from soxai.saliency.runner import read_index

    cfg, base = tiny_explained
    run = RunDir(shutil.copytree(base.root, tmp_path / "run"))
    index = read_index(run)
    index = index[index["split"] == "train"].reset_index(drop=True)
    before = run.features.read_bytes()
    write_features(cfg, run, index, chunk=32)  # block by block: the same file as one pass
    assert run.features.read_bytes() == before
    calls = []
    real = features.explanation_features

    def second_block_fails(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("block 2 failed")
        return real(*args, **kwargs)

    monkeypatch.setattr(features, "explanation_features", second_block_fails)
    with pytest.raises(RuntimeError, match="block 2 failed"):
        write_features(cfg, run, index, chunk=32)
    assert run.features.read_bytes() == before
    assert not [p for p in run.features.parent.iterdir() if p.name.endswith(".tmp")]
