"""Runner of the concepts stage."""

from __future__ import annotations

import numpy as np

from soxai.config import Config
from soxai.run_dir import RunDir, read_npy, read_parquet, write_npy, write_parquet
from soxai.stage import StageRecord, fingerprint, run_stage, upstream


def run_concepts(cfg: Config, run: RunDir) -> StageRecord:
    """Cluster the embedding; write assignments, the concepts table and each concept's mean map."""
    from soxai.concepts.assign import fit_run_concept_model
    from soxai.concepts.cluster import NOISE, describe_concepts, resampling_stability, resolve_hdbscan_params

    ccfg = cfg.concepts
    fp = fingerprint("concepts", cfg.section_hash("seed", "concepts"), *upstream(run, "embed"))

    def body():
        emb = read_parquet(run.embedding)
        coords = emb[[c for c in emb.columns if c.startswith("u")]].to_numpy()
        labels = emb["label"].to_numpy()
        # fitted on a sample (embed.fit_sample): cluster those, assign the rest with the concept model
        fitted = emb["fitted"].to_numpy() if "fitted" in emb.columns else None
        cids, probs, persistence, model = _cluster(cfg, run, emb, coords, fitted)
        correct = emb["pred"].to_numpy() == labels
        table = describe_concepts(
            cids, labels, correct, probs, emb["sample_id"].to_numpy(), coords, persistence, ccfg.n_exemplars
        )
        # resampling stability: Jaccard of each concept's members with its best match across subsample re-fits
        groups = labels if ccfg.per_class else np.zeros(len(labels), dtype=np.int64)
        stability: dict[int, float] = {}
        for g in np.unique(groups):
            idx = np.flatnonzero((groups == g) & (fitted if fitted is not None else True))
            mcs, ms = resolve_hdbscan_params(len(idx), ccfg.min_cluster_size, ccfg.min_samples)  # "auto" -> ints
            stability.update(resampling_stability(
                coords[idx], cids[idx], mcs, ms, ccfg.stability_resamples, ccfg.stability_fraction,
                cfg.seed + int(g)))
        table["stability"] = table["concept_id"].map(stability).astype(float)
        real = table.loc[~table["is_noise"], "concept_id"].astype(int).tolist()
        table["map_index"] = table["concept_id"].map({c: i for i, c in enumerate(real)}).fillna(-1).astype(int)
        maps = _mean_maps(run, emb["sample_id"], cids, real, streamed=fitted is not None)
        assignments = emb[["sample_id", "label", "pred"]].assign(concept_id=cids, probability=probs)
        if fitted is not None:
            assignments["fitted"] = fitted
        out = [
            write_parquet(run.assignments, assignments),
            write_npy(run.concept_maps, maps),
            write_parquet(run.concepts, table),
            # assigns new samples later (the monitor)
            *(model if model is not None else fit_run_concept_model(cfg, run)).save(run.concept_model),
        ]
        n_noise = int((cids == NOISE).sum())
        clustered = labels if fitted is None else labels[fitted]  # HDBSCAN's parameters follow what it clustered
        sizes = {str(g): int((clustered == g).sum()) for g in np.unique(clustered)}
        groups = sizes if ccfg.per_class else {"all": len(clustered)}
        # the (min_cluster_size, min_samples) HDBSCAN got, per class: "auto" resolved from each class's size
        params = {
            g: list(resolve_hdbscan_params(n, ccfg.min_cluster_size, ccfg.min_samples)) for g, n in groups.items()
        }
        metrics = {"n_concepts": len(real), "noise_share": round(n_noise / max(len(cids), 1), 4),
                   "hdbscan_params": params}
        if fitted is not None:
            metrics.update(n_fitted=int(fitted.sum()), n_assigned=int((~fitted).sum()))
        return out, metrics

    return run_stage(run, "concepts", fp, body)


def _cluster(cfg: Config, run: RunDir, emb, coords: np.ndarray, fitted: np.ndarray | None):
    """(concept ids, probabilities, {concept: persistence}, concept model or None) of every row of ``emb``.

    HDBSCAN clusters every sample, or, when the embedding was fitted on a sample (``fitted``), those samples,
    and their concept model assigns the others (soxai.concepts.scale); that model is returned to be saved.
    """
    from soxai.concepts.cluster import cluster_embeddings, cluster_per_group
    from soxai.concepts.scale import fit_and_assign

    ccfg = cfg.concepts
    labels = emb["label"].to_numpy()
    if fitted is not None:
        return fit_and_assign(coords, labels, fitted, run.features, emb["sample_id"].to_numpy(),
                              ccfg.min_cluster_size, ccfg.min_samples, ccfg.per_class, cfg.embed.pca_components)
    if ccfg.per_class:
        return (*cluster_per_group(coords, labels, ccfg.min_cluster_size, ccfg.min_samples), None)
    cids, probs, pers = cluster_embeddings(coords, ccfg.min_cluster_size, ccfg.min_samples)
    return cids, probs, {i: float(p) for i, p in enumerate(pers)}, None


def _mean_maps(run: RunDir, sample_ids, cids: np.ndarray, real: list[int], streamed: bool) -> np.ndarray:
    """Each concept's mean map over the samples ``sample_ids``; block by block when ``streamed`` (a run
    fitted on a sample, whose maps may not fit in memory at once)."""
    from soxai.concepts.cluster import mean_maps
    from soxai.concepts.scale import CHUNK, mean_maps_streamed
    from soxai.saliency.runner import iter_map_chunks, read_index, read_maps

    index = read_index(run).set_index("sample_id").loc[sample_ids].reset_index()
    if not streamed:
        return mean_maps(read_maps(run, index), cids, real)
    shape = read_npy(run.saliency_shard(int(index["shard"].iloc[0]))).shape[1:]
    return mean_maps_streamed(iter_map_chunks(run, index, CHUNK), cids, real, shape)
