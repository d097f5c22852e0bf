"""Runner of the embed stage."""

from __future__ import annotations

import pandas as pd

from soxai.config import Config
from soxai.run_dir import RunDir, write_npy, write_parquet
from soxai.stage import StageRecord, fingerprint, run_stage, upstream


def run_embed(cfg: Config, run: RunDir) -> StageRecord:
    """Pooled explanation vectors (``embed/features.npy``) and their UMAP (``embed/embedding.parquet``)."""
    from soxai.embed.features import embed_features, explanation_features
    from soxai.saliency.runner import read_index, read_maps

    ecfg = cfg.embed
    fp = fingerprint("embed", cfg.section_hash("seed", "embed"), *upstream(run, "saliency"))

    def body():
        index = read_index(run)
        index = index[index["split"] == "train"].reset_index(drop=True)
        features = explanation_features(cfg, read_maps(run, index))
        neighbors = ecfg.spectral_neighbors if ecfg.method == "spectral" else ecfg.umap_neighbors
        _, emb = embed_features(
            features, ecfg.pca_components, neighbors, ecfg.umap_min_dist, ecfg.n_components, cfg.seed, ecfg.method,
            ecfg.umap_epochs,
        )
        frame = pd.DataFrame({"sample_id": index["sample_id"], "label": index["label"], "pred": index["pred"]})
        for d in range(emb.shape[1]):
            frame[f"u{d}"] = emb[:, d]
        out = [write_npy(run.features, features), write_parquet(run.embedding, frame)]
        return out, {"n": int(len(frame)), "feature_dim": int(features.shape[1])}

    return run_stage(run, "embed", fp, body)
