"""Runners of a segmentation run's own stages before embed: data, model (the baseline) and saliency.

They write the files the classification stages write, in the same layout (``data/samples.parquet`` with one row
per image, ``model/baseline.safetensors``, ``saliency/index.parquet`` and float16 shards), so that embed and
concepts run unchanged; the per-pixel class masks go to ``data/label_masks.npy``. The saliency index has one row
per map (image and class present, :mod:`soxai.segmentation.maps`), keyed by its map id.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from soxai.config import Config
from soxai.data.runner import read_images
from soxai.progress import progress
from soxai.run_dir import RunDir, read_json, read_npy, write_json, write_npy, write_parquet
from soxai.stage import StageRecord, fingerprint, run_stage, upstream

#: what the segmentation stages produce for the same config changes: bump to recompute kept run directories
#: (2: the manifest carries split and row, as the classification manifest does; 3: one map per image and class
#: present, keyed by a map id)
LOGIC_VERSION = 3
_EVAL_BATCH = 256


def run_segmentation_data(cfg: Config, run: RunDir) -> StageRecord:
    """Build the segmentation dataset; write samples, images, class masks and ``info.json``."""
    from soxai.data.dataset import validate_dataset
    from soxai.segmentation.data import build_segmentation_data

    parts = [cfg.section_hash("seed", "data"), f"segmentation-v{LOGIC_VERSION}"]
    if cfg.data.source == "manifest" and cfg.data.manifest:
        from soxai.data.manifest_source import manifest_hash

        parts.append(manifest_hash(cfg.data.manifest))  # the manifest and the files it names, masks included
    if cfg.data.source == "image_folder" and cfg.data.root:
        from soxai.data.image_folder import folder_hash

        parts.append(folder_hash(cfg.data.root))
    fp = fingerprint("data", *parts)

    def body():
        for path in (run.samples, run.images, run.masks, run.unmarked, run.unmarked_rows, run.data_info,
                     run.label_masks):
            path.unlink(missing_ok=True)
        seg = build_segmentation_data(cfg.data, cfg.seed)
        ds = seg.dataset
        validate_dataset(ds)
        # an image folder's files stay where they are and are read from there (soxai.data.runner.read_images)
        outputs = [write_npy(run.images, ds.images)] if isinstance(ds.images, np.ndarray) else []
        outputs.append(write_npy(run.label_masks, seg.label_masks))
        if ds.masks is not None:
            outputs.append(write_npy(run.masks, ds.masks))
        if ds.unmarked is not None:
            outputs += [write_npy(run.unmarked, ds.unmarked), write_npy(run.unmarked_rows, ds.unmarked_rows)]
        counts = {str(k): int(v) for k, v in ds.samples.groupby("split").size().to_dict().items()}
        info = {
            "source": cfg.data.source, "task": "segmentation", "class_names": list(ds.class_names),
            "n_classes": ds.n_classes, "segmentation_classes": seg.class_names,
            "image_shape": list(ds.images.shape[1:]), "has_masks": ds.masks is not None, "split_counts": counts,
        }
        if not isinstance(ds.images, np.ndarray):
            info["storage"] = ds.images.describe()
        outputs += [write_json(run.data_info, info), write_parquet(run.samples, ds.samples)]
        return outputs, {"n_samples": int(len(ds.samples)), "split_counts": counts}

    return run_stage(run, "data", fp, body)


def make_segmenter(cfg: Config, info: dict, seed: int):
    from soxai.segmentation.model import build_segmenter

    c, h, _ = info["image_shape"]
    return build_segmenter(cfg, c, len(info["segmentation_classes"]), h, seed)


def load_segmentation_baseline(cfg: Config, run: RunDir):
    from soxai.models.registry import load_checkpoint

    model = make_segmenter(cfg, read_json(run.data_info), cfg.seed)
    load_checkpoint(run.baseline_model, model)
    return model.eval()


def evaluate_segmentation(model, run: RunDir, samples: pd.DataFrame, splits: list[str], device) -> dict:
    """Per split: ``n`` and :func:`soxai.compare.iou.iou_metrics` of the predicted masks against the true ones."""
    from soxai.compare.iou import iou_metrics
    from soxai.segmentation.train import predict_masks

    images, masks = read_images(run), read_npy(run.label_masks)
    names = read_json(run.data_info)["segmentation_classes"]
    out = {}
    for split in splits:
        rows = samples.loc[samples["split"] == split, "row"].to_numpy()
        pred = predict_masks(model, images, rows, device, _EVAL_BATCH)
        out[split] = {"n": int(len(rows)), **iou_metrics(pred, np.asarray(masks[rows]), names)}
    return out


def fit_segmenter(cfg: Config, run: RunDir, rows: np.ndarray, seed: int, what: str):
    """A fresh network trained on ``rows`` of the run's images and class masks; (model, device)."""
    from soxai.device import resolve_device
    from soxai.segmentation.train import train_segmenter

    device = resolve_device(cfg.train.device)
    model = make_segmenter(cfg, read_json(run.data_info), seed)
    with progress(f"train {what}", cfg.train.epochs, unit="epochs") as advance:
        train_segmenter(model, read_images(run), read_npy(run.label_masks), rows, cfg.train, seed, device,
                        on_epoch=lambda e, loss: advance(1))
    return model, device


