"""Exact k-nearest-neighbour search, and when soxai uses it instead of UMAP's own search.

Shared by the UMAP embedding (:func:`soxai.embed.features.embed_features`) and SpRAy's spectral
embedding (:mod:`soxai.embed.spectral`).
"""

from __future__ import annotations

import numpy as np

# UMAP finds the neighbours of fewer than this many samples exactly itself (all pairwise distances), and
# those of more with NN-descent (pynndescent).
UMAP_SMALL = 4096

# knn=auto searches exactly up to this many samples. On this project's 2-core machine an exact search of
# 32 PCA dimensions took 0.5 s at 16k, 6 s at 64k and 15 s at 100k, while NN-descent, fast itself (2.6 s at
# 100k), is compiled by numba in every new process (~20 s; its kernels are not cached). See
# docs/BENCHMARKS.md (embed + concepts at 100k; peers).
EXACT_KNN_MAX = 120_000


def exact_knn_wanted(n: int, knn: str) -> bool:
    """Whether soxai searches the ``n`` samples' neighbours exactly and hands them to UMAP.

    ``knn``: 'exact' always, 'approximate' never (UMAP's own choice: exact below :data:`UMAP_SMALL`,
    NN-descent above), 'auto' up to :data:`EXACT_KNN_MAX` samples. Below UMAP_SMALL UMAP's own search is
    already exact, so its neighbours are kept, found by :func:`small_data_knn` (the embedding UMAP alone gives).
    """
    if knn not in ("auto", "exact", "approximate"):
        raise ValueError(f"unknown embed.knn {knn!r}; use auto, exact or approximate")
    if n < UMAP_SMALL or knn == "approximate":
        return False
    return knn == "exact" or n <= EXACT_KNN_MAX


def small_data_knn(x: np.ndarray, n_neighbors: int) -> tuple[np.ndarray, np.ndarray]:
    """The neighbours UMAP's own search finds below :data:`UMAP_SMALL` samples, bit for bit, in the form
    ``precomputed_knn`` takes: all pairwise distances by umap-learn's ``euclidean`` kernel, stored in the
    precision scikit-learn stores them in, then UMAP's own ``fast_knn_indices`` (a stable sort per row).

    UMAP computes that matrix through scikit-learn's ``pairwise_distances`` with a numba function as the metric,
    which scikit-learn calls from Python once per pair: 5.8 s of an 8.1-s embedding of the demo's 2,100 vectors
    on a 2-core machine, against 0.07 s for the same calls in one compiled loop
    (:func:`soxai.embed.umap_small.pairwise_euclidean`). The graph, and so the embedding, is the one UMAP alone
    gives (tests/embed/test_knn.py).

    x : float32 array of shape (n_samples, n_dims), n_samples > n_neighbors.

    Returns
    -------
    indices : int32 array of shape (n_samples, n_neighbors)
    distances : float array of shape (n_samples, n_neighbors), the matrix's entries at ``indices``
    """
    from sklearn.metrics import pairwise_distances
    from umap.distances import euclidean
    from umap.utils import fast_knn_indices

    from soxai.embed.umap_small import pairwise_euclidean  # numba: imported where it is used

    x = np.ascontiguousarray(x, dtype=np.float32)  # what UMAP's check_array hands its search
    # the precision scikit-learn stores that matrix in (float32 for float32 rows in scikit-learn 1.9, float64 in
    # older releases), asked of it on two rows: the neighbours at a near-tie follow from it
    dtype = pairwise_distances(x[:2], metric=euclidean).dtype
    dmat = pairwise_euclidean(x, np.zeros((len(x), len(x)), dtype=dtype))
    idx = fast_knn_indices(dmat, n_neighbors)
    return idx, dmat[np.arange(len(x))[:, None], idx].copy()


