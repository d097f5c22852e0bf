import math

import numpy as np
import pytest

from soxai.compare.stats import (
    detection_scores,
    excludes_zero,
    format_summary,
    interval,
    seeds_phrase,
    summarize,
)


def test_summarize__t_interval_matches_hand_computation():
    s = summarize([1.0, 2.0, 3.0])
    assert s["mean"] == 2.0
    half = 4.302652729911275 * 1.0 / np.sqrt(3)
    assert s["ci95"] == pytest.approx([2 - half, 2 + half])


@pytest.mark.parametrize("values", [[0.2, 0.8], [0.5], []])
def test_summarize__under_three_seeds_gives_no_interval(values):
    # at n=2 Student-t would give 0.5 ± 3.8 for two accuracies 0.2 and 0.8: [-3.3, 4.3] says nothing
    s = summarize(values)
    assert s["ci95"] is None and s["n"] == len(values) and interval(s) is None
    assert s["values"] == values


def test_excludes_zero__no_interval_is_no_claim():
    assert not excludes_zero(summarize([0.5, 0.51]))  # two seeds far from 0: still no claim


def test_format_summary__under_three_seeds_says_so():
    assert format_summary(summarize([0.2, 0.8])) == "0.500 (n=2, no interval)"
    assert format_summary(summarize([0.1, 0.3]), signed=True) == "+0.200 (n=2, no interval)"
    assert format_summary(summarize([1.0, 2.0, 3.0])) == "2.000 [-0.484, 4.484]"
    assert format_summary(summarize([])) == format_summary(None) == "–"


def test_seeds_phrase__names_the_number_of_seeds_and_whether_there_is_an_interval():
    assert seeds_phrase(5) == "mean [95% CI] over 5 seeds"
    assert seeds_phrase(2) == "mean over 2 seeds, no interval below 3"
    assert seeds_phrase(1) == "mean over 1 seed, no interval below 3"


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
