"""A user's own segmentation data (a manifest with mask_path, an image folder with masks/): read, checked, run."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from soxai.config import load_config
from soxai.data.config import DataConfig
from soxai.errors import DataError
from soxai.runs import run_in_process
from soxai.segmentation.data import build_segmentation_data

SIDE = 16


def write_manifest(folder: Path, n_per_split=None, mask_value=None, skip_mask_of=None, both_every=None) -> Path:
    """Grey images of a bright disc (class 'big') or square (class 'small'); masks 0 outside, label + 1 inside.
    With ``both_every=k``, every k-th image also holds a small square (mask value 2) in its top-left corner."""
    rng = np.random.default_rng(0)
    (folder / "img").mkdir(parents=True)
    (folder / "masks").mkdir()
    rows = []
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    for split, n in (n_per_split or {"train": 12, "val": 4, "test": 4}).items():
        for i in range(n):
            label = i % 2
            inside = (np.hypot(yy - 8, xx - 8) < 5) if label == 0 else ((abs(yy - 8) < 3) & (abs(xx - 8) < 3))
            img = (np.clip(0.1 + 0.7 * inside + rng.normal(0, 0.05, inside.shape), 0, 1) * 255).astype(np.uint8)
            name = f"{split}-{i}.png"
            mask = (inside * (mask_value or (label + 1))).astype(np.uint8)
            if both_every and i % both_every == 0:
                img[:3, :3], mask[:3, :3] = 200, 2
            Image.fromarray(img).save(folder / "img" / name)
            Image.fromarray(mask).save(folder / "masks" / name)
            mask_path = None if skip_mask_of == name else f"masks/{name}"
            rows.append({"path": f"img/{name}", "label": ["big", "small"][label], "split": split,
                         "mask_path": mask_path})
    path = folder / "samples.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_manifest_segmentation__masks_read_in_row_order_with_background_first(tmp_path):
    seg = build_segmentation_data(DataConfig(source="manifest", manifest=str(write_manifest(tmp_path))), seed=0)
    assert seg.class_names == ["background", "big", "small"]
    samples = seg.dataset.samples
    for _, row in samples.iterrows():
        assert set(np.unique(seg.label_masks[row["row"]])) == {0, int(row["label"]) + 1}


def test_manifest_segmentation__label_out_of_range__names_the_mask(tmp_path):
    manifest = write_manifest(tmp_path, mask_value=5)
    with pytest.raises(DataError, match=r"mask masks/train-0.png has label values 5 outside 0..2"):
        build_segmentation_data(DataConfig(source="manifest", manifest=str(manifest)), seed=0)


def test_manifest_segmentation__row_without_mask__names_it(tmp_path):
    manifest = write_manifest(tmp_path, skip_mask_of="val-1.png")
    with pytest.raises(DataError, match=r"1 row\(s\) .* have no mask_path \(e.g. img/val-1.png\)"):
        build_segmentation_data(DataConfig(source="manifest", manifest=str(manifest)), seed=0)


def test_manifest_segmentation__mask_of_another_size__refused_before_any_stage_writes(tmp_path):
    manifest = write_manifest(tmp_path)
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / "masks" / "test-2.png")
    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "segmentation.yaml",
                      ["data.source=manifest", f"data.manifest={manifest}", "data.artifact=null"])
    with pytest.raises(DataError, match="test-2.png"):
        run_in_process(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "data" / "samples.parquet").exists()


@pytest.mark.slow
def test_manifest_segmentation__two_classes_in_an_image__one_map_each_and_one_manifest_row(tmp_path):
    manifest = write_manifest(tmp_path, {"train": 40, "val": 6, "test": 10}, both_every=4)
    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "segmentation.yaml",
                      ["data.source=manifest", f"data.manifest={manifest}", "data.artifact=null",
                       "model.channels=[4, 8]", "train.epochs=2", "retrain.seeds=[0, 1]",
                       "concepts.min_cluster_size=5", "bias.pixel_transplant.n_pairs=8"])
    run = run_in_process(cfg, tmp_path / "run")
    comparison = json.loads(run.comparison.read_text())
    assert set(comparison["variants"]["pruned"]["test"]) >= {"miou", "iou_background", "iou_big", "iou_small"}
    index, samples = pd.read_parquet(run.saliency_index), pd.read_parquet(run.samples)
    train = samples[samples["split"] == "train"]
    assert len(index) == 40 + 10 and index["sample_id"].is_unique  # 10 of the 40 images hold both classes
    both = index.groupby("image_id")["target"].apply(sorted)
    assert (both.apply(len) == 2).sum() == 10 and all(t == [1, 2] for t in both[both.apply(len) == 2])
    assert set(pd.read_parquet(run.assignments)["sample_id"]) == set(index["sample_id"])
    pruned = pd.read_parquet(run.pruned_parquet)
    assert sorted(pruned["sample_id"]) == sorted(train["sample_id"])
    assert pruned.set_index("sample_id")["n_maps"].sum() == len(index)


def write_image_folder(root: Path, n_per_split=None, skip_mask: str | None = None) -> Path:
    """root/<split>/<class>/*.png and root/masks/<split>/<class>/*.png (0 outside the shape, label + 1 inside)."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    for split, n in (n_per_split or {"train": 12, "val": 4, "test": 4}).items():
        for i in range(n):
            label, name = i % 2, ["big", "small"][i % 2]
            inside = (np.hypot(yy - 8, xx - 8) < 5) if label == 0 else ((abs(yy - 8) < 3) & (abs(xx - 8) < 3))
            img = (np.clip(0.1 + 0.7 * inside + rng.normal(0, 0.05, inside.shape), 0, 1) * 255).astype(np.uint8)
            for top, array in (("", img), ("masks", (inside * (label + 1)).astype(np.uint8))):
                folder = root / top / split / name
                folder.mkdir(parents=True, exist_ok=True)
                if not (top == "masks" and skip_mask == f"{split}/{name}/{i}.png"):
                    Image.fromarray(array).save(folder / f"{i}.png")
    return root


def test_image_folder_segmentation__masks_beside_the_splits(tmp_path):
    root = write_image_folder(tmp_path / "data")
    seg = build_segmentation_data(DataConfig(source="image_folder", root=str(root)), seed=0)
    assert seg.class_names == ["background", "big", "small"]
    for _, row in seg.dataset.samples.iterrows():
        assert set(np.unique(seg.label_masks[row["row"]])) == {0, int(row["label"]) + 1}


def test_image_folder_segmentation__missing_mask__names_it_and_the_layout(tmp_path):
    root = write_image_folder(tmp_path / "data", skip_mask="val/small/1.png")
    with pytest.raises(DataError, match=r"1 of 20 are missing .*masks/val/small/1.png.*mirroring"):
        build_segmentation_data(DataConfig(source="image_folder", root=str(root)), seed=0)


def test_image_folder_segmentation__resize__refused(tmp_path):
    root = write_image_folder(tmp_path / "data")
    with pytest.raises(DataError, match="set both to null"):
        build_segmentation_data(DataConfig(source="image_folder", root=str(root), resize=8), seed=0)


@pytest.mark.slow
def test_image_folder_segmentation__runs_every_stage(tmp_path):
    root = write_image_folder(tmp_path / "data", {"train": 40, "val": 6, "test": 10})
    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "segmentation.yaml",
                      ["data.source=image_folder", f"data.root={root}", "data.artifact=null",
                       "model.channels=[4, 8]", "train.epochs=2", "retrain.seeds=[0, 1]",
                       "concepts.min_cluster_size=5", "bias.pixel_transplant.n_pairs=8"])
    run = run_in_process(cfg, tmp_path / "run")
    assert not run.images.exists()  # the images stay in their files
    comparison = json.loads(run.comparison.read_text())
    assert "iou_small" in comparison["variants"]["baseline"]["test"]
