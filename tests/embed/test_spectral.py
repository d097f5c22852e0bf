import shutil

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from soxai.embed.spectral import knn_affinity, spectral_embedding


def _blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (3, 16))
    y = np.repeat([0, 1, 2], [300, 150, 60])
    return (centres[y] + rng.normal(0, 0.3, (len(y), 16))).astype(np.float32), y


def test_knn_affinity__symmetric_k_edges_per_row_no_self_loops():
    x, _ = _blobs()
    a = knn_affinity(x, 5)
    assert (a != a.T).nnz == 0 and a.diagonal().sum() == 0
    assert ((a > 0).sum(axis=1) >= 5).all()
    assert set(np.unique(a.data)) <= {0.5, 1.0}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spectral_embedding__deterministic_and_blobs_recovered_by_hdbscan(seed):
    """The blobs are apart, so the k-NN graph has three components: the eigenvalue 1 repeats and any basis of its
    space is ARPACK's answer; keeping all of it (not dropping its first vector) separates them whatever the basis."""
    from soxai.concepts.cluster import NOISE, cluster_embeddings

    x, y = _blobs()
    a = spectral_embedding(x, n_neighbors=10, n_components=3, seed=seed)
    b = spectral_embedding(x, n_neighbors=10, n_components=3, seed=seed)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (len(x), 3) and a.dtype == np.float32
    labels, _, _ = cluster_embeddings(a, min_cluster_size=20)
    found = labels != NOISE
    assert found.mean() >= 0.9 and adjusted_rand_score(y[found], labels[found]) >= 0.95


def test_spectral_embedding__too_few_samples_is_a_clear_error():
    from soxai.errors import StageError

    with pytest.raises(StageError, match="too few"):
        spectral_embedding(np.zeros((3, 4), dtype=np.float32), 10, 2, seed=0)


def test_embed_stage__spectral_method_runs_and_repeats_exactly(tiny_explained, tmp_path):
    from soxai.concepts.runner import run_concepts
    from soxai.config import load_config
    from soxai.embed.runner import run_embed
    from soxai.run_dir import RunDir

    _, base = tiny_explained
    frames = []
    for name in ("a", "b"):
        run = RunDir(shutil.copytree(base.root, tmp_path / name))
        cfg = load_config(run.config, ["embed.method=spectral", "embed.spectral_components=3"])
        record = run_embed(cfg, run)
        assert record.metrics["n"] > 0
        frames.append(pd.read_parquet(run.embedding))
        assert run_concepts(cfg, run).metrics["n_concepts"] >= 1
    pd.testing.assert_frame_equal(frames[0], frames[1])
    assert [c for c in frames[0].columns if c.startswith("u")] == ["u0", "u1", "u2"]
