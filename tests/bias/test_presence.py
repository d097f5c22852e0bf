"""The carrier test's channel reading (soxai.bias.presence): a mark found wherever it sits.

The world: two input channels; class 0 draws at 0.5 in channel 0, class 1 in channel 1 (with a little noise). A 2x2
block of 1.0 in channel 0 is the mark. The model's conv has three channels — 0: the mark (fires only on a full
block of 1.0), 1: class-0 evidence, 2: class-1 evidence — then ReLU, global max pool and a linear head in which the
mark outweighs everything. Concept 0 holds the marked samples whose mark sits in the top-left corner, and a
transplant test flagged it with that corner's box; the samples marked elsewhere sit in concept 1 with the clean
ones, so pasting the corner from them carries nothing.
"""

import numpy as np
import pandas as pd
import pytest
import torch

from soxai.bias.carriers import find_carriers
from soxai.bias.config import BiasConfig, CarriersConfig
from soxai.bias.context import DetectorContext
from soxai.bias.layer import LayerAccess
from soxai.bias.presence import concept_channels, extend
from soxai.testing.shortcut import mark_channel_model

SIDE = 6


def _model() -> torch.nn.Module:
    return mark_channel_model()


def _world(n_corner: int = 20, n_elsewhere: int = 15, n_clean: int = 60, n_other: int = 60, seed: int = 0):
    rng = np.random.default_rng(seed)
    n0 = n_corner + n_elsewhere + n_clean
    images = np.zeros((n0 + n_other, 2, SIDE, SIDE), np.float32)
    images[:n0, 0] = 0.5
    images[n0:, 1] = 0.5
    images[:n_corner, 0, :2, :2] = 1.0
    for i in range(n_corner, n_corner + n_elsewhere):  # the mark away from the flagged box
        y, x = rng.integers(2, SIDE - 1, size=2)
        images[i, 0, y:y + 2, x:x + 2] = 1.0
    images += rng.normal(0, 0.01, images.shape).astype(np.float32)
    labels = np.array([0] * n0 + [1] * n_other)
    concept = np.array([0] * n_corner + [1] * (n_elsewhere + n_clean) + [2] * n_other)
    model = _model()

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(np.asarray(x, np.float32))).argmax(1).numpy()

    train = pd.DataFrame({"sample_id": [f"s{i:03d}" for i in range(len(images))], "row": np.arange(len(images)),
                          "label": labels, "pred": predict(images), "concept_id": concept})
    concepts = pd.DataFrame({"concept_id": [0, 1, 2], "is_noise": False, "label": [0, 0, 1], "map_index": [0, 1, 2]})
    ctx = DetectorContext(images, train, concepts, np.ones((3, SIDE, SIDE), np.float32), predict, 0,
                          lambda rows: np.ones((len(rows), SIDE, SIDE)), LayerAccess(model, "0"))
    scores = pd.DataFrame([{"concept_id": 0, "detector": "transplant", "score": 0.9, "is_bias": True,
                            "reason": "flagged", "box": [0, 0, 2, 2]}])
    return ctx, scores, n_corner + n_elsewhere


def _carriers(ctx, scores, **carriers):
    return find_carriers(ctx, scores, {0: "flagged"}, BiasConfig(carriers=CarriersConfig(n_recipients=16, **carriers)))


def test_world__is_what_the_docstring_says() -> None:
    ctx, scores, _ = _world()
    assert (ctx.train["pred"] == ctx.train["label"]).all()
    box_only = _carriers(ctx, scores, channels=False)
    assert box_only["carries"].sum() == 20  # the box test finds the corner's marks only


