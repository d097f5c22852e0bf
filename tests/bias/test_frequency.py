"""The opt-in frequency detector: a sharp mark's concept is flagged, a smooth one is not, and its rows keep the
detector contract."""

import numpy as np
import pandas as pd

from soxai.bias.config import BiasConfig
from soxai.bias.context import DetectorContext, check_rows
from soxai.bias.frequency import THRESHOLD, detect_frequency


def _blob(size: int = 16, sigma: float = 3.0) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size] - size / 2
    return np.exp(-(yy**2 + xx**2) / (2 * sigma**2))


def _ctx(maps: np.ndarray, labels: list[int]) -> DetectorContext:
    n = len(labels)
    concepts = pd.DataFrame({"concept_id": list(range(-1, n)), "is_noise": [True] + [False] * n,
                             "label": [0] + labels, "size": [5] + [10] * n, "map_index": [-1] + list(range(n))})
    return DetectorContext(images=np.zeros((1, 1, 16, 16), np.float32), train=pd.DataFrame(), concepts=concepts,
                           maps=maps, predict=lambda x: np.zeros(len(x), dtype=np.int64), seed=0,
                           sample_maps=lambda rows: np.zeros((len(rows), 16, 16)))


def test_detect_frequency__flags_the_sharp_mark_and_not_the_smooth_shapes():
    marked = _blob()
    marked[1:3, 1:3] += 1.5  # a small square mark in a corner
    maps = np.stack([_blob(), marked, _blob(sigma=2.5), _blob(), _blob(sigma=2.0)])
    rows = check_rows("frequency", detect_frequency(_ctx(maps, [0, 0, 0, 1, 1]), BiasConfig()))
    by_id = {r["concept_id"]: r for r in rows}
    assert sorted(by_id) == [0, 1, 2, 3, 4]  # noise is not scored
    assert by_id[1]["is_bias"] and by_id[1]["score"] >= THRESHOLD
    assert not any(by_id[c]["is_bias"] for c in (0, 2, 3, 4))
    assert "times as sharp" in by_id[1]["reason"]


def test_detect_frequency__a_class_with_one_concept_scores_zero_and_says_why():
    rows = detect_frequency(_ctx(np.stack([_blob(), _blob()]), [0, 1]), BiasConfig())
    assert [r["score"] for r in rows] == [0.0, 0.0] and not any(r["is_bias"] for r in rows)
    assert all("no other concept" in r["reason"] for r in rows)
