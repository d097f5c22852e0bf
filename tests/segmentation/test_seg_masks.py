import numpy as np
import pytest
from PIL import Image

from soxai.errors import DataError
from soxai.segmentation.masks import read_label_mask, read_label_masks, resolve_mask_path


def _png(path, array, mode=None):
    Image.fromarray(np.asarray(array, dtype=np.uint8), mode=mode).save(path)
    return path


def test_read_label_masks__grey_pngs__class_ids_per_pixel(tmp_path):
    (tmp_path / "masks").mkdir()
    _png(tmp_path / "masks" / "a.png", [[0, 1], [2, 0]])
    _png(tmp_path / "masks" / "b.png", [[2, 2], [0, 1]])
    masks = read_label_masks(["masks/a.png", "masks/b.png"], tmp_path, (2, 2), 3)
    assert masks.dtype == np.uint8 and masks.tolist() == [[[0, 1], [2, 0]], [[2, 2], [0, 1]]]


def test_read_label_mask__other_size__names_file_and_both_sizes(tmp_path):
    path = _png(tmp_path / "m.png", np.zeros((3, 4)))
    with pytest.raises(DataError, match=r"m.png is 4x3 pixels but its image is 2x2"):
        read_label_mask(path, (2, 2), 3)


def test_read_label_mask__label_out_of_range__names_values_and_fix(tmp_path):
    path = _png(tmp_path / "m.png", [[0, 7], [3, 1]])
    with pytest.raises(DataError, match=r"label values 3, 7 outside 0..2.*model.num_classes"):
        read_label_mask(path, (2, 2), 3)


def test_read_label_mask__colour_png__asks_for_one_channel(tmp_path):
    path = _png(tmp_path / "m.png", np.zeros((2, 2, 3)), mode="RGB")
    with pytest.raises(DataError, match="RGB image.*single-channel"):
        read_label_mask(path, (2, 2), 3)


def test_read_label_mask__not_an_image__names_file(tmp_path):
    path = tmp_path / "m.png"
    path.write_text("not a png")
    with pytest.raises(DataError, match="m.png cannot be read as an image"):
        read_label_mask(path, (2, 2), 3)


def test_resolve_mask_path__leaving_the_folder__refused(tmp_path):
    with pytest.raises(DataError, match="outside the data's folder"):
        resolve_mask_path("../elsewhere.png", tmp_path / "data")
