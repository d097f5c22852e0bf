"""Write a dataset to disk as image files plus a manifest CSV — a user's layout, for tests and demos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from soxai.data.dataset import Dataset


def write_image_files(ds: Dataset, root: str | Path, with_masks: bool = True) -> Path:
    """Save every image of ``ds`` as a PNG under ``root/images`` and write ``root/samples.csv``.

    The CSV has the columns of the manifest source: path (relative to the CSV), label, split,
    sample_id, group, and mask_path when ``ds`` has masks and ``with_masks``.

    Returns the path of the CSV.
    """
    from PIL import Image

    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for r in ds.samples.itertuples():
        img = np.asarray(ds.images[r.row])
        arr = np.clip(np.round(img * 255), 0, 255).astype(np.uint8)
        pil = Image.fromarray(arr[0]) if arr.shape[0] == 1 else Image.fromarray(np.moveaxis(arr, 0, -1))
        rel = f"images/{r.sample_id}.png"
        pil.save(root / rel)
        row = {"path": rel, "label": int(r.label), "split": r.split, "sample_id": r.sample_id, "group": r.group}
        if ds.masks is not None and with_masks:
            mask_rel = f"images/{r.sample_id}.mask.png"
            Image.fromarray(ds.masks[r.row].astype(np.uint8) * 255).save(root / mask_rel)
            row["mask_path"] = mask_rel
        rows.append(row)
    csv = root / "samples.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv


def write_image_folder(ds: Dataset, root: str | Path, rgb: bool = False) -> Path:
    """Save every image of ``ds`` as ``root/<split>/<class name>/<sample_id>.png`` — the image_folder layout.

    With ``rgb`` a grey dataset is written as colour PNGs: red and green carry the grey values and
    blue half of them plus 0.25, so the three channels differ and the images are truly RGB.

    Returns ``root``.
    """
    from PIL import Image

    root = Path(root)
    for r in ds.samples.itertuples():
        img = np.asarray(ds.images[r.row], dtype=np.float32)
        if rgb and img.shape[0] == 1:
            img = np.concatenate([img, img, 0.5 * img + 0.25])
        arr = np.clip(np.round(img * 255), 0, 255).astype(np.uint8)
        pil = Image.fromarray(arr[0]) if arr.shape[0] == 1 else Image.fromarray(np.moveaxis(arr, 0, -1))
        folder = root / str(r.split) / ds.class_names[int(r.label)]
        folder.mkdir(parents=True, exist_ok=True)
        pil.save(folder / f"{r.sample_id}.png")
    return root
