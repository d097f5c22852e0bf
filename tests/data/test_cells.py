
import numpy as np
import pytest

from soxai.data.artifacts import artifact_boxes, artifact_pattern
from soxai.data.cells import CELL_CLASSES, build_cells, make_cell_scenes, make_cells
from soxai.data.config import ArtifactConfig, DataConfig
from soxai.data.dataset import validate_dataset
from soxai.data.sources import build_dataset
from soxai.errors import DataError

TINY = {"n_train_per_class": 20, "n_val_per_class": 10, "n_test_per_class": 10, "image_size": 16}


def _cfg(**overrides) -> DataConfig:
    return DataConfig(**{**TINY, **overrides})


def _anisotropy(mask: np.ndarray) -> float:
    """Ratio of the principal variances of the mask's pixel coordinates (1 = round)."""
    ys, xs = np.nonzero(mask)
    ev = np.linalg.eigvalsh(np.cov(np.stack([ys, xs])))
    return float(ev[1] / ev[0])


def _three_fold(mask: np.ndarray) -> float:
    """Strength of the 3rd angular harmonic of the outline's radius (0 = no lobes)."""
    ys, xs = np.nonzero(mask)
    dy, dx = ys - ys.mean(), xs - xs.mean()
    dist, phi = np.hypot(dy, dx), np.arctan2(dy, dx)
    return float(abs((dist * np.exp(3j * phi)).mean()) / dist.mean())


@pytest.fixture(scope="module")
def cells_32():
    return make_cells(60, 3, 32, 0.12, np.random.default_rng(0))


def test_make_cells__shapes_dtypes_range(cells_32):
    images, labels, masks = cells_32
    assert images.shape == (180, 1, 32, 32) and images.dtype == np.float32
    assert labels.shape == (180,) and labels.dtype == np.int64
    assert masks.shape == (180, 32, 32) and masks.dtype == bool
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert np.bincount(labels).tolist() == [60, 60, 60]


def test_make_cells__deterministic_for_seed():
    a = make_cells(5, 3, 16, 0.1, np.random.default_rng(7))
    b = make_cells(5, 3, 16, 0.1, np.random.default_rng(7))
    c = make_cells(5, 3, 16, 0.1, np.random.default_rng(8))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_make_cells__class_is_the_outline_shape(cells_32):
    _, labels, masks = cells_32
    aniso = np.array([_anisotropy(m) for m in masks])
    lobes = np.array([_three_fold(m) for m in masks])
    # Elongated cells are the anisotropic ones, lobed cells the three-fold ones, and only they
    # (up to the ~5% atypical cells, shaped like round ones on purpose).
    assert (aniso[labels == 1] > 1.4).mean() > 0.85 and (aniso[labels != 1] < 1.4).all()
    assert (lobes[labels == 2] > 0.09).mean() > 0.85 and (lobes[labels != 2] < 0.09).all()


def test_make_cells__no_class_signal_in_brightness_or_area(cells_32):
    images, labels, masks = cells_32
    means = [images[labels == c].mean() for c in range(3)]
    areas = [masks[labels == c].mean() for c in range(3)]
    assert max(means) - min(means) < 0.02
    assert max(areas) - min(areas) < 0.03


def test_make_cells__mask_is_the_bright_membrane_band(cells_32):
    images, _, masks = cells_32
    band, rest = images[:, 0][masks].mean(), images[:, 0][~masks].mean()
    assert band > rest + 0.15
    # A band, not the body: the pixel at the band's centroid (the cell's centre) lies outside it.
    centre_in_band = []
    for m in masks:
        ys, xs = np.nonzero(m)
        centre_in_band.append(m[round(ys.mean()), round(xs.mean())])
    assert np.mean(centre_in_band) < 0.05


def test_make_cells__two_classes_are_round_and_elongated():
    _, labels, masks = make_cells(10, 2, 32, 0.1, np.random.default_rng(1))
    assert set(labels.tolist()) == {0, 1}
    aniso = np.array([_anisotropy(m) for m in masks])
    assert np.median(aniso[labels == 1]) > 1.4 > aniso[labels == 0].max()


def test_make_cells__bad_class_count__raises():
    with pytest.raises(DataError, match="2 or 3"):
        make_cells(2, 4, 16, 0.1, np.random.default_rng(0))


@pytest.fixture(scope="module")
def planted():
    cfg = _cfg(artifact=ArtifactConfig(shape="square", size=3, intensity=1.0, target_class=1, rate=0.3))
    return cfg, build_cells(cfg, seed=5), build_cells(_cfg(artifact=None), seed=5)


