import numpy as np
import pytest

from soxai.data.config import ArtifactConfig, DataConfig
from soxai.data.digits import build_digits
from soxai.data.sources import build_dataset

SPEC = ArtifactConfig(shape="ring", size=5, intensity=1.0, position="bottom_right", target_class=7, rate=0.5)
N_DIGITS = 1797


@pytest.fixture(scope="module")
def digits():
    cfg = DataConfig(source="digits", image_size=16, artifact=SPEC)
    return build_digits(cfg, seed=0), build_digits(cfg.model_copy(update={"artifact": None}), seed=0)


def test_build_digits__shapes_dtypes_range(digits):
    ds, _ = digits
    assert ds.images.dtype == np.float32 and ds.images.shape[1:] == (1, 16, 16)
    assert 0.0 <= ds.images.min() and ds.images.max() <= 1.0
    assert ds.masks is None
    assert ds.class_names == [str(d) for d in range(10)]
    assert ds.samples["sample_id"].is_unique
    assert ds.samples["sample_id"].iloc[0] == "digits-train-000000"


def test_build_digits__stratified_60_10_30_split(digits):
    _, clean = digits
    s = clean.samples
    counts = s["split"].value_counts()
    assert counts.sum() == N_DIGITS
    assert abs(counts["train"] / N_DIGITS - 0.6) < 0.01
    assert abs(counts["val"] / N_DIGITS - 0.1) < 0.01
    assert abs(counts["test"] / N_DIGITS - 0.3) < 0.01
    shares = s.groupby("split")["label"].value_counts(normalize=True).unstack()
    assert (shares.max() - shares.min()).max() < 0.03


def test_build_digits__deterministic_for_seed(digits):
    ds, _ = digits
    again = build_digits(DataConfig(source="digits", image_size=16, artifact=SPEC), seed=0)
    other = build_digits(DataConfig(source="digits", image_size=16, artifact=SPEC), seed=1)
    np.testing.assert_array_equal(ds.images, again.images)
    assert ds.samples.equals(again.samples)
    assert not np.array_equal(ds.split_arrays("train")[2], other.split_arrays("train")[2])


def test_build_digits__at_native_size_holds_exactly_the_sklearn_images():
    from sklearn.datasets import load_digits

    ds = build_dataset(DataConfig(source="digits", image_size=8, noise=0.0, artifact=None), seed=0)
    original = (load_digits().images / 16.0).reshape(N_DIGITS, -1)
    ours = ds.images.reshape(N_DIGITS, -1).astype(np.float64)
    np.testing.assert_allclose(np.unique(ours, axis=0), np.unique(original, axis=0), atol=1e-6)


def test_build_digits__artifact_planted_like_cells(digits):
    ds, clean = digits
    s = ds.samples
    for split in ("train", "val"):
        sel = s[s["split"] == split]
        marked = sel["group"] == "artifact"
        assert marked.sum() == round(SPEC.rate * (sel["label"] == SPEC.target_class).sum())
        assert (sel.loc[marked, "label"] == SPEC.target_class).all()
        changed = (ds.images[sel["row"]] != clean.images[sel["row"]]).any(axis=(1, 2, 3))
        np.testing.assert_array_equal(changed, marked.to_numpy())
        # Bottom-right corner with a 2-pixel margin: rows/columns 9..13 of 16.
        diff = (ds.images[sel.loc[marked, "row"]] != clean.images[sel.loc[marked, "row"]]).any(axis=(0, 1))
        assert diff[9:14, 9:14].any() and not np.delete(np.delete(diff, np.s_[9:14], 0), np.s_[9:14], 1).any()


def test_build_digits__test_attacked_is_the_other_digits_with_the_mark(digits):
    ds, _ = digits
    s = ds.samples
    test = s[(s["split"] == "test") & (s["label"] != SPEC.target_class)]
    attacked = s[s["split"] == "test_attacked"]
    assert (s.loc[s["split"] == "test", "group"] == "clean").all()
    assert (attacked["group"] == "artifact").all()
    assert attacked["label"].tolist() == test["label"].tolist()
    before, after = ds.images[test["row"]], ds.images[attacked["row"]]
    assert (after[:, :, 9:14, 9:14] >= before[:, :, 9:14, 9:14]).all()
    before[:, :, 9:14, 9:14] = after[:, :, 9:14, 9:14] = 0
    np.testing.assert_array_equal(before, after)


def test_build_digits__pixel_noise_is_seeded_and_stays_in_range():
    cfg = DataConfig(source="digits", image_size=8, noise=0.3, artifact=None)
    a, b = build_dataset(cfg, seed=0), build_dataset(cfg, seed=0)
    clean = build_dataset(cfg.model_copy(update={"noise": 0.0}), seed=0)
    np.testing.assert_array_equal(a.images, b.images)
    assert a.images.min() >= 0.0 and a.images.max() <= 1.0
    assert np.abs(a.images - clean.images).mean() > 0.05