def test_find_carriers__the_concepts_channels_find_the_mark_wherever_it_sits() -> None:
    ctx, scores, n_marked = _world()
    carriers = _carriers(ctx, scores)
    marked = set(ctx.train["sample_id"].iloc[:n_marked])
    assert set(carriers.loc[carriers["carries"], "sample_id"]) == marked
    assert carriers["channel_score"].notna().all()
    # where the channels are strongest: the corner for the members, away from it for the others marked
    rows = carriers.set_index("sample_id").loc[ctx.train["sample_id"].iloc[:n_marked]]
    assert (rows[["channel_y", "channel_x"]].iloc[:20] < 2).all().all()
    assert (rows[["channel_y", "channel_x"]].iloc[20:].max(axis=1) > 2).all()
    # and the pixels the layer sees there (its 2x2 conv): the whole mark, wherever it sits
    windows = rows[["window_y0", "window_x0", "window_y1", "window_x1"]].to_numpy()
    assert ((windows[:, 2:] - windows[:, :2]) == 2).all()
    for i, (y0, x0, y1, x1) in enumerate(windows.astype(int)):
        assert (ctx.images[i, 0, y0:y1, x0:x1] > 0.9).all()
    assert carriers["test"].str.contains(r"15 outside the concept and the box test's carriers .* carry it too").all()


def test_find_carriers__no_mark_outside_the_box__the_box_tests_carriers_stand() -> None:
    ctx, scores, n_marked = _world(n_elsewhere=0)
    carriers = _carriers(ctx, scores)
    assert set(carriers.loc[carriers["carries"], "sample_id"]) == set(ctx.train["sample_id"].iloc[:n_marked])
    assert carriers["test"].str.contains("the box test's carriers stand").all()


def test_find_carriers__without_the_layer_the_channels_are_not_read() -> None:
    ctx, scores, _ = _world()
    ctx.layer = None
    carriers = _carriers(ctx, scores)
    assert carriers["carries"].sum() == 20 and carriers["channel_score"].isna().all()
    assert not carriers["test"].str.contains("channels").any()


def _override(flagged: bool = True) -> pd.DataFrame:
    # a person's flag on concept 0: no region to paste
    return pd.DataFrame([{"concept_id": 0, "detector": "override", "score": float(flagged), "is_bias": flagged,
                          "reason": "dropped by a person"}])


def test_find_carriers__a_persons_override__members_stand_and_the_channels_find_the_rest() -> None:
    ctx, _, n_marked = _world()
    carriers = _carriers(ctx, _override())
    assert set(carriers.loc[carriers["carries"], "sample_id"]) == set(ctx.train["sample_id"].iloc[:n_marked])
    assert carriers["flip_rate"].isna().all()  # nothing pasted: no region
    assert carriers["test"].str.startswith("members stand: no detector region").all()
    assert carriers["test"].str.contains("15 outside the concept and the members are nearer .* carry it too").all()
    from soxai.bias.carriers import found_elsewhere

    assert found_elsewhere(carriers, 0) == set(ctx.train["sample_id"].iloc[20:n_marked])


def test_find_carriers__a_persons_override_without_marks_elsewhere_or_the_layer__members_stand() -> None:
    ctx, _, _ = _world(n_elsewhere=0)
    carriers = _carriers(ctx, _override())
    assert set(carriers.loc[carriers["carries"], "sample_id"]) == set(ctx.train["sample_id"].iloc[:20])
    assert carriers["test"].str.contains(r"outside the concept and the members are nearer .*: the members stand").all()
    ctx, _, _ = _world()
    for off in ({"channels": False}, None):
        if off is None:
            ctx.layer = None
        carriers = _carriers(ctx, _override(), **(off or {}))
        assert carriers["carries"].sum() == 20 and carriers["channel_score"].isna().all()
        assert (carriers["test"] == "members stand: no detector region to repeat per sample").all()


def test_find_carriers__a_detectors_flag_without_a_region__members_stand_no_channels_read() -> None:
    # only a person's override reads the channels without a region; a detector's row that names none does not
    ctx, _, _ = _world()
    scores = pd.DataFrame([{"concept_id": 0, "detector": "transplant", "score": 0.9, "is_bias": True,
                            "reason": "flagged", "box": None}])
    carriers = _carriers(ctx, scores)
    assert carriers["carries"].sum() == 20 and carriers["channel_score"].isna().all()
    assert (carriers["test"] == "members stand: no detector region to repeat per sample").all()


