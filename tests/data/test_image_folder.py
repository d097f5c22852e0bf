"""The image_folder source: root/<split>/<class>/*.png|jpg, read lazily, grey or RGB, resized and cropped."""

import os
import pickle
import shutil

import numpy as np
import pytest
from PIL import Image

from soxai.data.config import DataConfig
from soxai.data.image_folder import ImageFiles, folder_hash, output_size
from soxai.data.sources import build_dataset
from soxai.errors import DataError


def _save(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _folder(root, side=(6, 6), rgb=False, splits=("train", "val", "test"), classes=("dog", "cat"), n=2):
    for split in splits:
        for c, name in enumerate(classes):
            for i in range(n):
                value = 40 * c + 10 * i + 5
                shape = (side[1], side[0], 3) if rgb else (side[1], side[0])
                arr = np.full(shape, value, dtype=np.uint8)
                if rgb:
                    arr[..., 2] = 200
                _save(root / split / name / f"{i}.png", arr)
    return root


def _cfg(root, **kw):
    return DataConfig(source="image_folder", root=str(root), **kw)


def test_build__labels_from_sorted_class_names_and_lazy_images(tmp_path):
    ds = build_dataset(_cfg(_folder(tmp_path / "f")), seed=0)
    assert ds.class_names == ["cat", "dog"]
    assert isinstance(ds.images, ImageFiles) and ds.images.shape == (12, 1, 6, 6)
    s = ds.samples
    assert set(s["split"]) == {"train", "val", "test"} and (s["source"] == "image_folder").all()
    row = s[s["sample_id"] == "train/dog/1.png"].iloc[0]
    assert row["label"] == 1 and row["path"] == "train/dog/1.png"
    np.testing.assert_allclose(ds.images[int(row["row"])], (10 + 5) / 255, rtol=1e-6)  # dog = 0, i = 1
    batch = ds.images[np.array([int(row["row"]), 0])]
    assert batch.shape == (2, 1, 6, 6) and batch.dtype == np.float32
    assert ds.images[2:5].shape == (3, 1, 6, 6) and ds.images[:, :, :2, :3].shape == (12, 1, 2, 3)


def test_build__rgb_and_auto_colour(tmp_path):
    root = _folder(tmp_path / "f", rgb=True)
    ds = build_dataset(_cfg(root), seed=0)
    assert ds.images.shape == (12, 3, 6, 6)
    first_dog = int(ds.samples.loc[ds.samples["sample_id"] == "train/dog/0.png", "row"].iloc[0])
    np.testing.assert_allclose(ds.images[first_dog][:, 0, 0], np.array([5, 5, 200]) / 255, rtol=1e-6)
    assert build_dataset(_cfg(root, color="grayscale"), seed=0).images.shape == (12, 1, 6, 6)
    _save(root / "train" / "cat" / "grey.png", np.zeros((6, 6), dtype=np.uint8))  # a grey one among colour
    mixed = build_dataset(_cfg(root), seed=0)
    assert mixed.images.shape == (13, 3, 6, 6)
    grey_row = int(mixed.samples.loc[mixed.samples["sample_id"] == "train/cat/grey.png", "row"].iloc[0])
    np.testing.assert_array_equal(mixed.images[grey_row], 0.0)


def test_build__resize_then_centre_crop(tmp_path):
    root = tmp_path / "f"
    arr = np.zeros((20, 40), dtype=np.uint8)  # 40 wide, 20 high
    arr[:, 15:25] = 255  # a bright band in the middle
    for split, name in [("train", "a"), ("train", "b"), ("test", "a")]:
        _save(root / split / name / "x.png", arr)
    _save(root / "train" / "b" / "y.jpg", np.zeros((30, 60), dtype=np.uint8))  # another size, same aspect
    assert output_size(40, 20, 10, None) == (20, 10) and output_size(40, 20, 10, 8) == (8, 8)
    ds = build_dataset(_cfg(root, resize=10, crop=10), seed=0)
    assert ds.images.shape == (4, 1, 10, 10)
    img = ds.images[0][0]
    assert img[:, 3:7].mean() > 0.9 and img[:, 0].max() < 0.1  # the band is centred after the crop
    with pytest.raises(DataError, match=r"set data.resize=20 and data.crop=20"):
        build_dataset(_cfg(root), seed=0)
    with pytest.raises(DataError, match=r"smaller than data.crop=12 after resizing.*data.resize >= 12"):
        build_dataset(_cfg(root, resize=10, crop=12), seed=0)


def test_build__layout_errors_name_the_fix(tmp_path):
    with pytest.raises(DataError, match="is not a folder"):
        build_dataset(_cfg(tmp_path / "missing"), seed=0)
    root = _folder(tmp_path / "f", splits=("val",))
    with pytest.raises(DataError, match=r"no 'train' folder.*root/train/<class>/\*\.png"):
        build_dataset(_cfg(root), seed=0)
    root = _folder(tmp_path / "g")
    _save(root / "train" / "loose.png", np.zeros((6, 6), dtype=np.uint8))
    with pytest.raises(DataError, match=r"outside any class folder: train/loose.png; move each"):
        build_dataset(_cfg(root), seed=0)
    (root / "train" / "loose.png").unlink()
    (root / "train" / "dog" / "0.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"cannot be opened as images: train/dog/0.png"):
        build_dataset(_cfg(root), seed=0)
    root = _folder(tmp_path / "h")
    _save(root / "test" / "bird" / "0.png", np.zeros((6, 6), dtype=np.uint8))
    with pytest.raises(DataError, match="never occur in 'train'.*class 'bird'"):
        build_dataset(_cfg(root), seed=0)


def test_build__test_star_splits_kept_others_skipped(tmp_path, caplog):
    root = _folder(tmp_path / "f", splits=("train", "test_attacked", "extra"))
    ds = build_dataset(_cfg(root), seed=0)
    assert set(ds.samples["split"]) == {"train", "test_attacked"}
    assert "skipping folders ['extra']" in caplog.text


def test_image_files__pickle_and_hash(tmp_path):
    root = _folder(tmp_path / "f")
    ds = build_dataset(_cfg(root), seed=0)
    again = pickle.loads(pickle.dumps(ds.images))
    np.testing.assert_array_equal(again[:], ds.images[:])
    before = folder_hash(root)
    _save(root / "train" / "dog" / "9.png", np.zeros((6, 6), dtype=np.uint8))
    assert folder_hash(root) != before


def test_image_files__changed_file_is_reported(tmp_path):
    root = _folder(tmp_path / "f")
    ds = build_dataset(_cfg(root), seed=0)
    _save(root / "train" / "cat" / "0.png", np.zeros((9, 9), dtype=np.uint8))
    row = int(ds.samples.loc[ds.samples["sample_id"] == "train/cat/0.png", "row"].iloc[0])
    with pytest.raises(DataError, match="changed since the data stage"):
        ds.images[[0, row]]


def test_config__resize_needs_image_folder_and_mean_needs_std():
    with pytest.raises(ValueError, match="data.resize and data.crop apply to data.source=image_folder"):
        DataConfig(resize=32)
    with pytest.raises(ValueError, match="data.mean and data.std together"):
        DataConfig(mean=(0.5,))
    with pytest.raises(ValueError, match="data.root is not set"):
        DataConfig(source="image_folder")


def test_resolve_paths__root_and_checkpoint_become_absolute(tmp_path, monkeypatch):
    from soxai.config import load_config
    from soxai.runs import resolve_paths

    monkeypatch.chdir(tmp_path)
    cfg = resolve_paths(load_config(None, ["data.source=image_folder", "data.root=imgs", "model.checkpoint=m.pt"]))
    assert cfg.data.root == str(tmp_path / "imgs") and cfg.model.checkpoint == str(tmp_path / "m.pt")


def test_build__round_trips_a_dataset_written_as_a_folder(tmp_path):
    from pathlib import PurePosixPath

    from soxai.testing.files import write_image_folder

    cells = build_dataset(DataConfig(image_size=16, n_train_per_class=4, n_val_per_class=2, n_test_per_class=2), 0)
    ds = build_dataset(_cfg(write_image_folder(cells, tmp_path / "f")), seed=0)
    assert len(ds.samples) == len(cells.samples) and ds.images.shape[1:] == cells.images.shape[1:]
    original = cells.samples.set_index("sample_id")
    for r in ds.samples.itertuples():
        path = PurePosixPath(r.path)
        src = original.loc[path.stem]
        assert r.split == src["split"] and path.parts[1] == cells.class_names[src["label"]]
        assert ds.class_names[r.label] == cells.class_names[src["label"]]
        np.testing.assert_array_equal(ds.images[r.row], np.round(cells.images[src["row"]] * 255) / np.float32(255))


def test_build__empty_class_folder__names_it(tmp_path):
    root = _folder(tmp_path / "f", classes=("dog", "cat", "bird"))
    for f in (root / "train" / "bird").iterdir():
        f.unlink()
    with pytest.raises(DataError) as info:
        build_dataset(_cfg(root), seed=0)
    msg = str(info.value)
    assert "class folder(s) without" in msg and "train/bird" in msg and "remove the empty folders" in msg


def test_build__empty_class_folder_in_test__names_it(tmp_path):
    root = _folder(tmp_path / "f")
    (root / "test" / "fish").mkdir()
    with pytest.raises(DataError, match=r"class folder\(s\) without .*: test/fish; put"):
        build_dataset(_cfg(root), seed=0)


@pytest.mark.parametrize("splits", [("train",), ("train", "val")])
def test_build__no_test_folder__refused_naming_the_folders(tmp_path, splits):
    root = _folder(tmp_path / "f", splits=splits)
    with pytest.raises(DataError) as info:
        build_dataset(_cfg(root), seed=0)
    msg = str(info.value)
    assert "no test split" in msg and f"folders found: {list(splits)}" in msg
    assert "needs train/ and test/ (or test_<name>/)" in msg and "root/test/<class>/" in msg


def test_build__test_folder_without_class_folders__refused(tmp_path):
    root = _folder(tmp_path / "f", splits=("train",))
    (root / "test").mkdir()
    with pytest.raises(DataError, match=r"no test split with images \(folders found: \['test', 'train'\]; "
                                         r"with images: \['train'\]\)"):
        build_dataset(_cfg(root), seed=0)


@pytest.mark.parametrize("what", ["file", "class folder", "split folder"])
def test_build__symlink_out_of_root__refused(tmp_path, what):
    root = _folder(tmp_path / "f")
    outside = _folder(tmp_path / "secret", splits=("test",))
    try:
        if what == "file":
            os.symlink(outside / "test" / "dog" / "0.png", root / "train" / "dog" / "link.png")
        elif what == "class folder":
            os.symlink(outside / "test" / "dog", root / "train" / "wolf")
        else:
            shutil.rmtree(root / "test")
            os.symlink(outside / "test", root / "test")
    except OSError:
        pytest.skip("symlinks not supported here")
    with pytest.raises(DataError) as info:
        build_dataset(_cfg(root), seed=0)
    msg = str(info.value)
    assert "lead outside the folder through symlinks" in msg and str(tmp_path / "secret") in msg
    assert "copy the images into the folder" in msg


def test_build__symlink_inside_root__allowed(tmp_path):
    root = _folder(tmp_path / "f")
    try:
        os.symlink(root / "train" / "dog" / "0.png", root / "train" / "dog" / "again.png")
    except OSError:
        pytest.skip("symlinks not supported here")
    assert len(build_dataset(_cfg(root), seed=0).samples) == 13


@pytest.mark.parametrize("side", [30000, 10000])
def test_build__decompression_bomb_header__names_the_file(tmp_path, png_header_only, side):
    root = _folder(tmp_path / "f")
    png_header_only(root / "train" / "dog" / "bomb.png", side, side)
    with pytest.raises(DataError) as info:
        build_dataset(_cfg(root), seed=0)
    msg = str(info.value)
    assert "cannot be opened as images: train/dog/bomb.png" in msg and "safety limit" in msg


def test_image_files__bomb_swapped_in_after_the_data_stage__names_the_file(tmp_path, png_header_only):
    root = _folder(tmp_path / "f")
    ds = build_dataset(_cfg(root), seed=0)
    png_header_only(root / ds.samples["path"][0], 30000, 30000)
    with pytest.raises(DataError, match=r"cannot be read \(its header claims more pixels"):
        ds.images[0]
