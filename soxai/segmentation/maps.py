"""Kernels of the segmentation data model: one map per (training image, foreground class present in its mask).

A segmentation run explains every foreground class its true mask holds (background is not explained: a map of
it would say where the cells are not). Each map has an id of its own, ``<sample_id>#<segmentation class>``, in
the ``sample_id`` column of ``saliency/index.parquet`` so that embed and concepts, which key their rows by that
column, run on maps unchanged; ``image_id`` holds the image's ``sample_id`` (the join to ``data/samples.parquet``).
Flags and the manifest go back to images: an image is dropped when a flagged concept holds one of its maps.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: columns of the per-map table :func:`explained_maps` returns (the saliency index adds shard and offset)
MAP_COLUMNS = ("sample_id", "image_id", "split", "label", "pred", "target", "row")


def map_id(sample_id: str, seg_class: int) -> str:
    """The id of the map of segmentation class ``seg_class`` in image ``sample_id``."""
    return f"{sample_id}#{int(seg_class)}"


def explained_maps(images: pd.DataFrame, label_masks: np.ndarray, pred_masks: np.ndarray) -> pd.DataFrame:
    """One row per (image, foreground class present in its true mask), images in the order of ``images``.

    Parameters
    ----------
    images : DataFrame with ``sample_id``, ``split`` and ``row`` (index into ``label_masks``), one row per image
    label_masks : array (n_total, H, W) of class ids (0 background)
    pred_masks : array (len(images), H, W), the network's predicted classes of ``images`` in its order

    Returns
    -------
    DataFrame of :data:`MAP_COLUMNS`: ``sample_id`` the map id, ``image_id`` the image's sample_id, ``target`` the
    explained segmentation class ``c``, ``label`` its shape index ``c - 1`` (what concepts group by), ``pred`` the
    foreground class (shape index) the network gives most of class ``c``'s true pixels, -1 where it gives them
    none, ``row`` the image's row.
    """
    out: dict[str, list] = {c: [] for c in MAP_COLUMNS}
    for i, (sid, split, row) in enumerate(zip(images["sample_id"], images["split"], images["row"], strict=True)):
        truth = np.asarray(label_masks[int(row)])
        for c in np.unique(truth):
            if c == 0:
                continue
            predicted = pred_masks[i][truth == c].astype(np.int64)
            counts = np.bincount(predicted[predicted > 0], minlength=2)
            out["sample_id"].append(map_id(sid, c))
            out["image_id"].append(sid)
            out["split"].append(split)
            out["label"].append(int(c) - 1)
            out["pred"].append(int(counts.argmax()) - 1 if counts.any() else -1)
            out["target"].append(int(c))
            out["row"].append(int(row))
    table = pd.DataFrame(out)
    for col in ("label", "pred", "target", "row"):
        table[col] = table[col].astype(np.int64)
    return table


def flagged_images(maps: pd.DataFrame, flagged: list[int]) -> pd.DataFrame:
    """Per image of ``maps`` (columns ``image_id``, ``concept_id``, ``label``): ``dropped`` when a flagged concept
    holds one of its maps, ``concept_id`` the lowest such concept (else the concept of its first map by class) and
    ``n_maps``; one row per image, sorted by ``image_id``."""
    ordered = maps.sort_values(["image_id", "label"])
    hit = ordered["concept_id"].isin(flagged)
    first_flag = ordered[hit].groupby("image_id")["concept_id"].min()
    per_image = ordered.groupby("image_id").agg(first_concept=("concept_id", "first"), n_maps=("label", "size"))
    dropped = per_image.index.isin(first_flag.index)
    concept = per_image["first_concept"].where(~dropped, first_flag.reindex(per_image.index))
    return pd.DataFrame({"image_id": per_image.index.to_numpy(), "dropped": dropped,
                         "concept_id": concept.fillna(-1).astype(np.int64).to_numpy(),
                         "n_maps": per_image["n_maps"].astype(np.int64).to_numpy()})
