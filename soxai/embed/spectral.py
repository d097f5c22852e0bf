"""SpRAy-style spectral embedding of explanation vectors (Lapuschkin et al. 2019; CoRelAy's pipeline).

SpRAy builds a k-nearest-neighbour affinity graph of the heatmaps, takes the leading eigenvectors of its
normalised affinity (the trailing ones of the normalised Laplacian) and clusters them. CoRelAy does this
on a dense N x N distance matrix; here the graph comes from a k-NN search and stays sparse (N x k), so the
memory grows linearly with N and the eigenvectors come from ARPACK on a sparse matrix.
"""

from __future__ import annotations

import numpy as np

from soxai.embed.neighbors import exact_knn
from soxai.errors import StageError


def knn_affinity(x: np.ndarray, n_neighbors: int):
    """Symmetric 0/1 k-nearest-neighbour affinity, as CoRelAy's ``SparseKNN(symmetric=True)``.

    Parameters
    ----------
    x : array of shape (n_samples, n_features)
    n_neighbors : neighbours per sample, not counting the sample itself (capped at n_samples - 1)

    Returns
    -------
    affinity : scipy.sparse.csr_matrix of shape (n_samples, n_samples), ``(A + A.T) / 2`` with A the
        directed k-NN graph, so an edge found from both sides weighs 1 and from one side 0.5
    """
    import scipy.sparse as sp

    n = len(x)
    k = max(1, min(n_neighbors, n - 1))
    # k + 1: the query returns each sample as its own nearest neighbour, which is then dropped
    idx, _ = exact_knn(x, k + 1)
    cols = idx[:, 1:].ravel()
    rows = np.repeat(np.arange(n), k)
    a = sp.csr_matrix((np.ones(n * k, dtype=np.float64), (rows, cols)), shape=(n, n))
    return ((a + a.T) / 2.0).tocsr()


def spectral_embedding(x: np.ndarray, n_neighbors: int, n_components: int, seed: int) -> np.ndarray:
    """Leading non-trivial eigenvectors of the normalised k-NN affinity ``D^-1/2 A D^-1/2``.

    They are the eigenvectors of the smallest eigenvalues of the symmetric normalised Laplacian
    ``I - D^-1/2 A D^-1/2``. Each is scaled by ``D^-1/2`` (the random-walk eigenvectors, as scikit-learn's
    ``spectral_embedding`` returns them), the first (constant on a connected graph) is dropped (kept on a graph of
    several components, where it is one of several indicator-like vectors), and the
    sign of each is fixed so that its largest entry is positive. ARPACK starts from a vector drawn with
    ``seed``, so the same input and seed give the same embedding on CPU.

    Parameters
    ----------
    x : array of shape (n_samples, n_features), e.g. the PCA of the explanation vectors
    n_neighbors : k of the k-NN graph (CoRelAy's default is 10)
    n_components : eigenvectors kept

    Returns
    -------
    embedding : float32 array of shape (n_samples, n_components)
    """
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components
    from scipy.sparse.linalg import eigsh

    n = len(x)
    if n < n_components + 2:
        raise StageError(
            f"{n} explanation vectors are too few for a spectral embedding into {n_components} dimensions; "
            "compute saliency for more samples (saliency.splits) or use a larger dataset"
        )
    affinity = knn_affinity(np.asarray(x, dtype=np.float32), n_neighbors)
    degree = np.asarray(affinity.sum(axis=1)).ravel()  # every sample has >= k neighbours: no zero degree
    d_inv_sqrt = 1.0 / np.sqrt(degree)
    scale = sp.diags(d_inv_sqrt)
    normalised = (scale @ affinity @ scale).tocsr()
    v0 = np.random.default_rng(seed).uniform(-1.0, 1.0, n)
    # 'LA': the largest algebraic eigenvalues (<= 1); no shift-invert, so nothing N x N is ever factorised
    values, vectors = eigsh(normalised, k=n_components + 1, which="LA", v0=v0, tol=1e-8)
    order = np.argsort(-values, kind="stable")
    # on a connected graph the first is the trivial one (constant after the D^-1/2 scaling); on a graph of several
    # components the eigenvalue 1 repeats, ARPACK returns any basis of that space, and dropping one vector of it
    # would merge components (which two, the BLAS's rounding decides): there the first n_components are kept
    n_parts, _ = connected_components(affinity, directed=False)
    kept = order[1:] if n_parts == 1 else order[:n_components]
    vectors = vectors[:, kept] * d_inv_sqrt[:, None]
    peak = np.argmax(np.abs(vectors), axis=0)
    vectors *= np.sign(vectors[peak, np.arange(vectors.shape[1])])
    # unit spread per dimension, so that HDBSCAN's distances and the plots do not depend on N
    vectors /= np.where(vectors.std(axis=0) > 0, vectors.std(axis=0), 1.0)
    return vectors.astype(np.float32)
