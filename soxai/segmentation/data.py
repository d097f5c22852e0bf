"""The built-in segmentation data: the cells generator with per-pixel class masks and a planted mark.

Segmentation classes: 0 = background, ``k + 1`` = a cell of shape class ``k`` of the cells generator
(1 round, 2 elongated, 3 lobed). Every image holds one cell, so exactly one foreground class is present in
each; the sample's ``label`` in the samples table is that class's shape index ``k`` (what concepts group by).
The artifact is the classification demo's mark, planted by the same rule
(:func:`soxai.data.dataset.dataset_from_clean_splits`): in a share ``data.artifact.rate`` of the train / val
images where class ``target_class + 1`` is present; ``test_attacked`` holds the test images of every other
class with the mark. A model that segments class ``target_class + 1`` by the mark labels the other cells'
pixels with it there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from soxai.data.cells import CELL_CLASSES, make_cell_scenes, split_streams
from soxai.data.config import DataConfig
from soxai.data.dataset import Dataset, dataset_from_clean_splits
from soxai.errors import DataError
from soxai.segmentation.config import SEGMENTATION_SOURCES

BACKGROUND = "background"


@dataclass
class SegmentationData:
    """A :class:`Dataset` (one row per image) and its per-pixel class masks.

    Attributes
    ----------
    dataset : Dataset
        ``samples.label`` is the foreground class present (shape index ``k``; segmentation class ``k + 1``).
    label_masks : ndarray of shape (n_images, height, width), uint8
        Row ``r`` is the mask of ``dataset.images[r]``: 0 background, ``k + 1`` the cell of shape class ``k``.
    class_names : list of str
        Names of the segmentation classes: ``['background', 'round', ...]``.
    """

    dataset: Dataset
    label_masks: np.ndarray
    class_names: list[str]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


def label_mask(cells: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-pixel class masks of one-cell images.

    Parameters
    ----------
    cells : ndarray of shape (n, height, width), bool — each image's cell pixels
    labels : int array of shape (n,) — each cell's shape class ``k``

    Returns
    -------
    ndarray of shape (n, height, width), uint8: 0 outside the cell, ``labels[i] + 1`` inside.
    """
    return (cells * (np.asarray(labels, dtype=np.uint8)[:, None, None] + 1)).astype(np.uint8)


def build_cell_segmentation(cfg: DataConfig, seed: int) -> SegmentationData:
    """The cells dataset of :func:`soxai.data.cells.build_cells` (same seeds, same images) with class masks.

    Splits train / val / test, and test_attacked when ``cfg.artifact`` is set. Deterministic for a seed.
    """
    if cfg.artifact is not None and cfg.artifact.shape in ("tint", "border"):
        raise DataError(
            f"data.artifact.shape={cfg.artifact.shape!r} spans the whole image, so it cannot be tied to one "
            "class's presence the way a segmentation shortcut is; use square, cross, ring, stripe or texture"
        )
    sizes, ss_artifact = split_streams(cfg, seed)
    scenes = {
        split: make_cell_scenes(n, cfg.n_classes, cfg.image_size, cfg.noise, np.random.default_rng(ss))
        for split, (n, ss) in sizes.items()
    }
    names = list(CELL_CLASSES[: cfg.n_classes])
    ds = dataset_from_clean_splits(
        "cells", {split: sc[:3] for split, sc in scenes.items()}, names, cfg.artifact,
        np.random.default_rng(ss_artifact),
    )
    # the class masks in the dataset's row order: train, val, test, then test_attacked (the test images of
    # every class but the target, in test order), as dataset_from_clean_splits lays the splits out
    parts = [label_mask(scenes[s][3], scenes[s][1]) for s in ("train", "val", "test")]
    if cfg.artifact is not None:
        other = np.flatnonzero(scenes["test"][1] != cfg.artifact.target_class)
        parts.append(parts[2][other])
    masks = np.concatenate(parts)
    if len(masks) != len(ds.images):
        raise DataError(f"internal: {len(masks)} class masks for {len(ds.images)} images")
    return SegmentationData(ds, masks, [BACKGROUND, *names])


def check_segmentation_source(source: str) -> None:
    """Refuse a data source that has no per-pixel class masks (before any stage writes)."""
    if source not in SEGMENTATION_SOURCES:
        raise DataError(
            f"task: segmentation needs per-pixel class masks, and data.source={source!r} has none in soxai yet "
            f"(sources with masks: {', '.join(SEGMENTATION_SOURCES)}); set data.source: cells, a manifest with a "
            "mask_path column or an image folder with masks/, or task: classification to audit a classifier"
        )


def build_segmentation_data(cfg: DataConfig, seed: int) -> SegmentationData:
    """The segmentation dataset ``cfg`` describes (see :data:`SEGMENTATION_SOURCES`)."""
    check_segmentation_source(cfg.source)
    if cfg.source == "manifest":
        return build_manifest_segmentation(cfg)
    if cfg.source == "image_folder":
        return build_image_folder_segmentation(cfg)
    return build_cell_segmentation(cfg, seed)


