"""Concepts of a run fitted on a sample: cluster the fitted samples, assign the rest with the concept model.

When the embed stage fitted its embedding on a sample (``embed.fit_sample``; ``fitted`` in
``embed/embedding.parquet``), HDBSCAN clusters only the fitted samples, as the concepts stage always has, and a
:class:`~soxai.concepts.assign.ConceptModel` fitted on them (the model the monitor assigns new samples with)
assigns every other sample, block by block of ``embed/features.npy``. The blocks are independent pieces
(:func:`soxai.parallel.parallel_map`): tasks of their own on a Dask worker, in turn elsewhere, same result.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from soxai.concepts.assign import ConceptModel
from soxai.concepts.cluster import NOISE, cluster_embeddings, cluster_per_group

# rows of features.npy assigned per piece
CHUNK = 262_144


def fit_and_assign(
    coords: np.ndarray,
    labels: np.ndarray,
    fitted: np.ndarray,
    features_path: Path,
    sample_ids: np.ndarray,
    min_cluster_size: int | str,
    min_samples: int | str | None,
    per_class: bool,
    pca_components: int,
    chunk: int = CHUNK,
) -> tuple[np.ndarray, np.ndarray, dict[int, float], ConceptModel]:
    """Concepts of every sample: HDBSCAN on the fitted ones, the concept model's vote for the others.

    Parameters
    ----------
    coords : float array of shape (n_samples, n_dims), the embedding
    labels : int array of shape (n_samples,), the class of each sample
    fitted : bool array of shape (n_samples,), the samples the embedding was fitted on (they are clustered)
    features_path : ``.npy`` file of shape (n_samples, n_features), the explanation vectors (read in blocks)
    sample_ids : array of shape (n_samples,)
    min_cluster_size, min_samples, per_class : the ``concepts`` config section's HDBSCAN settings
    pca_components : axes of the concept model's PCA (``embed.pca_components``, as for a run fitted whole)

    Returns
    -------
    concept_ids : int array (n_samples,), -1 for noise
    probabilities : float32 array (n_samples,): HDBSCAN's membership strength for the fitted samples, the share
        of the nearest fitted samples that voted for the concept for the assigned ones (0 for noise)
    persistence : {concept_id: HDBSCAN's persistence}
    model : the concept model, fitted on the fitted samples and their concepts
    """
    from soxai.embed.sample import read_rows
    from soxai.parallel import parallel_map

    labels = np.asarray(labels, dtype=np.int64)
    pick = np.flatnonzero(fitted)
    if per_class:
        fit_ids, fit_probs, persistence = cluster_per_group(coords[pick], labels[pick], min_cluster_size, min_samples)
    else:
        fit_ids, fit_probs, pers = cluster_embeddings(coords[pick], min_cluster_size, min_samples)
        persistence = {i: float(p) for i, p in enumerate(pers)}
    model = ConceptModel(n_components=pca_components, per_class=per_class)
    model.fit(read_rows(features_path, pick, chunk), labels[pick], fit_ids, np.asarray(sample_ids)[pick])
    concept_ids = np.full(len(labels), NOISE, dtype=np.int64)
    probs = np.zeros(len(labels), dtype=np.float32)
    concept_ids[pick], probs[pick] = fit_ids, fit_probs
    bounds = [(lo, min(lo + chunk, len(labels))) for lo in range(0, len(labels), chunk)]
    # the model and the arrays go to a cluster's workers once (parallel_map scatters what is large)
    for (lo, hi), (ids, votes) in zip(
        bounds, parallel_map(assign_chunk, bounds, features_path, model, labels, fitted), strict=True
    ):
        rest = lo + np.flatnonzero(~fitted[lo:hi])
        concept_ids[rest] = ids
        probs[rest] = np.where(ids == NOISE, 0.0, votes)
    return concept_ids, probs, persistence, model


def assign_chunk(
    bounds: tuple[int, int], features_path: Path, model: ConceptModel, labels: np.ndarray, fitted: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The concept model's concept and vote share for the samples in rows ``bounds`` that were not fitted
    (distances in float32: :meth:`ConceptModel.assign`).

    Returns int64 concept ids and float votes, both of shape (rows in ``bounds`` not fitted,), in row order.
    """
    from soxai.run_dir import read_npy_rows

    lo, hi = bounds
    rest = np.flatnonzero(~fitted[lo:hi])
    if not len(rest):
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    assigned = model.assign(read_npy_rows(features_path, lo, hi)[rest], labels[lo:hi][rest], float32=True)
    return assigned["concept_id"].to_numpy(dtype=np.int64), assigned["votes"].to_numpy(dtype=np.float64)


def mean_maps_streamed(
    blocks: Iterable[np.ndarray], concept_ids: np.ndarray, ids: list[int], shape: tuple[int, int]
) -> np.ndarray:
    """:func:`soxai.concepts.cluster.mean_maps` over maps that come in consecutive blocks (flat memory).

    Parameters
    ----------
    blocks : arrays of shape (m_i, height, width) whose rows, one after another, are the samples of ``concept_ids``
    concept_ids : int array of shape (n_samples,)
    ids : the concepts, in the order of the output
    shape : (height, width) of a map

    Returns
    -------
    float32 array of shape (len(ids), height, width): each concept's mean of |map| scaled to max 1 per sample
    (summed in float64 block by block; equal to mean_maps up to rounding)
    """
    sums = np.zeros((len(ids), *shape), dtype=np.float64)
    counts = np.zeros(len(ids), dtype=np.int64)
    slot = {c: i for i, c in enumerate(ids)}
    lo = 0
    for block in blocks:
        cids = concept_ids[lo : lo + len(block)]
        lo += len(block)
        for c in np.unique(cids):
            if int(c) not in slot:
                continue
            members = np.abs(np.asarray(block[cids == c], dtype=np.float32))
            peak = members.reshape(len(members), -1).max(axis=1)
            members /= np.where(peak > 0, peak, 1.0)[:, None, None]
            sums[slot[int(c)]] += members.sum(axis=0)
            counts[slot[int(c)]] += len(members)
    return (sums / np.maximum(counts, 1)[:, None, None]).astype(np.float32)
