import math

import numpy as np
import pytest

from soxai.compare.stats import detection_scores, excludes_zero, summarize


def test_summarize__t_interval_matches_hand_computation():
    s = summarize([1.0, 2.0, 3.0])
    assert s["mean"] == 2.0
    half = 4.302652729911275 * 1.0 / np.sqrt(3)
    assert s["ci95"] == pytest.approx([2 - half, 2 + half])


def test_excludes_zero__only_when_interval_is_one_sided():
    assert excludes_zero(summarize([0.3, 0.31, 0.29]))
    assert not excludes_zero(summarize([0.3, -0.3, 0.05]))


def test_detection_scores__precision_and_recall():
    dropped = np.array([1, 1, 0, 0, 1], dtype=bool)
    planted = np.array([1, 1, 1, 0, 0], dtype=bool)
    d = detection_scores(dropped, planted)
    assert d["precision"] == pytest.approx(2 / 3) and d["recall"] == pytest.approx(2 / 3)


def test_gap_recovered__share_of_the_oracle_gap_per_seed():
    from soxai.compare.runner import _gap_recovered

    def m(*vals):
        return {"test_attacked": {"accuracy": dict(enumerate(vals))}, "test": {"accuracy": {0: 0.9, 1: 0.9}}}

    per_seed = {"baseline": m(0.2, 0.4), "oracle": m(1.0, 0.8), "pruned": m(0.6, 0.8), "jtt": m(0.2, 0.4)}
    gap = _gap_recovered(per_seed)
    assert gap["pruned"]["test_attacked"]["accuracy"]["values"] == pytest.approx([0.5, 1.0])
    assert gap["pruned"]["test_attacked"]["accuracy"]["ratio_of_means"] == pytest.approx(0.8 / 1.2 * 1.0)
    assert gap["jtt"]["test_attacked"]["accuracy"]["mean"] == pytest.approx(0.0)
    assert math.isnan(gap["pruned"]["test"]["accuracy"]["mean"])  # no gap to recover on clean data
