"""Runner of the concepts stage."""

from __future__ import annotations

import numpy as np

from soxai.config import Config
from soxai.run_dir import RunDir, read_parquet, write_npy, write_parquet
from soxai.stage import StageRecord, fingerprint, run_stage, upstream


def run_concepts(cfg: Config, run: RunDir) -> StageRecord:
    """Cluster the embedding; write assignments, the concepts table and each concept's mean map."""
    from soxai.concepts.assign import fit_run_concept_model
    from soxai.concepts.cluster import (
        NOISE,
        cluster_embeddings,
        cluster_per_group,
        describe_concepts,
        mean_maps,
        resampling_stability,
        resolve_hdbscan_params,
    )
    from soxai.saliency.runner import read_index, read_maps

    ccfg = cfg.concepts
    fp = fingerprint("concepts", cfg.section_hash("seed", "concepts"), *upstream(run, "embed"))

    def body():
        emb = read_parquet(run.embedding)
        coords = emb[[c for c in emb.columns if c.startswith("u")]].to_numpy()
        labels = emb["label"].to_numpy()
        if ccfg.per_class:
            cids, probs, persistence = cluster_per_group(coords, labels, ccfg.min_cluster_size, ccfg.min_samples)
        else:
            cids, probs, pers = cluster_embeddings(coords, ccfg.min_cluster_size, ccfg.min_samples)
            persistence = {i: float(p) for i, p in enumerate(pers)}
        correct = emb["pred"].to_numpy() == labels
        table = describe_concepts(
            cids, labels, correct, probs, emb["sample_id"].to_numpy(), coords, persistence, ccfg.n_exemplars
        )
        # resampling stability: Jaccard of each concept's members with its best match across subsample re-fits
        groups = labels if ccfg.per_class else np.zeros(len(labels), dtype=np.int64)
        stability: dict[int, float] = {}
        for g in np.unique(groups):
            idx = np.flatnonzero(groups == g)
            mcs, ms = resolve_hdbscan_params(len(idx), ccfg.min_cluster_size, ccfg.min_samples)  # "auto" -> ints
            stability.update(resampling_stability(
                coords[idx], cids[idx], mcs, ms, ccfg.stability_resamples, ccfg.stability_fraction,
                cfg.seed + int(g)))
        table["stability"] = table["concept_id"].map(stability).astype(float)
        real = table.loc[~table["is_noise"], "concept_id"].astype(int).tolist()
        table["map_index"] = table["concept_id"].map({c: i for i, c in enumerate(real)}).fillna(-1).astype(int)
        index = read_index(run).set_index("sample_id").loc[emb["sample_id"]].reset_index()
        maps = mean_maps(read_maps(run, index), cids, real)
        assignments = emb[["sample_id", "label", "pred"]].assign(concept_id=cids, probability=probs)
        out = [
            write_parquet(run.assignments, assignments),
            write_npy(run.concept_maps, maps),
            write_parquet(run.concepts, table),
            *fit_run_concept_model(cfg, run).save(run.concept_model),  # assigns new samples later
        ]
        n_noise = int((cids == NOISE).sum())
        sizes = {str(g): int((labels == g).sum()) for g in np.unique(labels)}
        groups = sizes if ccfg.per_class else {"all": len(labels)}
        # the (min_cluster_size, min_samples) HDBSCAN got, per class: "auto" resolved from each class's size
        params = {
            g: list(resolve_hdbscan_params(n, ccfg.min_cluster_size, ccfg.min_samples)) for g, n in groups.items()
        }
        return out, {
            "n_concepts": len(real),
            "noise_share": round(n_noise / max(len(cids), 1), 4),
            "hdbscan_params": params,
        }

    return run_stage(run, "concepts", fp, body)
