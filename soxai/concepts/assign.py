"""Assign new samples to the concepts of a fitted run, or to noise when they are far from all of them.

HDBSCAN has no ``predict`` for points it did not cluster, and UMAP's fitted state is only kept by
pickling it. The concept model therefore lives in the space before UMAP: a PCA of the run's
explanation vectors (``embed/features.npy``), the projected reference samples with their concept
labels, and a radius per concept. A new sample gets the concept most of its nearest reference
samples (of its class, when concepts were found per class) belong to, and noise when that vote goes
to noise or when the sample lies farther from the concept's nearest member than the concept's own
members lie from each other (times a margin).

Every fitted array ends in ``_``; the model is saved as ``.npy``/``.parquet``/``.json`` files in
``concepts/model/`` and loaded without pickle.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from soxai.concepts.cluster import NOISE
from soxai.embed.neighbors import nearest as _nearest
from soxai.errors import StageError

log = logging.getLogger("soxai")

MODEL_VERSION = 1


def fit_pca(x: np.ndarray, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    """Principal axes of ``x`` by SVD, signs fixed so that the largest loading of each axis is positive.

    Parameters
    ----------
    x : array of shape (n_samples, n_features)
    n_components : wanted axes (capped by n_samples and n_features)

    Returns
    -------
    mean : float64 array of shape (n_features,)
    components : float64 array of shape (k, n_features)
    """
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    k = max(1, min(n_components, *x.shape))
    comps = vt[:k]
    signs = np.sign(comps[np.arange(k), np.abs(comps).argmax(axis=1)])
    return mean, comps * np.where(signs == 0, 1.0, signs)[:, None]


def _member_nn_distances(members: np.ndarray, max_queries: int = 2000, seed: int = 0,
                         chunk: int = 2048) -> np.ndarray:
    """Distance from members to their nearest other member: every member up to ``max_queries``, else a
    seeded sample of that many (each still against all members), so large concepts cost O(n) not O(n^2)."""
    n = len(members)
    queries = np.arange(n) if n <= max_queries else np.sort(
        np.random.default_rng(seed).choice(n, size=max_queries, replace=False))
    sq = (members**2).sum(axis=1)
    out = np.empty(len(queries), dtype=np.float64)
    for lo in range(0, len(queries), chunk):
        qi = queries[lo : lo + chunk]
        d2 = np.maximum(sq[qi][:, None] - 2 * members[qi] @ members.T + sq[None, :], 0.0)
        d2[np.arange(len(qi)), qi] = np.inf
        out[lo : lo + len(qi)] = np.sqrt(d2.min(axis=1))
    return out


def _vote(votes: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The majority of each row of neighbour concepts, ties to the nearest voter among the tied concepts.

    Parameters
    ----------
    votes : int array of shape (n, k), the concepts of each query's neighbours, nearest first
    dist : float array of shape (n, k), their distances

    Returns
    -------
    winner : int array (n,); share : float array (n,), the winner's share of the k votes; distance : float
    array (n,), to the winner's nearest voter (the nearest neighbour when noise wins)
    """
    counts = (votes[:, :, None] == votes[:, None, :]).sum(axis=2)  # votes for each voter's own concept
    top = counts.max(axis=1)
    first = np.argmax(counts == top[:, None], axis=1)  # the nearest voter of a most-voted concept
    rows = np.arange(len(votes))
    winner = votes[rows, first]
    mine = np.where(votes == winner[:, None], dist, np.inf).min(axis=1)
    return winner, top / votes.shape[1], np.where(winner == NOISE, dist[:, 0], mine)