def test_drop_carriers__a_persons_override__members_and_channel_carriers_with_their_reasons() -> None:
    from soxai.manifest.policies import PolicyContext, drop_carriers

    ctx, _, n_marked = _world()
    carriers = _carriers(ctx, _override())
    policy = PolicyContext(boxes={}, sample_maps=lambda rows: None, region_threshold=1.0, carriers=carriers)
    keep, reasons = drop_carriers(ctx.train, {0: "dropped by a person"}, policy)
    assert (~keep).sum() == n_marked and not keep[:n_marked].any()
    assert all(r.endswith("a member of a concept a person dropped (bias.overrides)") for r in reasons[:20])
    assert all("the concept's channels read" in r and "elsewhere" in r for r in reasons[20:n_marked])


def test_concept_channels__highest_mean_relevance_in_members_against_class_mates() -> None:
    relevance = np.array([[1.0, 5.0, 0.0], [1.0, 4.0, 2.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.5]])
    member = np.array([True, True, False, False])
    assert concept_channels(relevance, member, 2).tolist() == [1, 2]


def test_extend__many_more_than_the_rests_upper_tail__accepted() -> None:
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.normal(3.0, 0.2, 40), rng.normal(0.0, 1.0, 500), rng.normal(3.0, 0.3, 60)])
    member = np.arange(len(scores)) < 40
    boundary, n, expected, p, accepted, carries, why = extend(scores, member, member.copy(), 0.01)
    assert 0 < boundary < 3 and n > 3 * expected and p < 1e-6 and accepted and why == ""
    assert carries[540:].mean() > 0.8 and carries[40:540].mean() < 0.05


def test_extend__only_the_classes_own_tail_above_the_boundary__refused() -> None:
    # no carrier outside the members: what passes the boundary is the clean class's own upper tail
    rng = np.random.default_rng(1)
    scores = np.concatenate([rng.normal(3.0, 0.2, 40), rng.normal(0.0, 1.0, 600)])
    member = np.arange(len(scores)) < 40
    _, n, expected, p, accepted, carries, _ = extend(scores, member, member.copy(), 0.01)
    assert n > 0 and n == pytest.approx(expected, abs=4 * np.sqrt(expected)) and p > 0.01 and not accepted
    assert (carries == member).all()


def test_extend__members_not_above_the_rest__nothing_nominated() -> None:
    scores = np.array([0.0, 0.1, 1.0, 2.0, 3.0])
    member = np.array([True, True, False, False, False])
    boundary, n, _, p, accepted, carries, why = extend(scores, member, member.copy(), 0.01)
    assert np.isnan(boundary) and n == 0 and p == 1.0 and not accepted and (carries == member).all()
    assert "no higher" in why


def test_extend__the_rest_reads_the_same_in_most_samples__no_tail_to_measure_nothing_nominated() -> None:
    # a channel that is zero without the mark: a normal tail of no width would take every sample above zero
    rng = np.random.default_rng(2)
    scores = np.concatenate([rng.normal(3.0, 0.2, 40), np.zeros(400), rng.uniform(0.1, 1.0, 100)])
    member = np.arange(len(scores)) < 40
    boundary, n, _, p, accepted, carries, why = extend(scores, member, member.copy(), 0.01)
    assert np.isnan(boundary) and n == 0 and not accepted and (carries == member).all()
    assert "no spread" in why


def test_extend__members_the_box_test_cleared_are_not_taken_back() -> None:
    # the channels were chosen on the members' own scores: only class-mates outside the concept are nominated
    rng = np.random.default_rng(3)
    scores = np.concatenate([rng.normal(3.0, 0.2, 40), rng.normal(0.0, 1.0, 500)])
    member = np.arange(len(scores)) < 40
    carries = member.copy()
    carries[:20] = False  # 20 members whose paste moved nothing
    _, n, _, _, accepted, out, _ = extend(scores, member, carries, 0.01)
    assert not accepted and (out == carries).all() and n < 20


def test_extend__a_reading_that_is_not_finite__nothing_nominated() -> None:
    scores = np.array([3.0, 3.1, np.nan, 0.0, 0.2, 0.1])
    member = np.array([True, True, False, False, False, False])
    *_, accepted, carries, why = extend(scores, member, member.copy(), 0.01)
    assert not accepted and (carries == member).all() and "not finite" in why
