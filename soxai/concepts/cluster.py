"""Kernels: cluster the explanation embedding into concepts and describe each concept."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

NOISE = -1


AUTO = "auto"


def auto_min_cluster_size(n: int) -> int:
    """HDBSCAN's smallest cluster for ``n`` points: 0.5% of them, at least 20, but at most 4% of them (not below 5).

    20 is the size that works on the demo (700 samples per class, an artifact on 210 of them); above
    4,000 points it grows with n, so that a concept stays a share of its class rather than a fixed
    count (167 at 33k per class, the size bench/load.py chose by hand at 100k samples). On the 100k
    cells bench a fixed 20 gave 50 concepts and 2.7% noise, auto 19 and 1.1%, the planted group found
    by both (docs/BENCHMARKS.md). Below 500 points the floor of 20 would hide a subgroup of 5% of a
    class (15 of MNIST's 300 per digit, 5-11 of sklearn's 108 digits per class fell in the noise and
    were never tested), so there a concept may be as small as 4% of the points, and no fewer than 5.
    """
    small = min(20, max(5, round(n / 25)))
    return max(small, round(n / 200))


def auto_min_samples(n: int, min_cluster_size: int) -> int:
    """HDBSCAN's density neighbourhood for ``n`` points: sqrt(n) / 4, clipped to [20, min_cluster_size].

    HDBSCAN's own default (min_samples = min_cluster_size) makes the core-distance search grow with
    n * min_cluster_size; measured on 100k 2-D points, min_samples 500 took 29 s and 79 took 10 s with
    the same clusters. At the demo's sizes this is min_cluster_size, HDBSCAN's default.
    """
    return min(min_cluster_size, max(20, round(float(np.sqrt(n)) / 4)))


def resolve_hdbscan_params(
    n: int, min_cluster_size: int | str, min_samples: int | str | None
) -> tuple[int, int]:
    """The (min_cluster_size, min_samples) that HDBSCAN gets for ``n`` points.

    ``"auto"`` values become :func:`auto_min_cluster_size` / :func:`auto_min_samples`; ``min_samples=None``
    is ``min_cluster_size``. Both are then capped so that HDBSCAN accepts them on small inputs.
    """
    mcs = auto_min_cluster_size(n) if min_cluster_size == AUTO else int(min_cluster_size)
    mcs = max(2, min(mcs, n))
    if min_samples == AUTO:
        ms = auto_min_samples(n, mcs)
    else:
        ms = mcs if min_samples is None else int(min_samples)
    return mcs, max(1, min(ms, n - 1))


def cluster_embeddings(
    x: np.ndarray, min_cluster_size: int | str, min_samples: int | str | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HDBSCAN on points ``x``.

    Parameters
    ----------
    x : array of shape (n_samples, n_dims)
    min_cluster_size, min_samples : ints, or ``"auto"`` (see :func:`resolve_hdbscan_params`)

    Returns
    -------
    labels : int array of shape (n_samples,), -1 for noise, clusters numbered from 0
    probabilities : float array of shape (n_samples,), strength of each membership
    persistence : float array of shape (n_clusters,), stability of each cluster
    """
    import hdbscan

    n = len(x)
    if n < 2:
        return np.full(n, NOISE), np.zeros(n), np.zeros(0)
    mcs, ms = resolve_hdbscan_params(n, min_cluster_size, min_samples)
    model = hdbscan.HDBSCAN(min_cluster_size=mcs, min_samples=ms, core_dist_n_jobs=1).fit(
        np.asarray(x, dtype=np.float64)
    )
    return model.labels_.astype(np.int64), model.probabilities_.astype(np.float32), np.asarray(
        model.cluster_persistence_, dtype=np.float32
    )


def cluster_per_group(
    x: np.ndarray, groups: np.ndarray, min_cluster_size: int | str, min_samples: int | str | None
) -> tuple[np.ndarray, np.ndarray, dict[int, float]]:
    """Cluster each group (class) separately; concept ids run on across groups in sorted group order.

    ``"auto"`` parameters are resolved per group, from the group's size.

    Returns labels (n,), probabilities (n,) and {concept_id: persistence}.
    """
    from soxai.parallel import parallel_map

    labels = np.full(len(x), NOISE, dtype=np.int64)
    probs = np.zeros(len(x), dtype=np.float32)
    persistence: dict[int, float] = {}
    next_id = 0
    members = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    # one piece per group: a task of its own when this runs on a Dask worker (soxai.parallel)
    fits = parallel_map(cluster_embeddings, [x[idx] for idx in members], min_cluster_size, min_samples)
    for idx, (lab, prob, pers) in zip(members, fits, strict=True):
        found = lab >= 0
        labels[idx[found]] = lab[found] + next_id
        probs[idx] = prob
        for j, p in enumerate(pers):
            persistence[next_id + j] = float(p)
        next_id += len(pers)
    return labels, probs, persistence