@dataclass
class ConceptModel:
    """Nearest-neighbour assignment of explanation vectors to fitted concepts.

    Parameters
    ----------
    n_components : PCA axes the vectors are compared in
    n_neighbors : reference samples that vote on a new sample's concept
    radius_quantile, radius_margin : a concept's radius is ``radius_margin`` times the
        ``radius_quantile`` quantile of its members' distances to their nearest fellow member; a new
        sample farther than that from every member is noise
    per_class : compare a sample only with reference samples of its own class (as concepts were found)
    """

    n_components: int = 32
    n_neighbors: int = 10
    radius_quantile: float = 0.95
    radius_margin: float = 1.5
    per_class: bool = True
    mean_: np.ndarray = field(default=None, repr=False)
    components_: np.ndarray = field(default=None, repr=False)
    points_: np.ndarray = field(default=None, repr=False)
    labels_: np.ndarray = field(default=None, repr=False)
    concepts_: np.ndarray = field(default=None, repr=False)
    sample_ids_: np.ndarray = field(default=None, repr=False)
    radius_: dict[int, float] = field(default=None, repr=False)

    def fit(self, features: np.ndarray, labels: np.ndarray, concept_ids: np.ndarray,
            sample_ids: np.ndarray | None = None) -> ConceptModel:
        """Fit on the reference run's explanation vectors and their concept labels.

        Parameters
        ----------
        features : array of shape (n_samples, n_features), the embed stage's vectors
        labels : int array of shape (n_samples,), the class of each sample
        concept_ids : int array of shape (n_samples,), -1 for noise
        sample_ids : array of shape (n_samples,), kept to say which reference sample is nearest
        """
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or len(features) < 2:
            raise StageError(f"a concept model needs at least 2 explanation vectors, got shape {features.shape}")
        if not len(features) == len(labels) == len(concept_ids):
            raise StageError(f"features ({len(features)}), labels ({len(labels)}) and concept ids "
                             f"({len(concept_ids)}) must describe the same samples")
        self.mean_, self.components_ = fit_pca(features, self.n_components)
        self.points_ = self.transform(features)
        self.labels_ = np.asarray(labels, dtype=np.int64)
        self.concepts_ = np.asarray(concept_ids, dtype=np.int64)
        n = len(features)
        self.sample_ids_ = np.asarray(sample_ids if sample_ids is not None else np.arange(n)).astype(str)
        self.radius_ = {}
        for cid in np.unique(self.concepts_[self.concepts_ != NOISE]):
            members = self.points_[self.concepts_ == cid]
            if len(members) < 2:
                self.radius_[int(cid)] = 0.0
                continue
            d = _member_nn_distances(members, seed=int(cid))
            self.radius_[int(cid)] = float(self.radius_margin * np.quantile(d, self.radius_quantile))
        return self

    def transform(self, features: np.ndarray) -> np.ndarray:
        """Project vectors onto the fitted axes: array of shape (n_samples, k)."""
        self._check_fitted()
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[1] != len(self.mean_):
            raise StageError(
                f"explanation vectors of shape {features.shape} do not match the concept model, which was "
                f"fitted on {len(self.mean_)} features; compute them with the reference run's embed config"
            )
        return (features - self.mean_) @ self.components_.T

    def assign(self, features: np.ndarray, labels: np.ndarray, float32: bool = False) -> pd.DataFrame:
        """Concept of each new sample.

        Parameters
        ----------
        features : array of shape (n_samples, n_features)
        labels : int array of shape (n_samples,), the class of each sample (used when ``per_class``)
        float32 : compare distances in float32 (about 10 times faster; the concepts stage assigns millions of
            samples so); the neighbours can then differ from float64's only where two reference samples lie
            within float32 rounding of the same distance

        Returns
        -------
        DataFrame with one row per sample, in input order: concept_id (-1 = noise), votes (share of
        the nearest reference samples in that concept), distance (to the concept's nearest member;
        to the nearest reference sample for noise), radius (of the concept; NaN for noise),
        nearest_sample_id (the nearest reference sample).
        """
        x = self.transform(features)
        labels = np.asarray(labels, dtype=np.int64)
        n = len(x)
        out = {"concept_id": np.full(n, NOISE, dtype=np.int64), "votes": np.zeros(n),
               "distance": np.full(n, np.inf), "radius": np.full(n, np.nan),
               "nearest_sample_id": np.full(n, "", dtype=object)}
        groups = np.unique(labels) if self.per_class else [None]
        for g in groups:
            q_rows = np.flatnonzero(labels == g) if g is not None else np.arange(n)
            ref = np.flatnonzero(self.labels_ == g) if g is not None else np.arange(len(self.points_))
            if len(ref) == 0 or len(q_rows) == 0:
                continue  # a class the reference never saw: its samples stay noise
            dtype = np.float32 if float32 else np.float64
            idx, dist = _nearest(self.points_[ref].astype(dtype), x[q_rows].astype(dtype), self.n_neighbors,
                                 chunk=512 if float32 else 2048)  # 512: the float32 blocks stay in cache
            out["nearest_sample_id"][q_rows] = self.sample_ids_[ref][idx[:, 0]]
            winner, share, d = _vote(self.concepts_[ref][idx], dist)
            radius = self._radius_of(winner)
            real = winner != NOISE
            out["distance"][q_rows], out["votes"][q_rows] = d, share
            out["radius"][q_rows[real]] = radius[real]
            inside = real & (d <= radius)
            out["concept_id"][q_rows[inside]] = winner[inside]
        return pd.DataFrame(out)

    def _radius_of(self, concept_ids: np.ndarray) -> np.ndarray:
        """The radius of each concept in ``concept_ids`` (0 for one without a radius, noise among them)."""
        ids = np.array(sorted(self.radius_), dtype=np.int64)
        if len(ids) == 0:
            return np.zeros(len(concept_ids))
        values = np.array([self.radius_[int(c)] for c in ids], dtype=np.float64)
        pos = np.minimum(np.searchsorted(ids, concept_ids), len(ids) - 1)
        return np.where(ids[pos] == concept_ids, values[pos], 0.0)

    @property
    def nbytes(self) -> int:
        """Bytes of the fitted arrays: soxai.parallel.parallel_map sends a model this large to a cluster's
        workers once (scattered), not once per chunk of samples it assigns."""
        arrays = (self.mean_, self.components_, self.points_, self.labels_, self.concepts_, self.sample_ids_)
        return int(sum(a.nbytes for a in arrays if a is not None))

    # ------------------------------------------------------------ persistence (no pickle)

    def save(self, folder: str | Path) -> list[Path]:
        """Write the model as ``model.json``, ``pca_mean.npy``, ``pca_components.npy``,
        ``points.npy`` and ``reference.parquet`` (sample_id, label, concept_id); returns the paths."""
        from soxai.run_dir import write_json, write_npy, write_parquet

        self._check_fitted()
        folder = Path(folder)
        ref = pd.DataFrame({"sample_id": self.sample_ids_, "label": self.labels_, "concept_id": self.concepts_})
        meta = {
            "version": MODEL_VERSION, "n_components": self.n_components, "n_neighbors": self.n_neighbors,
            "radius_quantile": self.radius_quantile, "radius_margin": self.radius_margin,
            "per_class": self.per_class, "n_reference": len(ref),
            "radius": {str(k): v for k, v in sorted(self.radius_.items())},
        }
        return [
            write_npy(folder / "pca_mean.npy", self.mean_),
            write_npy(folder / "pca_components.npy", self.components_),
            write_npy(folder / "points.npy", self.points_),
            write_parquet(folder / "reference.parquet", ref),
            write_json(folder / "model.json", meta),  # last: its presence means the model is complete
        ]

    @classmethod
    def load(cls, folder: str | Path) -> ConceptModel:
        from soxai.run_dir import read_json, read_npy, read_parquet

        folder = Path(folder)
        if not (folder / "model.json").is_file():
            raise StageError(f"no concept model in {folder}; run the concepts stage of that run again")
        meta = read_json(folder / "model.json")
        if meta.get("version") != MODEL_VERSION:
            raise StageError(f"the concept model in {folder} has version {meta.get('version')}, this soxai reads "
                             f"version {MODEL_VERSION}; run the concepts stage of that run again")
        model = cls(n_components=meta["n_components"], n_neighbors=meta["n_neighbors"],
                    radius_quantile=meta["radius_quantile"], radius_margin=meta["radius_margin"],
                    per_class=meta["per_class"])
        ref = read_parquet(folder / "reference.parquet")
        model.mean_ = read_npy(folder / "pca_mean.npy", mmap=False)
        model.components_ = read_npy(folder / "pca_components.npy", mmap=False)
        model.points_ = read_npy(folder / "points.npy", mmap=False)
        model.sample_ids_ = ref["sample_id"].astype(str).to_numpy()
        model.labels_ = ref["label"].to_numpy(dtype=np.int64)
        model.concepts_ = ref["concept_id"].to_numpy(dtype=np.int64)
        model.radius_ = {int(k): float(v) for k, v in meta["radius"].items()}
        return model

    def _check_fitted(self) -> None:
        if self.mean_ is None:
            raise StageError("the concept model is not fitted; call fit() or ConceptModel.load(folder)")


