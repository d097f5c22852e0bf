"""umap-learn's ``euclidean`` over every pair of rows in one numba loop: the distance matrix of UMAP's own search
below :data:`soxai.embed.neighbors.UMAP_SMALL` samples (:func:`soxai.embed.neighbors.small_data_knn`). A module of
its own because importing numba and umap takes seconds; only the embedding imports it."""

from __future__ import annotations

import numba
import numpy as np
from umap.distances import euclidean


@numba.njit(cache=True)
def pairwise_euclidean(x):  # pragma: no cover - compiled by numba
    """Every pair of rows of ``x`` (float32, C-contiguous) in the order scikit-learn's ``_pairwise_callable`` takes
    them: each pair i < j once, stored in both halves in the input's precision, then the diagonal."""
    n = x.shape[0]
    out = np.zeros((n, n), dtype=x.dtype)
    for i in range(n):
        for j in range(i + 1, n):
            d = euclidean(x[i], x[j])
            out[i, j] = d
            out[j, i] = d
    for i in range(n):
        out[i, i] = euclidean(x[i], x[i])
    return out
