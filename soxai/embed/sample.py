"""Fit the embedding on a stratified sample and place every other sample from it (``embed.fit_sample``).

UMAP's time grows faster than the number of samples and its memory with it (1M 64-D vectors: ~10 minutes and
3.2 GiB on 2 cores). Above ``embed.fit_sample`` samples the embed stage fits PCA + UMAP on a seeded sample drawn
per class in proportion to the class sizes, and places each other sample at the distance-weighted mean of the
embedding coordinates of its nearest sampled points of the same class, in PCA space. The explanation vectors
are read from ``embed/features.npy`` block by block, and the blocks are independent pieces
(:func:`soxai.parallel.parallel_map`): tasks of their own on a Dask worker, in turn elsewhere, same result.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from soxai.embed.neighbors import nearest

if TYPE_CHECKING:
    from soxai.embed.config import EmbedConfig

# rows of features.npy read, projected and placed per piece: 256k x 64 float32 is 64 MiB
CHUNK = 262_144


def wants_sample_fit(n: int, fit_sample: int) -> bool:
    """Whether ``n`` samples are fitted on a sample (``embed.fit_sample``; 0 = never)."""
    return 0 < fit_sample < n


def stratified_sample(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Indices of a seeded sample of about ``size`` of the samples, drawn per class in proportion to its size.

    Each class gets ``round(n_class * size / n)`` of its samples, at least one and at most all of them,
    drawn without replacement by one generator seeded with ``seed`` that visits the classes in sorted order.

    Parameters
    ----------
    labels : int array of shape (n_samples,), the class of each sample

    Returns
    -------
    int64 array of the sampled indices, ascending
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    share = size / max(len(labels), 1)
    picks = []
    for g in np.unique(labels):
        members = np.flatnonzero(labels == g)
        quota = min(len(members), max(1, round(len(members) * share)))
        picks.append(rng.choice(members, size=quota, replace=False))
    return np.sort(np.concatenate(picks)) if picks else np.zeros(0, dtype=np.int64)


def read_rows(path: Path, rows: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    """Rows ``rows`` (ascending) of the ``.npy`` array at ``path``, read block by block (flat memory)."""
    from soxai.run_dir import npy_shape, read_npy_rows

    n = npy_shape(path)[0]
    parts = []
    for lo in range(0, n, chunk):
        here = rows[(rows >= lo) & (rows < lo + chunk)]
        if len(here):
            parts.append(read_npy_rows(path, lo, lo + chunk)[here - lo])
    return np.concatenate(parts) if parts else read_npy_rows(path, 0, 0)


def fit_on_sample(
    features_path: Path, labels: np.ndarray, ecfg: EmbedConfig, seed: int, chunk: int = CHUNK
) -> tuple[np.ndarray, np.ndarray]:
    """Embed the vectors in ``features_path`` by fitting on a stratified sample of ``ecfg.fit_sample``.

    Parameters
    ----------
    features_path : ``.npy`` file of shape (n_samples, n_features), the embed stage's vectors
    labels : int array of shape (n_samples,), the class of each sample (the sample and the placement are per class)
    ecfg : the ``embed`` config section (PCA, UMAP or spectral settings, ``fit_sample``)

    Returns
    -------
    embedding : float32 array of shape (n_samples, n_components)
    fitted : bool array of shape (n_samples,), True for the samples PCA + UMAP were fitted on
    """
    from soxai.embed.features import embed_reduced, fit_pca_model
    from soxai.errors import StageError
    from soxai.parallel import parallel_map

    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    pick = stratified_sample(labels, ecfg.fit_sample, seed)
    spectral = ecfg.method == "spectral"
    dims = ecfg.spectral_components if spectral else ecfg.n_components
    if len(pick) < dims + 2:
        raise StageError(f"embed.fit_sample={ecfg.fit_sample} gives {len(pick)} sampled vectors, too few to embed "
                         f"into {dims} dimensions; raise embed.fit_sample (or 0 to fit on every sample)")
    pca_model, pca = fit_pca_model(read_rows(features_path, pick, chunk), ecfg.pca_components, seed)
    emb_fit = embed_reduced(pca, ecfg.spectral_neighbors if spectral else ecfg.umap_neighbors, ecfg.umap_min_dist,
                            dims, seed, ecfg.method, ecfg.umap_epochs, ecfg.knn)
    fitted = np.zeros(n, dtype=bool)
    fitted[pick] = True
    embedding = np.empty((n, emb_fit.shape[1]), dtype=np.float32)
    embedding[pick] = emb_fit
    bounds = [(lo, min(lo + chunk, n)) for lo in range(0, n, chunk)]
    # arrays as arguments of their own: parallel_map sends each large one to a cluster's workers once
    placed = parallel_map(place_chunk, bounds, features_path, pca_model, pca, emb_fit, labels[pick], labels,
                          fitted, ecfg.umap_neighbors)
    for (lo, hi), coords in zip(bounds, placed, strict=True):
        rest = lo + np.flatnonzero(~fitted[lo:hi])
        embedding[rest] = coords
    return embedding, fitted


def place_chunk(
    bounds: tuple[int, int], features_path: Path, pca_model, ref_pca: np.ndarray, ref_emb: np.ndarray,
    ref_labels: np.ndarray, labels: np.ndarray, fitted: np.ndarray, k: int,
) -> np.ndarray:
    """Embedding coordinates of the samples in rows ``bounds`` of ``features_path`` that were not fitted.

    Each is the mean of the coordinates of its ``k`` nearest fitted samples of its class in PCA space, weighted
    by 1 / distance (a sample on a fitted point takes that point's coordinates).

    Parameters
    ----------
    bounds : (start, stop) rows of the features file
    pca_model : the PCA fitted on the sample (scikit-learn)
    ref_pca, ref_emb, ref_labels : the sample's PCA vectors (m, k), embedding (m, d) and classes (m,)
    labels, fitted : int and bool arrays of shape (n_samples,), every sample's class and whether it was fitted

    Returns
    -------
    float32 array of shape (number of rows in ``bounds`` not fitted, d), in row order
    """
    from soxai.run_dir import read_npy_rows

    lo, hi = bounds
    rest = np.flatnonzero(~fitted[lo:hi])
    out = np.zeros((len(rest), ref_emb.shape[1]), dtype=np.float32)
    if not len(rest):
        return out
    x = pca_model.transform(read_npy_rows(features_path, lo, hi)[rest]).astype(np.float32)
    cls = labels[lo:hi][rest]
    for g in np.unique(cls):
        q = np.flatnonzero(cls == g)
        ref = np.flatnonzero(ref_labels == g)
        if not len(ref):  # cannot happen for a stratified sample (every class has a sampled member)
            continue
        idx, dist = nearest(ref_pca[ref], x[q], k, chunk=512)
        weight = 1.0 / np.maximum(dist, 1e-12)
        weight /= weight.sum(axis=1, keepdims=True)
        out[q] = np.einsum("qk,qkd->qd", weight, ref_emb[ref][idx].astype(np.float64)).astype(np.float32)
    return out