def fit_run_concept_model(cfg, run) -> ConceptModel:
    """The concept model of a run whose embed and concepts stages are complete (not saved).

    For a run fitted on a sample (``embed.fit_sample``; ``fitted`` in the assignments) the model is fitted on the
    fitted samples only, as the concepts stage fitted it.
    """
    from soxai.embed.sample import read_rows
    from soxai.run_dir import npy_shape, read_npy, read_parquet

    assignments = read_parquet(run.assignments)
    n = npy_shape(run.features)[0]
    if n != len(assignments):
        raise StageError(f"{run.features} has {n} rows but {run.assignments} has {len(assignments)}; "
                         "run the embed and concepts stages of that run again")
    if "fitted" in assignments.columns:
        pick = np.flatnonzero(assignments["fitted"].to_numpy())
        features, assignments = read_rows(run.features, pick), assignments.iloc[pick]
    else:
        features = read_npy(run.features, mmap=False)
    model = ConceptModel(n_components=cfg.embed.pca_components, per_class=cfg.concepts.per_class)
    return model.fit(features, assignments["label"].to_numpy(), assignments["concept_id"].to_numpy(),
                     assignments["sample_id"].to_numpy())


def load_run_concept_model(run) -> ConceptModel:
    """The saved concept model of a run; for a run made before models were saved, fitted from its files."""
    from soxai.config import load_run_config

    if (run.concept_model / "model.json").is_file():
        return ConceptModel.load(run.concept_model)
    log.info("no saved concept model in %s; fitting it from embed/features.npy and the assignments", run.root)
    return fit_run_concept_model(load_run_config(run), run)


