import numpy as np
import pytest

from soxai.embed import features as F
from soxai.embed import neighbors as N


def test_exact_knn_wanted__auto_exact_approximate():
    assert not N.exact_knn_wanted(N.UMAP_SMALL - 1, "exact")  # UMAP's own search is exact there
    assert N.exact_knn_wanted(N.UMAP_SMALL, "auto") and N.exact_knn_wanted(N.EXACT_KNN_MAX, "auto")
    assert not N.exact_knn_wanted(N.EXACT_KNN_MAX + 1, "auto")
    assert N.exact_knn_wanted(N.EXACT_KNN_MAX + 1, "exact")
    assert not N.exact_knn_wanted(50_000, "approximate")
    with pytest.raises(ValueError, match="unknown embed.knn"):
        N.exact_knn_wanted(50_000, "fast")


def test_exact_knn__matches_all_pairwise_distances_and_starts_with_self():
    x = np.random.default_rng(0).normal(size=(300, 5)).astype(np.float32)
    idx, dist = N.exact_knn(x, 7)
    assert idx.dtype == np.int32 and dist.dtype == np.float32 and idx.shape == dist.shape == (300, 7)
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    want = np.argsort(d, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(idx, want)
    np.testing.assert_array_equal(idx[:, 0], np.arange(300))
    np.testing.assert_allclose(dist, np.take_along_axis(d, want, axis=1), atol=1e-4)


def test_embed_features__large_input_uses_exact_neighbours_reproducibly(monkeypatch):
    calls = []
    real = F.exact_knn

    def spy(x, k):
        calls.append((len(x), k))
        return real(x, k)

    monkeypatch.setattr(F, "exact_knn", spy)  # where embed_features looks it up
    rng = np.random.default_rng(0)
    n = N.UMAP_SMALL + 100
    x = np.concatenate([rng.normal(0, 0.1, (n // 2, 16)), rng.normal(3, 0.1, (n - n // 2, 16))]).astype(np.float32)
    _, a = F.embed_features(x, 8, 15, 0.0, 2, seed=1, n_epochs=30, knn="auto")
    _, b = F.embed_features(x, 8, 15, 0.0, 2, seed=1, n_epochs=30, knn="auto")
    assert calls == [(n, 15), (n, 15)]
    np.testing.assert_array_equal(a, b)
    gap = np.linalg.norm(a[: n // 2].mean(0) - a[n // 2 :].mean(0))
    assert gap > 3 * max(a[: n // 2].std(0).max(), a[n // 2 :].std(0).max())


def test_cache_umap_kernels__turns_on_numba_cache_of_the_listed_kernels():
    import importlib

    from numba.core.caching import NullCache

    F.cache_umap_kernels()
    found = 0
    for module, name in F._UNCACHED_UMAP_KERNELS:
        kernel = getattr(importlib.import_module(module), name, None)
        if kernel is not None:
            found += 1
            assert not isinstance(kernel._cache, NullCache), name
    assert found == len(F._UNCACHED_UMAP_KERNELS)  # all present in the pinned umap-learn


@pytest.mark.parametrize("dims", [1, 5, 17, 32])
def test_small_data_knn__umap_own_distances_and_neighbours_bit_for_bit(dims):
    from sklearn.metrics import pairwise_distances
    from umap.distances import euclidean
    from umap.utils import fast_knn_indices

    from soxai.embed.umap_small import pairwise_euclidean

    rng = np.random.default_rng(dims)
    x = rng.normal(size=(120, dims)).astype(np.float32)
    x[7] = x[3]  # a duplicate: distance 0 to another sample than itself
    want = pairwise_distances(x, metric=euclidean)  # what UMAP's own search computes below UMAP_SMALL
    got = pairwise_euclidean(x, np.zeros((120, 120), dtype=want.dtype))  # soxai's copy of umap's kernel
    np.testing.assert_array_equal(got, want)
    wide = pairwise_euclidean(x, np.zeros((120, 120)))  # float64, as older scikit-learn stores it
    np.testing.assert_array_equal(wide.astype(want.dtype), want)
    idx, dist = N.small_data_knn(x, 9)
    np.testing.assert_array_equal(idx, fast_knn_indices(want, 9))
    np.testing.assert_array_equal(dist, np.take_along_axis(want, idx.astype(np.int64), axis=1))


def test_embed_reduced__below_umap_small_gives_umap_own_embedding():
    import umap

    from soxai.device import torch_threads

    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(0, 1, (150, 8)), rng.normal(2, 1, (150, 8))]).astype(np.float32)
    got = F.embed_reduced(x, 15, 0.0, 2, seed=4, n_epochs=40, knn="auto")
    with torch_threads():  # UMAP alone, its own search (a Python loop over the pairs)
        want = umap.UMAP(n_neighbors=15, min_dist=0.0, n_components=2, random_state=4, n_jobs=1, init="spectral",
                         n_epochs=40).fit_transform(x).astype(np.float32)
    np.testing.assert_array_equal(got, want)