def build_manifest_segmentation(cfg: DataConfig) -> SegmentationData:
    """A user's manifest with a ``mask_path`` for every image: PNGs of class ids, read and checked by
    :func:`soxai.segmentation.masks.read_label_masks` against the manifest's folder.

    The convention is the built-in one: the manifest's ``label`` names the image's foreground class ``k`` (the one
    its map explains), the masks hold 0 for background and ``k + 1`` for class ``k``; a mask may hold other classes
    too, but must hold its image's.
    """
    from soxai.data.manifest_source import build_manifest
    from soxai.segmentation.masks import read_label_masks

    ds = build_manifest(cfg)
    samples = ds.samples
    has = samples["mask_path"].notna() if "mask_path" in samples else pd.Series(False, index=samples.index)
    if not has.all():
        missing = samples.loc[~has, "sample_id"].astype(str).tolist()
        raise DataError(
            f"task: segmentation needs a mask for every image, and {len(missing)} row(s) of {cfg.manifest} have no "
            f"mask_path (e.g. {', '.join(missing[:3])}); add a mask_path column naming a PNG of class ids per image "
            "(0 background, label + 1 the labelled class), relative to the manifest's folder"
        )
    root = Path(cfg.manifest).resolve().parent
    shape = tuple(ds.images.shape[2:])
    masks = np.zeros((len(ds.images), *shape), dtype=np.uint8)
    masks[samples["row"].to_numpy()] = read_label_masks(samples["mask_path"].astype(str).tolist(), root, shape,
                                                        ds.n_classes + 1)
    _check_labelled_class_present(samples, masks)
    return SegmentationData(ds, masks, [BACKGROUND, *ds.class_names])


def build_image_folder_segmentation(cfg: DataConfig) -> SegmentationData:
    """A user's image folder with ``masks/`` beside the splits: the mask of ``root/<split>/<class>/<name>.<ext>``
    is ``root/masks/<split>/<class>/<name>.png``, class ids as in a manifest (label ``k`` is mask value ``k + 1``).
    Masks are read at the images' own size, so ``data.resize`` and ``data.crop`` must be null."""
    from soxai.data.image_folder import build_image_folder
    from soxai.segmentation.masks import read_label_masks

    if cfg.resize is not None or cfg.crop is not None:
        raise DataError("task: segmentation reads an image folder's masks at the images' own size, and data.resize / "
                        "data.crop would change the images only; set both to null (and the images to one size)")
    ds = build_image_folder(cfg)
    samples = ds.samples
    root = Path(cfg.root).expanduser().resolve()
    raw = [str(Path("masks") / Path(p).with_suffix(".png")) for p in samples["path"].astype(str)]
    missing = [r for r in raw if not (root / r).is_file()]
    if missing:
        raise DataError(
            f"task: segmentation needs a mask per image, and {len(missing)} of {len(raw)} are missing under {root} "
            f"(e.g. {', '.join(missing[:3])}); put one PNG of class ids per image in root/masks/, mirroring the "
            "image's path (train/<class>/x.jpg -> masks/train/<class>/x.png)"
        )
    masks = np.zeros((len(samples), *ds.images.shape[2:]), dtype=np.uint8)
    masks[samples["row"].to_numpy()] = read_label_masks(raw, root, tuple(ds.images.shape[2:]), ds.n_classes + 1)
    _check_labelled_class_present(samples, masks)
    return SegmentationData(ds, masks, [BACKGROUND, *ds.class_names])


def _check_labelled_class_present(samples: pd.DataFrame, masks: np.ndarray) -> None:
    """Every image's mask holds its labelled class (label ``k``, mask value ``k + 1``): its map explains that."""
    labels, rows = samples["label"].to_numpy(), samples["row"].to_numpy()
    absent = [str(sid) for sid, r, k in zip(samples["sample_id"], rows, labels, strict=True)
              if not (masks[r] == k + 1).any()]
    if absent:
        raise DataError(
            f"{len(absent)} mask(s) hold no pixel of their image's labelled class (label k is mask value k + 1), "
            f"e.g. {', '.join(absent[:3])}; fix the masks or the labels"
        )


def segmentation_shape(cfg, info: dict | None = None) -> tuple[int, int, int] | None:
    """(channels, image side, number of segmentation classes) from the data stage's ``info.json``, or before it
    from what the config fixes (the cells generator: grey images, ``data.n_classes`` cell shapes + background);
    None where only the data can tell (a manifest or an image folder before the data stage)."""
    if info is not None and "segmentation_classes" in info:
        return int(info["image_shape"][0]), int(info["image_shape"][1]), len(info["segmentation_classes"])
    check_segmentation_source(cfg.data.source)
    if cfg.data.source != "cells":
        return None
    return 1, cfg.data.image_size, cfg.data.n_classes + 1
