"""One map per (image, foreground class present): the map table and how flags go back to images."""

import numpy as np
import pandas as pd

from soxai.segmentation.maps import explained_maps, flagged_images, map_id


def _images():
    truth = np.zeros((3, 4, 4), dtype=np.uint8)
    truth[0, :2, :2] = 1  # image a: class 1 only
    truth[1, :2, :2] = 1  # image b: classes 1 and 2
    truth[1, 2:, 2:] = 2
    truth[2, 2:, :] = 2  # image c: class 2 only
    images = pd.DataFrame({"sample_id": ["a", "b", "c"], "split": "train", "row": [0, 1, 2]})
    return images, truth


def test_explained_maps__one_row_per_image_and_class_present_background_left_out():
    images, truth = _images()
    table = explained_maps(images, truth, truth)
    assert list(table["sample_id"]) == [map_id("a", 1), map_id("b", 1), map_id("b", 2), map_id("c", 2)]
    assert list(table["image_id"]) == ["a", "b", "b", "c"]
    assert list(table["target"]) == [1, 1, 2, 2] and list(table["label"]) == [0, 0, 1, 1]
    assert list(table["row"]) == [0, 1, 1, 2]
    assert table["sample_id"].is_unique


def test_explained_maps__pred_is_the_foreground_class_given_most_of_the_class_pixels():
    images, truth = _images()
    pred = truth.copy()
    pred[1][truth[1] == 1] = 2  # b's class-1 pixels predicted as class 2
    pred[2][truth[2] == 2] = 0  # c's cell predicted as background
    table = explained_maps(images, truth, pred)
    assert list(table["pred"]) == [0, 1, 1, -1]


def test_flagged_images__an_image_is_dropped_when_a_flagged_concept_holds_one_of_its_maps():
    maps = pd.DataFrame({"image_id": ["a", "b", "b", "c"], "label": [0, 0, 1, 1], "concept_id": [3, 4, 7, 5]})
    out = flagged_images(maps, [7]).set_index("image_id")
    assert out["dropped"].to_dict() == {"a": False, "b": True, "c": False}
    assert out["concept_id"].to_dict() == {"a": 3, "b": 7, "c": 5}  # b: the flagged concept, not its first map's
    assert out["n_maps"].to_dict() == {"a": 1, "b": 2, "c": 1}


def test_flagged_images__noise_maps_keep_their_image():
    maps = pd.DataFrame({"image_id": ["a", "b"], "label": [0, 1], "concept_id": [-1, 2]})
    out = flagged_images(maps, [2]).set_index("image_id")
    assert out["dropped"].to_dict() == {"a": False, "b": True}
    assert out["concept_id"].to_dict() == {"a": -1, "b": 2}
