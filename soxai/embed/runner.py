"""Runner of the embed stage."""

from __future__ import annotations

import pandas as pd

from soxai.config import Config
from soxai.run_dir import RunDir, npy_shape, read_npy, write_npy_chunks, write_parquet
from soxai.stage import StageRecord, fingerprint, run_stage, upstream


def run_embed(cfg: Config, run: RunDir) -> StageRecord:
    """Pooled explanation vectors (``embed/features.npy``) and their UMAP (``embed/embedding.parquet``)."""
    from soxai.embed.features import check_embeddable, embed_with_config
    from soxai.embed.sample import fit_on_sample, wants_sample_fit
    from soxai.saliency.runner import read_index

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
        check_embeddable(len(index), ecfg.spectral_components if ecfg.method == "spectral" else ecfg.n_components)
        write_features(cfg, run, index)
        frame = pd.DataFrame({"sample_id": index["sample_id"], "label": index["label"], "pred": index["pred"]})
        metrics = {"n": int(len(frame)), "feature_dim": int(npy_shape(run.features)[1])}
        if wants_sample_fit(len(index), ecfg.fit_sample):
            emb, fitted = fit_on_sample(run.features, index["label"].to_numpy(), ecfg, cfg.seed)
            metrics.update(n_fitted=int(fitted.sum()), n_placed=int((~fitted).sum()))
        else:
            _, emb = embed_with_config(read_npy(run.features, mmap=False), ecfg, cfg.seed)
        for d in range(emb.shape[1]):
            frame[f"u{d}"] = emb[:, d]
        if "n_fitted" in metrics:  # only then: a run below embed.fit_sample keeps the table it always had
            frame["fitted"] = fitted
        return [run.features, write_parquet(run.embedding, frame)], metrics

    return run_stage(run, "embed", fp, body)


# rows of maps turned into vectors at a time: a multiple of the batches inside (pooling 4,096, the layer's
# activations and channel relevance 256), so every batch and every vector is the one a single pass makes
FEATURE_CHUNK = 16_384


def write_features(cfg: Config, run: RunDir, index: pd.DataFrame, chunk: int = FEATURE_CHUNK):
    """``embed/features.npy``: the explanation vector of each row of ``index``, computed and written ``chunk``
    maps at a time (memory flat in the number of samples), the file whole or not at all."""
    from soxai.embed.features import explanation_features
    from soxai.saliency.runner import iter_map_chunks

    inputs = _activation_inputs(cfg, run, index)

    def blocks():
        for lo, maps in zip(range(0, len(index), chunk), iter_map_chunks(run, index, chunk), strict=True):
            here = {k: (v[lo : lo + chunk] if k in ("rows", "targets") else v) for k, v in inputs.items()}
            yield explanation_features(cfg, maps, **here)

    return write_npy_chunks(run.features, len(index), blocks())


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
