"""Runner of the embed stage."""

from __future__ import annotations

import pandas as pd

from soxai.config import Config
from soxai.run_dir import RunDir, write_npy, write_parquet
from soxai.stage import StageRecord, fingerprint, run_stage, upstream


def run_embed(cfg: Config, run: RunDir) -> StageRecord:
    """Pooled explanation vectors (``embed/features.npy``) and their UMAP (``embed/embedding.parquet``)."""
    from soxai.embed.features import embed_with_config, explanation_features
    from soxai.saliency.runner import read_index, read_maps

    ecfg = cfg.embed
    parts = [cfg.section_hash("seed", "embed")]
    if ecfg.features != "pooled":
        # model.layer is left out of the section hashes (it does not change training); here it
        # picks the activations, so it is part of what this stage produces
        parts.append(f"layer={cfg.model.layer}")
    fp = fingerprint("embed", *parts, *upstream(run, "saliency"))

    def body():
        index = read_index(run)
        index = index[index["split"] == "train"].reset_index(drop=True)
        maps = read_maps(run, index)
        features = explanation_features(cfg, maps, **_activation_inputs(cfg, run, index))
        _, emb = embed_with_config(features, ecfg, cfg.seed)
        frame = pd.DataFrame({"sample_id": index["sample_id"], "label": index["label"], "pred": index["pred"]})
        for d in range(emb.shape[1]):
            frame[f"u{d}"] = emb[:, d]
        out = [write_npy(run.features, features), write_parquet(run.embedding, frame)]
        return out, {"n": int(len(frame)), "feature_dim": int(features.shape[1])}

    return run_stage(run, "embed", fp, body)


def _activation_inputs(cfg: Config, run: RunDir, index: pd.DataFrame) -> dict:
    """What `explanation_features` needs besides the maps when ``embed.features`` uses activations:
    the baseline, the images and their rows in ``index`` order, the device."""
    if cfg.embed.features == "pooled":
        return {}
    from soxai.data.runner import read_images, read_samples
    from soxai.device import resolve_device
    from soxai.train.fit import load_baseline

    rows = index[["sample_id"]].merge(read_samples(run)[["sample_id", "row"]], on="sample_id", how="left",
                                      validate="one_to_one")["row"].to_numpy()
    targets = index["label" if cfg.saliency.target == "label" else "pred"].to_numpy()
    return {"model": load_baseline(cfg, run), "images": read_images(run), "rows": rows,
            "device": resolve_device(cfg.train.device), "targets": targets}