def run_segmentation_model(cfg: Config, run: RunDir) -> StageRecord:
    """Train the baseline segmentation network (or load ``model.checkpoint``); its IoU per split."""
    from soxai.data.runner import eval_splits, read_samples
    from soxai.device import resolve_device
    from soxai.models.registry import load_checkpoint, save_checkpoint

    parts = [cfg.section_hash("seed", "model", "train"), f"segmentation-v{LOGIC_VERSION}"]
    if cfg.model.checkpoint:
        from soxai.stage import file_hash

        parts.append(file_hash(cfg.model.checkpoint))
    fp = fingerprint("model", *parts, *upstream(run, "data"))

    def body():
        samples = read_samples(run)
        if cfg.model.checkpoint:
            model = make_segmenter(cfg, read_json(run.data_info), cfg.seed)
            load_checkpoint(cfg.model.checkpoint, model)
            device = resolve_device(cfg.train.device)
        else:
            rows = samples.loc[samples["split"] == "train", "row"].to_numpy()
            model, device = fit_segmenter(cfg, run, rows, cfg.seed, "baseline")
        metrics = {"splits": evaluate_segmentation(model, run, samples, eval_splits(samples), device)}
        out = [save_checkpoint(run.baseline_model, model.cpu(), {"task": "segmentation"}),
               write_json(run.baseline_metrics, metrics)]
        return out, {s: round(m["miou"], 4) for s, m in metrics["splits"].items()}

    return run_stage(run, "model", fp, body)


def run_segmentation_saliency(cfg: Config, run: RunDir) -> StageRecord:
    """One map per training image and foreground class present in its true mask, through ``saliency.method``.

    The explained score is Seg-Grad-CAM's (:class:`soxai.segmentation.target.SegmentationTarget`): class
    ``c``'s logits summed over the pixels predicted as it. ``index.parquet`` keeps the classification layout with
    one row per map (:func:`soxai.segmentation.maps.explained_maps`): ``sample_id`` the map id, ``image_id`` the
    image's sample_id, ``label`` the explained class's shape index, ``target`` the explained segmentation class,
    ``pred`` the foreground class the network gives most of that class's pixels (-1 for none).
    """
    from soxai.data.runner import read_samples
    from soxai.device import resolve_device
    from soxai.saliency.methods import iter_maps
    from soxai.saliency.runner import _to_half
    from soxai.segmentation.maps import explained_maps
    from soxai.segmentation.target import SegmentationTarget
    from soxai.segmentation.train import predict_masks

    scfg = cfg.saliency
    fp = fingerprint("saliency", cfg.section_hash("saliency"), str(cfg.model.layer),
                     f"segmentation-v{LOGIC_VERSION}", *upstream(run, "model"))

    def body():
        samples = read_samples(run)
        chosen = samples[samples["split"].isin(scfg.splits)].sort_values(["split", "sample_id"])
        network = load_segmentation_baseline(cfg, run)
        device = resolve_device(scfg.device)
        images = read_images(run)
        pred_masks = predict_masks(network, images, chosen["row"].to_numpy(), device, _EVAL_BATCH)
        table = explained_maps(chosen, read_npy(run.label_masks), pred_masks)
        rows, target = table["row"].to_numpy(), table["target"].to_numpy()
        wrapped = SegmentationTarget(network)
        layer = None
        if cfg.model.layer is not None:
            from soxai.models.layers import resolve_layer

            layer = resolve_layer(network, cfg.model.layer)
        maps = np.empty((len(rows), *images.shape[2:]), dtype=np.float16)
        order = np.argsort(rows, kind="stable")  # read forward (a memmap), rows repeat for several classes
        view = np.empty((len(rows), *images.shape[1:]), dtype=np.float32)
        view[order] = np.asarray(images[rows[order]], dtype=np.float32)
        with progress(f"saliency ({scfg.method}, segmentation)", len(rows)) as advance:
            for start, batch in iter_maps(wrapped, view, target, method=scfg.method, batch_size=scfg.batch_size,
                                          ig_steps=scfg.ig_steps, reduce=scfg.reduce, device=device, layer=layer,
                                          mixed_precision=scfg.mixed_precision):
                maps[start : start + len(batch)] = _to_half(batch)
                advance(len(batch))
        outputs = []
        size = scfg.shard_size
        for s, lo in enumerate(range(0, len(rows), size)):
            outputs.append(write_npy(run.saliency_shard(s), maps[lo : lo + size]))
        offsets = np.arange(len(rows))
        index = table.drop(columns="row").assign(shard=(offsets // size).astype(np.int64),
                                                  offset=(offsets % size).astype(np.int64))
        outputs.append(write_parquet(run.saliency_index, index))
        zero = int((np.abs(maps.astype(np.float32)).reshape(len(maps), -1).max(axis=1, initial=0) == 0).sum())
        return outputs, {"n_maps": int(len(rows)), "n_images": int(len(chosen)), "all_zero": zero,
                         "method": scfg.method}

    return run_stage(run, "saliency", fp, body)