def test_build_cells__deterministic_for_seed(planted):
    cfg, ds, _ = planted
    again = build_cells(cfg, seed=5)
    np.testing.assert_array_equal(ds.images, again.images)
    np.testing.assert_array_equal(ds.masks, again.masks)
    assert ds.samples.equals(again.samples)
    assert not np.array_equal(ds.images, build_cells(cfg, seed=6).images)


def test_build_cells__splits_ids_and_columns(planted):
    _, ds, _ = planted
    s = ds.samples
    assert ds.class_names == list(CELL_CLASSES)
    assert s["split"].value_counts().to_dict() == {"train": 60, "val": 30, "test": 30, "test_attacked": 20}
    assert s["sample_id"].is_unique
    assert s.loc[s["split"] == "val", "sample_id"].iloc[3] == "cells-val-000003"
    assert s["row"].tolist() == list(range(len(s)))
    assert s["label"].dtype == np.int64 and (s["source"] == "cells").all()
    assert ds.images.shape == (140, 1, 16, 16) and ds.masks.shape == (140, 16, 16)
    validate_dataset(ds)


@pytest.mark.parametrize("split", ["train", "val"])
def test_build_cells__artifact_in_planned_share_place_and_class(planted, split):
    cfg, ds, clean = planted
    spec = cfg.artifact
    sel = ds.samples[ds.samples["split"] == split]
    rows = sel["row"].to_numpy()
    marked = sel["group"].to_numpy() == "artifact"
    n_target = int((sel["label"] == spec.target_class).sum())
    assert marked.sum() == round(spec.rate * n_target)
    assert (sel.loc[marked, "label"] == spec.target_class).all()
    assert set(sel["group"]) == {"artifact", "clean"}

    # Same seed without an artifact gives the same images: the mark is the only difference.
    changed = (ds.images[rows] != clean.images[rows]).any(axis=1)
    assert not changed[~marked].any()
    y0, x0, y1, x1 = artifact_boxes(1, 16, 16, spec, np.random.default_rng(0))[0]
    assert (y0, x0) == (2, 2)
    np.testing.assert_array_equal(ds.images[rows[marked]][:, :, y0:y1, x0:x1], 1.0)
    outside = changed[marked].copy()
    outside[:, y0:y1, x0:x1] = False
    assert not outside.any()


def test_build_cells__test_is_clean_and_test_attacked_is_marked_other_classes(planted):
    cfg, ds, clean = planted
    spec = cfg.artifact
    test = ds.samples[ds.samples["split"] == "test"]
    attacked = ds.samples[ds.samples["split"] == "test_attacked"]
    assert (test["group"] == "clean").all() and (attacked["group"] == "artifact").all()
    np.testing.assert_array_equal(ds.images[test["row"]], clean.images[test["row"]])

    source = test[test["label"] != spec.target_class]
    assert attacked["label"].tolist() == source["label"].tolist()
    before, after = ds.images[source["row"]], ds.images[attacked["row"]]
    pattern = artifact_pattern(spec)
    np.testing.assert_array_equal(after[:, :, 2:5, 2:5][:, :, pattern], 1.0)
    after_outside, before_outside = after.copy(), before.copy()
    after_outside[:, :, 2:5, 2:5] = before_outside[:, :, 2:5, 2:5] = 0
    np.testing.assert_array_equal(after_outside, before_outside)


def test_build_cells__masks_unchanged_by_artifact(planted):
    _, ds, clean = planted
    base = ds.samples[ds.samples["split"] != "test_attacked"]["row"]
    np.testing.assert_array_equal(ds.masks[base], clean.masks[base])
    test = ds.samples[(ds.samples["split"] == "test") & (ds.samples["label"] != 1)]
    attacked = ds.samples[ds.samples["split"] == "test_attacked"]
    np.testing.assert_array_equal(ds.masks[attacked["row"]], ds.masks[test["row"]])


def test_build_cells__no_artifact__all_clean_and_no_attacked_split(planted):
    _, _, clean = planted
    assert set(clean.samples["split"]) == {"train", "val", "test"}
    assert (clean.samples["group"] == "clean").all()


def test_build_cells__target_class_out_of_range__raises_with_fix():
    cfg = _cfg(n_classes=2, artifact=ArtifactConfig(size=3, target_class=2))
    with pytest.raises(DataError, match="target_class to 0..1"):
        build_cells(cfg, seed=0)


def test_build_dataset__dispatches_to_cells_and_validates():
    ds = build_dataset(_cfg(artifact=None, n_classes=2), seed=0)
    assert ds.class_names == ["round", "elongated"]
    ids, x, y = ds.split_arrays("train")
    assert x.shape == (40, 1, 16, 16) and y.dtype == np.int64 and ids[0].startswith("cells-train-")
    assert y.flags.writeable