def describe_concepts(
    concept_ids: np.ndarray,
    labels: np.ndarray,
    correct: np.ndarray,
    probabilities: np.ndarray,
    sample_ids: np.ndarray,
    embedding: np.ndarray,
    persistence: dict[int, float],
    n_exemplars: int,
) -> pd.DataFrame:
    """One row per concept (noise included as -1): size, label mix, accuracy, exemplars, persistence.

    Exemplars are the members closest to the concept's embedding centroid, strongest membership
    breaking ties, so they show what is typical of the concept.
    """
    rows: list[dict[str, Any]] = []
    for cid in np.unique(concept_ids):
        m = concept_ids == cid
        labs, counts = np.unique(labels[m], return_counts=True)
        major = int(labs[np.argmax(counts)])
        centre = embedding[m].mean(axis=0)
        dist = np.linalg.norm(embedding[m] - centre, axis=1) - 1e-6 * probabilities[m]
        order = np.argsort(dist, kind="stable")[:n_exemplars]
        rows.append(
            {
                "concept_id": int(cid),
                "is_noise": bool(cid == NOISE),
                "size": int(m.sum()),
                "label": major,
                "label_purity": float(counts.max() / m.sum()),
                "label_mix": json.dumps({str(int(k)): int(v) for k, v in zip(labs, counts, strict=True)}),
                "accuracy": float(correct[m].mean()),
                "persistence": float(persistence.get(int(cid), 0.0)),
                "exemplars": [str(s) for s in sample_ids[m][order]],
                "x": float(centre[0]),
                "y": float(centre[1]),
            }
        )
    return pd.DataFrame(rows)


def mean_maps(maps: np.ndarray, concept_ids: np.ndarray, ids: list[int]) -> np.ndarray:
    """Mean of each concept's |map| scaled to max 1 per sample.

    Returns float32 array of shape (len(ids), height, width), in the order of ``ids``.
    """
    out = np.zeros((len(ids), *maps.shape[1:]), dtype=np.float32)
    for i, cid in enumerate(ids):
        members = np.abs(np.asarray(maps[concept_ids == cid], dtype=np.float32))
        if len(members):
            peak = members.reshape(len(members), -1).max(axis=1)
            members /= np.where(peak > 0, peak, 1.0)[:, None, None]
            out[i] = members.mean(axis=0)
    return out


def resampling_stability(
    x: np.ndarray,
    labels: np.ndarray,
    min_cluster_size: int,
    min_samples: int | None,
    n_resamples: int,
    fraction: float,
    seed: int,
    max_points: int = 5000,
) -> dict[int, float]:
    """How reliably each concept comes back when HDBSCAN is re-fitted on random subsamples.

    For each of ``n_resamples`` subsamples (``fraction`` of the points, without replacement) the
    points are clustered again; a concept's score for that draw is the best Jaccard index between its
    members in the subsample and any new cluster. The stability is the mean over draws: 1 = the
    concept reappears exactly every time, near 0 = it was an accident of this one fit.

    Parameters
    ----------
    x : array of shape (n_samples, n_dims), the points that were clustered (one group of them)
    labels : int array of shape (n_samples,), their concept ids (-1 = noise)
    max_points : each re-fit draws at most this many points (the fraction shrinks on large groups)

    Returns
    -------
    {concept_id: stability in [0, 1]} for every concept in ``labels``
    """
    ids = [int(c) for c in np.unique(labels) if c != NOISE]
    if not ids or n_resamples == 0:
        return {c: float("nan") for c in ids}
    rng = np.random.default_rng(seed)
    n = len(x)
    # at most max_points per re-fit: at 100k samples five full-size re-fits per class took ~2 minutes
    fraction = min(fraction, max_points / max(n, 1))
    size = max(2, int(round(fraction * n)))
    scores: dict[int, list[float]] = {c: [] for c in ids}
    # the subsample holds fewer points, so the smallest concept shrinks with it
    mcs = max(2, int(round(min_cluster_size * fraction)))
    ms = None if min_samples is None else max(1, int(round(min_samples * fraction)))
    for _ in range(n_resamples):
        pick = np.sort(rng.choice(n, size=size, replace=False))
        new, _, _ = cluster_embeddings(x[pick], mcs, ms)
        old = labels[pick]
        for c in ids:
            mine = old == c
            if not mine.any():
                continue
            best = 0.0
            for k in np.unique(new[mine]):
                if k == NOISE:
                    continue
                theirs = new == k
                best = max(best, float((mine & theirs).sum() / (mine | theirs).sum()))
            scores[c].append(best)
    return {c: float(np.mean(v)) if v else float("nan") for c, v in scores.items()}
