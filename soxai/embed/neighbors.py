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
    already exact, so it is left to UMAP (and the embedding is the one UMAP alone gives).
    """
    if knn not in ("auto", "exact", "approximate"):
        raise ValueError(f"unknown embed.knn {knn!r}; use auto, exact or approximate")
    if n < UMAP_SMALL or knn == "approximate":
        return False
    return knn == "exact" or n <= EXACT_KNN_MAX


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