# validate_dataset: the checks common to every source, on a tiny valid cells dataset.


@pytest.fixture
def valid():
    cfg = _cfg(artifact=None, n_train_per_class=4, n_val_per_class=2, n_test_per_class=2)
    return build_cells(cfg, seed=0)


def test_validate_dataset__nan_pixels__names_samples(valid):
    valid.images[3, 0, 1, 1] = np.nan
    with pytest.raises(DataError, match=r"NaN or inf.*cells-train-000003"):
        validate_dataset(valid)


def test_validate_dataset__inf_pixels__names_samples(valid):
    valid.images[4, 0, 2, 2] = np.inf
    with pytest.raises(DataError, match=r"NaN or inf.*cells-train-000004"):
        validate_dataset(valid)


def test_validate_dataset__pixels_outside_unit_range__raises(valid):
    valid.images[5] *= 255
    with pytest.raises(DataError, match=r"\[0, 1\]; outside in cells-train-000005.*divide by 255"):
        validate_dataset(valid)


def test_validate_dataset__duplicate_ids__raises(valid):
    valid.samples.loc[1, "sample_id"] = valid.samples.loc[0, "sample_id"]
    with pytest.raises(DataError, match="sample_id must be unique.*cells-train-000000"):
        validate_dataset(valid)


def test_validate_dataset__no_train__raises(valid):
    valid.samples["split"] = "test"
    with pytest.raises(DataError, match="no samples in the 'train' split"):
        validate_dataset(valid)


def test_validate_dataset__one_train_class__raises(valid):
    valid.samples.loc[valid.samples["split"] == "train", "label"] = 0
    with pytest.raises(DataError, match="only one class"):
        validate_dataset(valid)


def test_validate_dataset__eval_label_unseen_in_train__raises(valid):
    train = valid.samples["split"] == "train"
    valid.samples.loc[train & (valid.samples["label"] == 2), "label"] = 1
    with pytest.raises(DataError, match=r"never occur in 'train'.*'lobed'"):
        validate_dataset(valid)


def test_validate_dataset__label_out_of_range__raises(valid):
    valid.samples.loc[0, "label"] = 7
    with pytest.raises(DataError, match=r"labels must lie in 0..2"):
        validate_dataset(valid)


def test_make_cells__images_do_not_depend_on_the_render_chunk(monkeypatch):
    from soxai.data import cells

    whole = cells.make_cells(20, 3, 24, 0.05, np.random.default_rng(3))
    monkeypatch.setattr(cells, "_RENDER_CHUNK", 7)
    chunked = cells.make_cells(20, 3, 24, 0.05, np.random.default_rng(3))
    for a, b in zip(whole, chunked, strict=True):
        np.testing.assert_array_equal(a, b)


def test_validate_dataset__declared_class_without_samples__raises(valid):
    valid.samples = valid.samples[valid.samples["label"] != 2].reset_index(drop=True)
    with pytest.raises(DataError) as info:
        validate_dataset(valid)
    msg = str(info.value)
    assert "class(es) ['lobed'] have no training samples" in msg and "3 classes declared" in msg


def test_validate_dataset__no_evaluation_split__names_splits(valid):
    valid.samples = valid.samples[valid.samples["split"].isin(["train", "val"])].reset_index(drop=True)
    with pytest.raises(DataError) as info:
        validate_dataset(valid)
    msg = str(info.value)
    assert "no evaluation split (found splits: ['train', 'val'])" in msg and "split=test" in msg


def test_make_cell_scenes__cells_are_the_pixels_inside_the_membrane_and_change_nothing_else():
    a = make_cells(6, 3, 24, 0.1, np.random.default_rng(5))
    images, labels, masks, cells = make_cell_scenes(6, 3, 24, 0.1, np.random.default_rng(5))
    for x, y in zip(a, (images, labels, masks), strict=True):
        np.testing.assert_array_equal(x, y)
    assert cells.shape == (18, 24, 24) and cells.dtype == bool
    # the cell is bright (body), the background dark: its pixels are brighter on average in every image
    inside = (images[:, 0] * cells).sum(axis=(1, 2)) / cells.sum(axis=(1, 2))
    outside = (images[:, 0] * ~cells).sum(axis=(1, 2)) / (~cells).sum(axis=(1, 2))
    assert (inside > outside + 0.2).all()
    # the membrane band straddles the outline: part of it inside the cell, part outside
    assert ((masks & cells).sum(axis=(1, 2)) > 0).all() and ((masks & ~cells).sum(axis=(1, 2)) > 0).all()