def exact_knn(x: np.ndarray, n_neighbors: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact Euclidean k nearest neighbours of every row of ``x`` among the rows, itself included, in the
    form UMAP's ``precomputed_knn`` takes (UMAP's own neighbour lists start with the sample itself).

    Returns
    -------
    indices : int32 array of shape (n_samples, n_neighbors)
    distances : float32 array of shape (n_samples, n_neighbors), ascending along each row
    """
    from sklearn.neighbors import NearestNeighbors

    dist, idx = NearestNeighbors(n_neighbors=n_neighbors).fit(x).kneighbors(x)
    return idx.astype(np.int32), dist.astype(np.float32)


def nearest(points: np.ndarray, queries: np.ndarray, k: int, exclude_self: bool = False,
            chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Indices and distances of the k nearest ``points`` of each query, nearest first (ties by index).

    The concept model's vote (soxai.concepts.assign) and the placement of samples outside the fitted sample
    (soxai.embed.sample) search with this. Squared distances are computed by BLAS in chunks of ``chunk``
    queries, in the inputs' precision (float32 is about 10 times faster than float64 here); the k smallest
    of each row are picked with torch's top-k and ordered by (distance, index), exactly what a stable full
    sort of the row gives (a row with a tie at the k-th distance is sorted whole), at a fraction of its
    cost (a full sort of 20,000 distances per query was most of the time).

    Parameters
    ----------
    points : array of shape (n_points, n_dims)
    queries : array of shape (n_queries, n_dims)
    exclude_self : query i is point i (the same array); it is not its own neighbour

    Returns
    -------
    indices : int64 array of shape (n_queries, min(k, n_points - exclude_self))
    distances : float64 array of the same shape
    """
    k = max(0, min(k, len(points) - int(exclude_self)))
    idx = np.empty((len(queries), k), dtype=np.int64)
    dist = np.empty((len(queries), k), dtype=np.float64)
    if k == 0:
        return idx, dist
    sq = (points**2).sum(axis=1)
    for lo in range(0, len(queries), chunk):
        q = queries[lo : lo + chunk]
        # in place, in the order of (q**2).sum(1)[:, None] - 2 * q @ points.T + sq: the same bits, no temporaries
        d2 = (2 * q) @ points.T
        np.subtract((q**2).sum(axis=1)[:, None], d2, out=d2)
        d2 += sq[None, :]
        np.maximum(d2, 0.0, out=d2)
        if exclude_self:
            d2[np.arange(len(q)), np.arange(lo, lo + len(q))] = np.inf
        order = smallest_k(d2, k)
        idx[lo : lo + len(q)] = order
        dist[lo : lo + len(q)] = np.sqrt(np.take_along_axis(d2, order, axis=1))
    return idx, dist


def smallest_k(d2: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k smallest values of each row of ``d2`` (no NaN), ordered by (value, index):
    ``np.argsort(d2, axis=1, kind="stable")[:, :k]``, computed with a partial selection.

    Returns int64 array of shape (n_rows, k).
    """
    import torch

    m = len(d2)
    out = np.empty((m, k), dtype=np.int64)
    if m == 0:
        return out
    # the k+1 smallest: top-k's set is the stable sort's unless a value outside it equals the k-th, which is so
    # exactly when the (k+1)-th smallest equals the k-th (a check on k+1 values instead of a pass over the row)
    extra = k < d2.shape[1]
    values, picked = torch.topk(torch.from_numpy(d2), k + extra, dim=1, largest=False, sorted=True)
    values, picked = values.numpy(), picked.numpy()
    plain = values[:, k] > values[:, k - 1] if extra else np.ones(m, dtype=bool)
    values, picked = values[:, :k], picked[:, :k]
    by_index = np.argsort(picked[plain], axis=1)  # then by value, stably: ties in index order
    cols = np.take_along_axis(picked[plain], by_index, axis=1)
    order = np.argsort(np.take_along_axis(values[plain], by_index, axis=1), axis=1, kind="stable")
    out[plain] = np.take_along_axis(cols, order, axis=1)
    tied = np.flatnonzero(~plain)  # several values equal the k-th: sort those rows whole
    if len(tied):
        out[tied] = np.argsort(d2[tied], axis=1, kind="stable")[:, :k]
    return out
