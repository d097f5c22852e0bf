import math

import numpy as np

from soxai.compare.iou import confusion, iou_from_confusion, iou_metrics


def test_iou_metrics__hand_counted_masks():
    true = np.array([[[0, 0, 1, 1], [0, 0, 1, 1]]])
    pred = np.array([[[0, 1, 1, 1], [0, 0, 0, 1]]])
    m = iou_metrics(pred, true, ["bg", "cell"])
    # bg: TP 3 (pred 0 where true 0), FP 1 (pred 0 where true 1), FN 1 -> 3/5; cell: TP 3, FP 1, FN 1 -> 3/5
    assert math.isclose(m["iou_bg"], 3 / 5) and math.isclose(m["iou_cell"], 3 / 5)
    assert math.isclose(m["miou"], 3 / 5) and math.isclose(m["pixel_accuracy"], 6 / 8)


def test_iou_metrics__class_absent_from_truth__reported_but_not_averaged():
    true = np.zeros((1, 2, 2), dtype=np.uint8)
    true[0, 0, 0] = 2
    pred = true.copy()
    pred[0, 1, 1] = 1  # one pixel of class 1, which the truth never holds
    m = iou_metrics(pred, true, ["bg", "a", "b"])
    assert m["iou_a"] == 0.0
    assert math.isclose(m["iou_bg"], 2 / 3) and m["iou_b"] == 1.0
    assert math.isclose(m["miou"], (2 / 3 + 1.0) / 2)


def test_iou_from_confusion__class_in_neither__nan():
    conf = confusion(np.zeros(4, dtype=int), np.zeros(4, dtype=int), 2)
    iou = iou_from_confusion(conf)
    assert iou[0] == 1.0 and math.isnan(iou[1])


def test_confusion__rows_are_truth_columns_predictions():
    conf = confusion(np.array([1, 1, 0]), np.array([0, 1, 1]), 2)
    assert conf.tolist() == [[0, 1], [1, 1]]
