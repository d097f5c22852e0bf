import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from soxai.concepts.cluster import (
    NOISE,
    auto_min_cluster_size,
    auto_min_samples,
    cluster_embeddings,
    cluster_per_group,
    resolve_hdbscan_params,
)


def _planted(n: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Four Gaussian blobs holding 50%, 30%, 15% and 5% of n points, centres 10 std apart."""
    sizes = (np.array([0.5, 0.3, 0.15, 0.05]) * n).astype(int)
    centres = np.zeros((4, dim))
    centres[1, 0], centres[2, 1], centres[3, :2] = 10.0, 10.0, (10.0, 10.0)
    return make_blobs(n_samples=sizes, centers=centres, cluster_std=1.0, random_state=seed)


@pytest.mark.parametrize("n,dim", [(500, 2), (5000, 2), (20000, 2), (500, 5), (5000, 5)])
@pytest.mark.parametrize("params", [(20, None), ("auto", "auto")], ids=["fixed", "auto"])
def test_cluster_embeddings__recovers_blobs_of_several_sizes_at_several_n(n, dim, params):
    x, y = _planted(n, dim, seed=n + dim)
    labels, _, persistence = cluster_embeddings(x, *params)
    found = labels != NOISE
    assert len(persistence) == 4
    assert found.mean() >= 0.9
    assert adjusted_rand_score(y, labels) >= 0.9 and adjusted_rand_score(y[found], labels[found]) >= 0.98


@pytest.mark.parametrize("n,dim", [(150, 2), (300, 2), (300, 5)])
def test_cluster_embeddings__auto_finds_a_5pct_blob_in_a_small_class(n, dim):
    # 5% of 150 / 300 points is 7 / 15, below the floor of 20 that larger inputs get
    x, y = _planted(n, dim, seed=n + dim)
    labels, _, persistence = cluster_embeddings(x, "auto", "auto")
    assert len(persistence) == 4 and adjusted_rand_score(y, labels) >= 0.9
    smallest = labels[y == 3]
    assert (smallest == np.bincount(smallest[smallest != NOISE]).argmax()).mean() >= 0.8


def test_resolve_hdbscan_params__demo_sizes_keep_hdbscan_defaults_and_auto_grows_with_n():
    # the demo clusters 700 samples per class (2,100 with per_class off): auto gives the former 20 / 20
    assert resolve_hdbscan_params(700, "auto", "auto") == (20, 20)
    assert resolve_hdbscan_params(2100, "auto", "auto") == (20, 20)
    assert resolve_hdbscan_params(700, 20, None) == (20, 20)
    assert auto_min_cluster_size(33_333) == 167 and auto_min_samples(33_333, 167) == 46
    sizes = [auto_min_cluster_size(n) for n in (100, 1_000, 10_000, 100_000, 1_000_000)]
    assert sizes == sorted(sizes) and sizes[-1] == 5000
    assert resolve_hdbscan_params(5, "auto", "auto") == (5, 4)  # capped on tiny inputs
    # below 500 points a concept may be 4% of them (not below 5): a 5% subgroup can still be one
    assert [auto_min_cluster_size(n) for n in (100, 300, 499, 500)] == [5, 12, 20, 20]
    assert resolve_hdbscan_params(1000, 30, 7) == (30, 7)


def test_cluster_per_group__auto_resolves_from_each_group_size():
    # 600 + 12,000 points: sized from all 12,600, min_cluster_size would be 63 and lose the small group's
    # blob of 30; sized per group it is 20 there and 60 in the large group
    xa, ya = _planted(600, 2, seed=1)
    xb, yb = _planted(12000, 2, seed=2)
    x = np.concatenate([xa, xb + 100.0])
    groups = np.repeat([0, 1], [600, 12000])
    labels, _, persistence = cluster_per_group(x, groups, "auto", "auto")
    assert len(persistence) == 8
    assert adjusted_rand_score(ya, labels[:600]) >= 0.9 and adjusted_rand_score(yb, labels[600:]) >= 0.9


def test_concepts_config__auto_ints_and_bad_values():
    from pydantic import ValidationError

    from soxai.concepts.config import ConceptsConfig

    assert ConceptsConfig().min_cluster_size == "auto" and ConceptsConfig().min_samples == "auto"
    assert ConceptsConfig(min_cluster_size=33, min_samples=None).min_cluster_size == 33
    for bad in ({"min_cluster_size": "big"}, {"min_cluster_size": 1}, {"min_samples": 0}):
        with pytest.raises(ValidationError):
            ConceptsConfig(**bad)
