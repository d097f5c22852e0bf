"""UMAP's Euclidean distance over every pair of rows in one numba loop: the distance matrix of UMAP's own search below
:data:`soxai.embed.neighbors.UMAP_SMALL` samples (:func:`soxai.embed.neighbors.small_data_knn`). A module of its own
because importing numba takes seconds; only the embedding imports it.

The distance is umap-learn's ``umap.distances.euclidean`` written out here, not called: numba's on-disk cache of this
module does not notice a change in another package's source, so a call would keep an upgraded umap-learn's old code.
tests/embed/test_knn.py checks that both give the same matrix bit for bit.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(fastmath=True, cache=True)
def _euclidean(x, y):  # pragma: no cover - compiled by numba; umap.distances.euclidean (umap-learn 0.5)
    result = 0.0
    for i in range(x.shape[0]):
        result += (x[i] - y[i]) ** 2
    return np.sqrt(result)


@numba.njit(cache=True)
def pairwise_euclidean(x, out):  # pragma: no cover - compiled by numba
    """Fill ``out`` (n, n), in its own precision, with the distance of every pair of rows of ``x`` (float32,
    C-contiguous) in the order scikit-learn's ``_pairwise_callable`` takes them: each pair i < j once, stored in
    both halves, then the diagonal. Returns ``out``."""
    n = x.shape[0]
    for i in range(n):
        for j in range(i + 1, n):
            d = _euclidean(x[i], x[j])
            out[i, j] = d
            out[j, i] = d
    for i in range(n):
        out[i, i] = _euclidean(x[i], x[i])
    return out