def new_sample_features(ref_cfg, maps: np.ndarray, **activation_inputs) -> np.ndarray:
    """Explanation vectors of new maps exactly as the reference run's embed stage made its own.

    Parameters
    ----------
    ref_cfg : the reference run's config
    maps : float16 array of shape (n_samples, height, width), as ``soxai.saliency.runner.explain_rows``
        returns them (the precision the saliency stage stores, so new and reference vectors match)
    activation_inputs : model, images, rows, device — passed on to `explanation_features`, which needs
        them (and targets) when the reference run's ``embed.features`` reads model.layer
    """
    from soxai.embed.features import explanation_features

    return explanation_features(ref_cfg, np.asarray(maps, dtype=np.float32), **activation_inputs)


def explain_and_assign(ref_cfg, reference, images, rows: np.ndarray, labels: np.ndarray):
    """Explain ``images[rows]`` with a run's model and assign each explanation to that run's concepts.

    The reference run's model and saliency method make the maps, its embed settings the explanation vectors
    (:func:`new_sample_features`) and its saved concept model the assignment: new samples are described exactly
    as the run's own. The monitor scores new data this way; the reweight correction assigns the validation
    split to the concepts it balances over (soxai.train.selection).

    Returns
    -------
    pred : int array (n,), the reference model's predictions
    assigned : DataFrame of :meth:`ConceptModel.assign`'s rows (concept_id, votes, distance, ...)
    """
    from soxai.saliency.runner import explain_rows, explainer_model

    model, layer, device = explainer_model(ref_cfg, reference)
    rows, labels = np.asarray(rows), np.asarray(labels)
    pred, target, maps = explain_rows(ref_cfg, model, images, rows, labels, device, layer)
    features = new_sample_features(ref_cfg, maps, model=model, images=images, rows=rows, device=device,
                                   targets=target)
    return pred, load_run_concept_model(reference).assign(features, labels)
