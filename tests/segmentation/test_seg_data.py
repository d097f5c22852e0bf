import numpy as np
import pytest

from soxai.data.cells import build_cells
from soxai.data.config import ArtifactConfig, DataConfig
from soxai.errors import DataError
from soxai.segmentation.data import (
    build_cell_segmentation,
    build_segmentation_data,
    label_mask,
    segmentation_shape,
)

TINY = {"n_train_per_class": 12, "n_val_per_class": 4, "n_test_per_class": 6, "image_size": 16}


@pytest.fixture(scope="module")
def seg():
    return build_cell_segmentation(DataConfig(**TINY, artifact=ArtifactConfig(size=3, rate=0.5)), seed=0)


def test_build_cell_segmentation__same_images_and_samples_as_the_classification_cells(seg):
    ds = build_cells(DataConfig(**TINY, artifact=ArtifactConfig(size=3, rate=0.5)), seed=0)
    np.testing.assert_array_equal(seg.dataset.images, ds.images)
    assert seg.dataset.samples.equals(ds.samples)


def test_build_cell_segmentation__one_foreground_class_per_image_the_label_plus_one(seg):
    samples, masks = seg.dataset.samples, seg.label_masks
    assert masks.shape == (len(seg.dataset.images), 16, 16) and masks.dtype == np.uint8
    assert seg.class_names == ["background", "round", "elongated", "lobed"]
    for _, row in samples.iterrows():
        present = set(np.unique(masks[row["row"]]).tolist())
        assert present == {0, int(row["label"]) + 1}


def test_build_cell_segmentation__mark_on_the_target_class_only_and_attacked_masks_follow_the_test_images(seg):
    samples = seg.dataset.samples
    marked = samples[samples["group"] == "artifact"]
    assert set(marked.loc[marked["split"] != "test_attacked", "label"]) == {0}
    attacked = samples[samples["split"] == "test_attacked"]
    assert len(attacked) and (attacked["label"] != 0).all()
    test = samples[(samples["split"] == "test") & (samples["label"] != 0)]
    np.testing.assert_array_equal(seg.label_masks[attacked["row"]], seg.label_masks[test["row"]])


def test_label_mask__cell_pixels_get_label_plus_one():
    cells = np.zeros((2, 2, 2), dtype=bool)
    cells[0, 0, 0] = cells[1, 1, 1] = True
    np.testing.assert_array_equal(label_mask(cells, np.array([0, 2])), [[[1, 0], [0, 0]], [[0, 0], [0, 3]]])


def test_build_segmentation_data__source_without_masks__data_error_names_the_fix():
    with pytest.raises(DataError, match="data.source='digits' has none.*set data.source: cells"):
        build_segmentation_data(DataConfig(source="digits"), seed=0)


def test_build_cell_segmentation__whole_image_mark__refused():
    with pytest.raises(DataError, match="spans the whole image"):
        build_cell_segmentation(DataConfig(**TINY, artifact=ArtifactConfig(shape="tint")), seed=0)


def test_segmentation_shape__from_config_and_from_info():
    from soxai.config import Config

    cfg = Config(data=DataConfig(n_classes=2, image_size=24))
    assert segmentation_shape(cfg) == (1, 24, 3)
    assert segmentation_shape(cfg, {"image_shape": [3, 40, 40], "segmentation_classes": ["a", "b"]}) == (3, 40, 2)
