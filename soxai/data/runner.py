"""Runner of the data stage, and the readers every later stage uses."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from soxai.config import Config
from soxai.run_dir import (
    RunDir,
    read_json,
    read_npy,
    read_parquet,
    write_json,
    write_npy,
    write_npy_chunks,
    write_parquet,
)
from soxai.stage import StageRecord, fingerprint, run_stage


def run_data(cfg: Config, run: RunDir) -> StageRecord:
    """Build the dataset (generator or user manifest) and store it in the run directory.

    Writes ``data/samples.parquet`` (one row per sample, ``row`` indexes ``data/images.npy``),
    ``data/images.npy`` of shape (N, C, H, W) float32, ``data/masks.npy`` (N, H, W) when the source
    has ground-truth masks, and ``data/info.json`` (class names, image shape, counts).
    """
    from soxai.data.dataset import validate_dataset
    from soxai.data.sources import build_dataset

    parts = [cfg.section_hash("seed", "data")]
    if cfg.data.source == "manifest" and cfg.data.manifest:
        from soxai.data.manifest_source import manifest_hash

        # the manifest and the files it names: an edited image reruns the stage
        parts.append(manifest_hash(cfg.data.manifest))
    if cfg.data.source == "image_folder" and cfg.data.root:
        from soxai.data.image_folder import folder_hash

        parts.append(folder_hash(cfg.data.root))
    fp = fingerprint("data", *parts)

    def body():
        # A rerun starts from an empty data/: should the new data fail its checks, an earlier run's
        # samples and images must not stay behind looking like this run's data.
        for path in (run.samples, run.images, run.masks, run.unmarked, run.unmarked_rows, run.data_info):
            path.unlink(missing_ok=True)
        ds = build_dataset(cfg.data, cfg.seed)
        validate_dataset(ds)
        normalize = _normalization(cfg, ds.images.shape[1])
        # image_folder: the files stay where they are and are read from there (read_images); a manifest's images
        # are decoded and written a block at a time, the same bytes as the whole array written at once
        if isinstance(ds.images, np.ndarray):
            outputs = [write_npy(run.images, ds.images)]
        elif hasattr(ds.images, "blocks"):
            outputs = [write_npy_chunks(run.images, len(ds.images), ds.images.blocks())]
        else:
            outputs = []
        if ds.masks is not None:
            outputs.append(write_npy(run.masks, ds.masks))
        if ds.unmarked is not None:
            # the artifact-free twins of the marked training images: the oracle's training data
            outputs += [write_npy(run.unmarked, ds.unmarked), write_npy(run.unmarked_rows, ds.unmarked_rows)]
        counts = ds.samples.groupby("split").size().to_dict()
        info = {
            "source": cfg.data.source,
            "class_names": list(ds.class_names),
            "n_classes": len(ds.class_names),
            "image_shape": list(ds.images.shape[1:]),
            "has_masks": ds.masks is not None,
            "split_counts": {str(k): int(v) for k, v in counts.items()},
        }
        if normalize is not None:
            info["normalize"] = normalize
        if hasattr(ds.images, "describe"):
            info["storage"] = ds.images.describe()
        outputs.append(write_json(run.data_info, info))
        outputs.append(write_parquet(run.samples, ds.samples))
        return outputs, {"n_samples": int(len(ds.samples)), "split_counts": info["split_counts"]}

    return run_stage(run, "data", fp, body)


def read_samples(run: RunDir) -> pd.DataFrame:
    return read_parquet(run.samples)


def read_images(run: RunDir) -> np.ndarray:
    """Images of shape (N, C, H, W): ``data/images.npy`` memory-mapped, or for an image folder an
    :class:`soxai.data.image_folder.ImageFiles` that decodes the files it is indexed with."""
    info = read_info(run) if run.data_info.is_file() else {}
    if info.get("storage", {}).get("kind") == "files":
        from soxai.data.image_folder import image_files_of

        return image_files_of(info, read_samples(run))
    return read_npy(run.images)


def _normalization(cfg: Config, channels: int) -> dict[str, list[float]] | None:
    """``data.mean`` / ``data.std`` checked against the images' channels (one value, or one per channel)."""
    from soxai.errors import DataError

    if cfg.data.mean is None or cfg.data.std is None:
        return None
    if len(cfg.data.mean) not in (1, channels):
        raise DataError(f"data.mean has {len(cfg.data.mean)} values but the images have {channels} channel(s); "
                        f"give 1 or {channels} values in data.mean and data.std")
    return {"mean": [float(v) for v in cfg.data.mean], "std": [float(v) for v in cfg.data.std]}


def read_info(run: RunDir) -> dict[str, Any]:
    return read_json(run.data_info)


def eval_splits(samples: pd.DataFrame) -> list[str]:
    """Every split other than train is an evaluation split (val first, then sorted)."""
    splits = [s for s in samples["split"].unique() if s != "train"]
    return sorted(splits, key=lambda s: (s != "val", s))


def groups_of(frame: pd.DataFrame) -> np.ndarray | None:
    """The evaluation-only group column, or None when the data has none."""
    if "group" not in frame or frame["group"].isna().all():
        return None
    return frame["group"].fillna("unknown").astype(str).to_numpy()
