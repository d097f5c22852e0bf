"""The feature-space concept test (channel_patch) and its carrier test on a hand-built world.

Images have two input channels. Class 0 draws at 0.5 in channel 0, class 1 in channel 1. A 2x2 block of 1.0
in channel 0, anywhere, is the mark. The model's conv has three channels — 0: the mark (fires only on a full
2x2 block of 1.0), 1: class-0 evidence, 2: class-1 evidence — then ReLU, global max pool and a linear head in
which the mark outweighs everything. So a marked image's strongest channel is the mark wherever it sits, and
that channel alone, patched into a class-1 image, moves it to class 0; an unmarked class-0 image's strongest
channel (class-0 evidence) does not.
"""

import numpy as np
import pandas as pd
import pytest
import torch

from soxai.bias.carriers import find_carriers
from soxai.bias.channels import detect_channel_patch, empirical_null, top_channels, two_proportion_z
from soxai.bias.context import DetectorContext
from soxai.bias.layer import LayerAccess
from soxai.config import load_config
from soxai.testing.shortcut import mark_channel_model

SIDE = 6


def _model() -> torch.nn.Module:
    return mark_channel_model()


def _world(n_marked_in: int = 30, n_marked_out: int = 6, n_clean: int = 60, n_other: int = 80, seed: int = 0):
    """Concept 0: marked class-0 images; concept 1: clean class-0 images plus ``n_marked_out`` marked ones the
    clustering put there; concepts 2 and 3: class 1 (clean)."""
    rng = np.random.default_rng(seed)
    n0 = n_marked_in + n_marked_out + n_clean
    images = np.zeros((n0 + n_other, 2, SIDE, SIDE), np.float32)
    images[:n0, 0] = 0.5
    images[n0:, 1] = 0.5
    for i in range(n_marked_in + n_marked_out):  # the mark at a random place
        y, x = rng.integers(0, SIDE - 1, size=2)
        images[i, 0, y:y + 2, x:x + 2] = 1.0
    labels = np.array([0] * n0 + [1] * n_other)
    concept = np.array([0] * n_marked_in + [1] * (n_marked_out + n_clean) + [2] * (n_other // 2)
                       + [3] * (n_other - n_other // 2))
    model = _model()
    with torch.no_grad():
        pred = model(torch.from_numpy(images)).argmax(1).numpy()
    train = pd.DataFrame({"sample_id": [f"s{i:03d}" for i in range(len(images))], "row": np.arange(len(images)),
                          "label": labels, "pred": pred, "concept_id": concept})
    concepts = pd.DataFrame({"concept_id": [0, 1, 2, 3], "is_noise": False, "label": [0, 0, 1, 1],
                             "map_index": [0, 1, 2, 3]})
    maps = np.ones((4, SIDE, SIDE), np.float32)

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(np.asarray(x, np.float32))).argmax(1).numpy()

    ctx = DetectorContext(images, train, concepts, maps, predict, 0, lambda rows: np.ones((len(rows), SIDE, SIDE)),
                          LayerAccess(model, "0"))
    return ctx, n_marked_in + n_marked_out


def _cfg(**extra):
    return load_config(None, ["bias.detectors=[channel_patch]", *[f"{k}={v}" for k, v in extra.items()]]).bias


def test_world__is_what_the_docstring_says() -> None:
    ctx, n_marked = _world()
    assert (ctx.train["pred"] == ctx.train["label"]).all()
    rel = ctx.layer.class_relevance(ctx.images, ctx.train, 0)
    top = top_channels(np.stack(rel.to_numpy()), 1)[:, 0]
    assert (top[:n_marked] == 0).all() and (top[n_marked:] == 1).all()


def test_channel_patch__flags_the_marked_concept_only_with_a_readable_reason() -> None:
    ctx, _ = _world()
    rows = {r["concept_id"]: r for r in detect_channel_patch(ctx, _cfg())}
    # the control is the whole class, 36 of its 96 samples marked
    assert rows[0]["is_bias"] and rows[0]["flip_rate"] == 1.0 and rows[0]["control_rate"] < 0.5
    assert not rows[1]["is_bias"] and not rows[2]["is_bias"] and not rows[3]["is_bias"]
    assert "moved 100% of them to class 0" in rows[0]["reason"] and "textbook null" in rows[0]["reason"]
    assert rows[0]["alpha"] == pytest.approx(0.01 / 4)  # Bonferroni over the four concepts tested
    assert all(r["detector"] == "channel_patch" for r in rows.values())


def test_channel_patch__same_seed_same_rows() -> None:
    first = detect_channel_patch(_world()[0], _cfg())
    second = detect_channel_patch(_world()[0], _cfg())
    assert [(r["concept_id"], r["flip_rate"], r["control_rate"]) for r in first] == \
        [(r["concept_id"], r["flip_rate"], r["control_rate"]) for r in second]


def test_two_proportion_z__matches_the_formula_and_is_zero_without_variance() -> None:
    z = two_proportion_z(np.array([30, 0, 5]), np.array([10, 0, 5]), np.array([100, 50, 20]))
    pooled = 40 / 200
    assert z[0] == pytest.approx(0.2 / np.sqrt(pooled * (1 - pooled) * 2 / 100))
    assert z[1] == 0.0 and z[2] == 0.0


def test_empirical_null__median_and_mad_width_at_least_one_textbook_below_eight() -> None:
    assert empirical_null(np.array([5.0, 6.0, 7.0])) == (0.0, 1.0)
    z = np.array([-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 20.0])
    centre, width = empirical_null(z)
    assert centre == 1.0 and width == pytest.approx(1.4826 * 2.0)
    assert empirical_null(np.zeros(10)) == (0.0, 1.0)  # never narrower than sampling noise


def test_empirical_null__real_heterogeneity_is_not_flagged_an_outlier_is() -> None:
    # 20 real concepts whose differences from their class-mates are real but ordinary (z spread ~2.5, all
    # "significant" at many of them under N(0, 1)), and one mark
    from scipy.stats import norm

    z = np.concatenate([np.random.default_rng(0).normal(0.5, 2.5, 20), [12.0]])
    centre, width = empirical_null(z)
    p = norm.sf((z - centre) / width)
    alpha = 0.01 / len(z)
    assert (norm.sf(z[:20]) <= alpha).any(), "the textbook null would flag a real concept here"
    assert (p[:20] > alpha).all() and p[20] <= alpha


def test_carriers__channel_patch_flag_finds_marked_samples_outside_the_concept() -> None:
    ctx, n_marked = _world()
    bcfg = _cfg()
    scores = pd.DataFrame(detect_channel_patch(ctx, bcfg))
    carriers = find_carriers(ctx, scores, {0: "flagged"}, bcfg)
    carries = carriers.set_index("sample_id")["carries"]
    marked = ctx.train["sample_id"].iloc[:n_marked]
    assert carries.loc[marked].all()  # all 36 marked, the 6 in concept 1 included
    assert carries.sum() == n_marked
    assert carriers["test"].str.contains("most relevant channels").all()
