"""The reweight and augment corrections (soxai/train/corrections.py, augment.py) and the loop's weighted sampling."""

import numpy as np
import pandas as pd
import pytest

from soxai.train.augment import augmented_images, plan_augment
from soxai.train.corrections import (
    REST,
    capped_equal_shares,
    carrier_mask,
    group_balanced_weights,
    reweight_groups,
    reweight_record,
    spare_carriers,
    tied_conflicts,
)
from soxai.train.fit import ImagesWithExtra
from soxai.train.loop import weighted_epoch_order
from soxai.train.regions import concept_region

# ---------------------------------------------------------------- reweight


def test_group_balanced_weights__each_group_of_a_class_gets_an_equal_share_and_classes_keep_theirs():
    labels = np.array([0] * 100 + [1] * 50)
    groups = np.array([0] * 60 + [1] * 30 + [-1] * 10 + [2] * 50)  # noise is a group of class 0
    w = group_balanced_weights(labels, groups, max_upweight=10)
    for g in (0, 1, -1):
        assert w[groups == g].sum() == pytest.approx(100 / 3)
        assert np.ptp(w[groups == g]) == 0  # one weight per group
    assert w[labels == 0].sum() == pytest.approx(100) and w[labels == 1].sum() == pytest.approx(50)
    np.testing.assert_allclose(w[labels == 1], 1.0)  # a class of one group is drawn as in the baseline
    assert w.mean() == pytest.approx(1.0)
    assert w[groups == -1][0] == pytest.approx(100 / 3 / 10)  # the 10% minority: 3.3x


def test_group_balanced_weights__cap_limits_a_tiny_concept_and_gives_the_rest_to_the_others():
    labels = np.zeros(100, dtype=int)
    groups = np.array([5] * 3 + [0] * 97)
    w = group_balanced_weights(labels, groups, max_upweight=5)
    assert w[:3] == pytest.approx([5, 5, 5])  # an equal share would be 50 / 3 = 16.7x
    assert w[3:].sum() == pytest.approx(85) and w.sum() == pytest.approx(100)
    uncapped = group_balanced_weights(labels, groups, max_upweight=100)
    assert uncapped[0] == pytest.approx(50 / 3)


def test_group_balanced_weights__carriers_of_a_flagged_shortcut_are_never_drawn_more_often():
    """A mark on a minority of a class forms a small concept: balancing would draw its carriers 5x as often.
    They stay at 1x; their class's other samples take what they give up, in proportion, and the class its share."""
    labels = np.array([0] * 100 + [1] * 100)
    groups = np.array([7] * 20 + [0] * 80 + [1] * 50 + [2] * 50)
    carriers = np.zeros(200, dtype=bool)
    carriers[:18] = True  # 18 of concept 7's 20 members carry the mark
    carriers[100:110] = True  # carriers in a class where no group is upweighted: untouched
    plain = group_balanced_weights(labels, groups, 10)
    w = group_balanced_weights(labels, groups, 10, carriers)
    assert plain[0] == pytest.approx(2.5) and np.all(w[:18] == 1.0)
    assert w[18:20] == pytest.approx(plain[18:20] * w[20] / plain[20])  # the rest grows in proportion
    assert w[:100].sum() == pytest.approx(100) and np.all(w[:100] > 0)
    np.testing.assert_array_equal(w[100:], plain[100:])
    np.testing.assert_array_equal(group_balanced_weights(labels, groups, 10, np.zeros(200, dtype=bool)), plain)


def test_spare_carriers__water_fills_under_the_cap_and_leaves_out_what_no_one_can_take():
    w = spare_carriers(np.array([3.0, 3.0, 0.5, 1.9]), np.array([True, True, False, False]), cap=2.0)
    # 4 freed: in proportion 0.83 and 3.17, but 1.9 stops at the cap; the next round fills 0.5 to the cap too,
    # and the 2.4 no one can take is left out
    assert w.tolist() == pytest.approx([1.0, 1.0, 2.0, 2.0])
    w = spare_carriers(np.array([3.0, 0.5, 1.0]), np.array([True, False, False]), cap=10.0)
    assert w.tolist() == pytest.approx([1.0, 0.5 + 2 / 3, 1.0 + 4 / 3]) and w.sum() == pytest.approx(4.5)
    rng = np.random.default_rng(1)
    for _ in range(100):
        n = int(rng.integers(2, 30))
        weights, carrier = rng.uniform(0.1, 4.0, n), rng.random(n) < 0.3
        out = spare_carriers(weights, carrier, cap=4.0)
        assert np.all(out[carrier] <= np.minimum(weights[carrier], 1.0) + 1e-12)
        assert np.all(out[~carrier] >= weights[~carrier] - 1e-12) and np.all(out <= 4.0 + 1e-9)
        assert out.sum() == pytest.approx(weights.sum()) or np.all(out[~carrier] >= 4.0 - 1e-9)


def test_spare_carriers__ends_on_a_large_class_and_leaves_zero_weights_and_all_carrier_classes_alone():
    rng = np.random.default_rng(0)
    n = 100_000  # the old loop never ended here: a leftover below float resolution was never absorbed
    weights, carrier = rng.uniform(0.2, 3.0, n), rng.random(n) < 0.1
    out = spare_carriers(weights, carrier, cap=10.0)
    assert out.sum() == pytest.approx(weights.sum()) and np.all(out[carrier] <= 1.0)
    ratio = out[~carrier] / weights[~carrier]
    assert np.ptp(ratio) < 1e-9  # nobody reached the cap: one common factor
    assert spare_carriers(np.array([3.0, 0.0, 0.0]), np.array([True, False, False]), 10.0).tolist() == [1.0, 0, 0]
    assert spare_carriers(np.array([3.0, 2.0]), np.array([True, True]), 10.0).tolist() == [1.0, 1.0]


def test_reweight__carriers_in_a_conflict_give_their_draws_to_the_class_in_proportion():
    labels = np.zeros(100, dtype=int)
    concepts = np.array([1] * 10 + [2] * 30 + [3] * 60)
    groups = reweight_groups(labels, concepts, [(1, 0), (2, 0)])  # 1 and 2 conflicts, 3 the rest
    carriers = np.zeros(100, dtype=bool)
    carriers[10:15] = True  # five carriers inside conflict 2, drawn 1.11x by balancing
    plain = group_balanced_weights(labels, groups, 10)
    w = group_balanced_weights(labels, groups, 10, carriers)
    assert plain[10] == pytest.approx(100 / 3 / 30) and np.all(w[10:15] == 1.0)
    factor = w[~carriers] / plain[~carriers]
    assert np.ptp(factor) < 1e-12 and factor[0] > 1  # every other sample grows by one factor
    assert w.sum() == pytest.approx(100)


def test_carrier_mask__any_row_that_carries_and_none_without_a_table():
    table = pd.DataFrame({"sample_id": ["a", "b", "b", "c"], "concept_id": [1, 1, -1, 1],
                          "carries": [True, False, True, False]})
    assert carrier_mask(table, np.array(["a", "b", "c", "d"])).tolist() == [True, True, False, False]
    assert not carrier_mask(None, np.array(["a"])).any() and not carrier_mask(table.iloc[:0], np.array(["a"])).any()


def test_reweight_record__names_the_carriers_and_their_weight():
    labels = np.zeros(100, dtype=int)
    groups = np.array([7] * 20 + [0] * 80)
    carriers = np.arange(100) < 18
    rows = reweight_record(labels, groups, group_balanced_weights(labels, groups, 10, carriers), 10,
                           carriers=carriers)
    seven = next(r for r in rows if r["concept_id"] == 7)
    assert "18 of them carry a flagged shortcut" in seven["reason"]
    assert "drawn 1.00x, never more often" in seven["reason"]
    assert "carry" not in next(r for r in rows if r["concept_id"] == 0)["reason"]


def test_reweight_groups__each_conflict_its_own_group_and_the_rest_of_the_class_one():
    """Concepts the model gets right (a shortcut's small concept among them) are not drawn more often; a
    conflict concept of a class gets an equal share against the rest of it; a class without one stays at 1x."""
    labels = np.array([0] * 100 + [1] * 100)
    concepts = np.array([3] * 10 + [4] * 20 + [5] * 70 + [6] * 10 + [7] * 90)
    groups = reweight_groups(labels, concepts, [(3, 0), (6, 0)])  # concept 6 is of class 1: not its conflict
    assert groups.tolist() == [3] * 10 + [REST] * 90 + [REST] * 100
    w = group_balanced_weights(labels, groups, 10)
    assert w[0] == pytest.approx(5.0) and w[10] == pytest.approx(50 / 90)  # half the class's draws each
    np.testing.assert_allclose(w[100:], 1.0)
    plain = group_balanced_weights(labels, concepts, 10)
    assert plain[10] > 1 and w[10] < 1  # concept 4 (20 of 100, no conflict) was drawn 1.7x; now it is not
    rows = reweight_record(labels, groups, w, 10)
    assert [(r["concept_id"], r["label"], r["n_samples"]) for r in rows] == [(None, 0, 90), (3, 0, 10), (None, 1, 100)]
    assert "the rest of the class (outside its conflict concepts)" in rows[0]["reason"]
    assert (reweight_groups(labels, concepts, []) == REST).all()


def test_capped_equal_shares__sum_is_the_total_and_no_group_exceeds_the_cap():
    rng = np.random.default_rng(0)
    for _ in range(200):
        sizes = rng.integers(1, 80, size=rng.integers(1, 8))
        cap = float(rng.uniform(1, 6))
        shares = capped_equal_shares(sizes, sizes.sum(), cap)
        assert shares.sum() == pytest.approx(sizes.sum())
        assert np.all(shares <= cap * sizes + 1e-9)
        free = shares < cap * sizes - 1e-9  # the groups below the cap share equally, at least as much as any other
        if free.any():
            assert np.ptp(shares[free]) == pytest.approx(0, abs=1e-9)
            assert shares[free].min() >= shares.max() - 1e-9


def test_reweight_record__one_row_per_class_and_group_with_the_cap_named():
    labels = np.zeros(100, dtype=int)
    groups = np.array([5] * 3 + [0] * 97)
    rows = reweight_record(labels, groups, group_balanced_weights(labels, groups, 5), 5)
    assert [(r["concept_id"], r["n_samples"]) for r in rows] == [(0, 97), (5, 3)]
    assert "capped at 5x; an equal share would be 16.7x" in rows[1]["reason"]
    assert "capped" not in rows[0]["reason"] and "drawn 0.88x" in rows[0]["reason"]


def test_weighted_epoch_order__deterministic_by_seed_and_proportional_to_the_weights():
    w = np.array([1.0, 1.0, 8.0, 0.0])
    a = weighted_epoch_order(w, np.random.default_rng(3))
    assert (a == weighted_epoch_order(w, np.random.default_rng(3))).all() and len(a) == 4
    draws = np.concatenate([weighted_epoch_order(w, np.random.default_rng(s)) for s in range(500)])
    share = np.bincount(draws, minlength=4) / len(draws)
    assert share[3] == 0 and share[2] == pytest.approx(0.8, abs=0.03)
    with pytest.raises(ValueError, match="not all zero"):
        weighted_epoch_order(np.zeros(3), np.random.default_rng(0))


def test_train_model__weighted_sampling_deterministic_by_seed():
    import torch

    from soxai.train.config import TrainConfig
    from soxai.train.loop import train_model

    rng = np.random.default_rng(0)
    images = rng.random((40, 1, 6, 6), dtype=np.float32)
    labels = np.arange(40) % 2
    weights = np.where(np.arange(40) < 5, 6.0, 1.0)
    cfg = TrainConfig(epochs=2, batch_size=8)

    def fit(seed, w):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, 2))
        train_model(model, images, np.arange(40), labels, cfg, seed, torch.device("cpu"), sample_weights=w)
        return model[1].weight.detach().clone()

    assert torch.equal(fit(1, weights), fit(1, weights))
    assert not torch.equal(fit(1, weights), fit(2, weights))
    assert not torch.equal(fit(1, weights), fit(1, None))


# ---------------------------------------------------------------- augment

BOX = (0, 0, 2, 2)


def _toy(n_per_class=10, marked=5):
    """Three classes of 8x8 grey images; the first ``marked`` of class 0 carry a bright 2x2 mark at the top left
    and form concept 7 (the rest of class 0 is concept 8, classes 1 and 2 concepts 1 and 2)."""
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], n_per_class)
    images = rng.uniform(0.0, 0.5, (len(labels), 1, 8, 8)).astype(np.float32)
    images[:marked, :, :2, :2] = 1.0
    concept = np.where(labels == 0, 8, labels)
    concept[:marked] = 7
    train = pd.DataFrame({"sample_id": [f"s{i:02d}" for i in range(len(labels))], "label": labels,
                          "concept_id": concept})
    return images, train


def _scores(detector="transplant", **extra):
    return pd.DataFrame([{"concept_id": 7, "detector": detector, "score": 0.9, "is_bias": True, "reason": "moved",
                          **extra}])


def _plan(train, scores, carriers=None, seed=0, rate=None, fallback="drop_carriers"):
    return plan_augment(train, {7: "moved"}, scores, carriers, {7: 0, 8: 0, 1: 1, 2: 2}, (8, 8), seed, rate,
                        fallback, max_upweight=10)


def test_plan_augment__pastes_the_carriers_box_into_other_class_images():
    images, train = _toy()
    rows = np.arange(len(train))
    plan = _plan(train, _scores(box=list(BOX)))
    labels = train["label"].to_numpy()
    # the carriers' share of class 0 (5 of 10) of each other class, replacing their originals
    assert len(plan.recipients) == 10 and set(np.bincount(labels[plan.recipients])[1:]) == {5}
    assert set(plan.donors) <= set(range(5)) and plan.keep.all() and (plan.weights == 1).all()
    x = augmented_images(images, rows, plan)
    np.testing.assert_array_equal(x[:, :, :2, :2], images[plan.donors][:, :, :2, :2])  # the mark, pasted
    rest = np.ones((8, 8), dtype=bool)
    rest[:2, :2] = False
    np.testing.assert_array_equal(x[:, :, rest], images[plan.recipients][:, :, rest])  # nothing else moved
    (row,) = [c for c in plan.corrections if c["concept_id"] == 7]
    assert row["correction"] == "augment" and row["n_samples"] == 10
    assert "rows 0-1, cols 0-1" in row["reason"] and "5 carriers" in row["reason"] and "replace" in row["reason"]
    table = plan.table(train)
    assert len(table) == len(train) and int(table["augment_concept"].notna().sum()) == 10
    pasted = table[table["augment_concept"].notna()]
    assert pasted["donor_id"].isin(train["sample_id"][:5]).all()
    assert pasted["reason"].str.contains("pasted in .flagged concept 7, class 0.").all()


def test_plan_augment__carrier_table_chooses_the_donors_and_rate_sets_the_share():
    _, train = _toy()
    carriers = pd.DataFrame({"sample_id": train["sample_id"][:10], "concept_id": 7, "label": 0,
                             "member": [True] * 5 + [False] * 5, "threshold": 0.5,
                             "carries": [True, True, False, False, False, True, False, False, False, False]})
    plan = _plan(train, _scores(box=list(BOX)), carriers=carriers, rate=0.2)
    assert set(plan.donors) == {0, 1, 5} and len(plan.recipients) == 4  # 20% of classes 1 and 2


def test_plan_augment__pixels_of_pixel_transplant_are_pasted():
    images, train = _toy()
    pixels = [0, 1, 8, 9]  # the same 2x2 corner, as flat indices
    plan = _plan(train, _scores("pixel_transplant", box=[0, 0, 4, 4], pixels=pixels))
    x = augmented_images(images, np.arange(len(train)), plan)
    np.testing.assert_array_equal(x[:, :, :2, :2], images[plan.donors][:, :, :2, :2])
    np.testing.assert_array_equal(x[:, :, 2:, 2:], images[plan.recipients][:, :, 2:, 2:])  # not the whole box
    assert "4 pixels in rows 0-1, cols 0-1" in plan.corrections[0]["reason"]


def test_plan_augment__deterministic_by_seed():
    _, train = _toy()
    a, b, c = (_plan(train, _scores(box=list(BOX)), seed=s) for s in (1, 1, 2))
    assert (a.recipients == b.recipients).all() and (a.donors == b.donors).all()
    assert not ((a.recipients == c.recipients).all() and (a.donors == c.donors).all())


@pytest.mark.parametrize("fallback", ["drop_carriers", "reweight", "none"])
def test_plan_augment__no_region_falls_back_and_records_why(fallback):
    _, train = _toy(marked=3)
    plan = _plan(train, _scores("own_box"), fallback=fallback)
    assert len(plan.recipients) == 0
    (row,) = plan.corrections
    assert row["concept_id"] == 7 and row["correction"] == fallback
    assert "cannot be augmented: flagged only by own_box" in row["reason"]
    assert f"retrain.augment_fallback={fallback}" in row["reason"]
    table = plan.table(train)
    if fallback == "drop_carriers":  # no carrier test: the members are the carriers
        assert plan.keep.tolist() == [False] * 3 + [True] * 27 and len(table) == 27
        assert "dropped its 3 carriers" in row["reason"]
    elif fallback == "reweight":  # class 0's two concepts (3 and 7 samples) get half of its draws each
        assert plan.weights[:10] == pytest.approx([10 / 6] * 3 + [10 / 14] * 7)
        assert (plan.weights[10:] == 1).all() and table["reason"][:10].str.contains("reweighted").all()
    else:
        assert plan.keep.all() and (plan.weights == 1).all() and (table["reason"] == "").all()


def _colour_world(n_per_class=200, agree=0.9, seed=0):
    """Two classes of 2-channel 'red' / 'green' images (the colour: which channel is bright), the colour agreeing
    with the label in ``agree`` of each class; concept 7 = class 0's green images, 8 = class 1's red ones."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], n_per_class)
    green = np.where(labels == 0, rng.random(len(labels)) < agree, rng.random(len(labels)) >= agree)
    images = rng.uniform(0.0, 0.2, (len(labels), 2, 6, 6)).astype(np.float32)
    images[green, 1] += 0.7
    images[~green, 0] += 0.7
    concept = np.where(labels == 0, np.where(green, 7, 3), np.where(green, 4, 8))
    train = pd.DataFrame({"sample_id": [f"s{i:03d}" for i in range(len(labels))], "label": labels,
                          "concept_id": concept})
    return images, train, green


def _is_green(x):
    return x[:, 1].mean(axis=(1, 2)) > x[:, 0].mean(axis=(1, 2))


def test_plan_augment__whole_image_flags_shuffle_the_statistics_so_a_two_sided_colour_stops_predicting():
    images, train, green = _colour_world()
    scores = pd.DataFrame([{"concept_id": c, "detector": "statistics_transplant", "score": 0.5, "is_bias": True,
                            "reason": "moved"} for c in (7, 8)])
    plan = plan_augment(train, {7: "moved", 8: "moved"}, scores, None, {7: 0, 3: 0, 4: 1, 8: 1}, (6, 6), 0, None,
                        "drop_carriers", 10)
    labels = train["label"].to_numpy()
    # by default every image of every class, donors from both classes
    assert np.bincount(labels[plan.recipients]).tolist() == [200, 200]
    assert set(labels[plan.donors]) == {0, 1} and plan.keep.all()
    x = augmented_images(images, np.arange(len(train)), plan)
    np.testing.assert_array_equal(_is_green(x), green[plan.donors])  # each took its donor's colour
    after = green.copy()
    after[plan.recipients] = _is_green(x)
    gap_before = green[labels == 0].mean() - green[labels == 1].mean()
    gap_after = after[labels == 0].mean() - after[labels == 1].mean()
    assert gap_before > 0.7 and abs(gap_after) < 0.15  # the pasting-at-the-carriers'-share rule would reverse it
    rows = {c["concept_id"]: c for c in plan.corrections}
    assert rows[7]["correction"] == rows[8]["correction"] == "augment"
    assert rows[7]["n_samples"] == len(plan.recipients) and rows[8]["n_samples"] == 0
    assert "no region to paste" in rows[7]["reason"] and "same shuffle corrects concept 8" in rows[7]["reason"]
    assert "statistics shuffle of concept 7" in rows[8]["reason"]
    table = plan.table(train)
    assert table["reason"].str.contains("brightness and contrast of s").sum() == len(plan.recipients)


def test_recolour__keeps_the_shape_in_the_donors_colour_and_equals_the_statistics_transplant_on_grey():
    from soxai.bias.disparity import match_statistics
    from soxai.train.regions import recolour

    rng = np.random.default_rng(0)
    shape = rng.uniform(0.0, 1.0, (6, 6)).astype(np.float32)
    red = np.stack([shape, np.zeros_like(shape)])[None]  # the shape in channel 0 only
    green = np.stack([np.zeros_like(shape), rng.uniform(0.0, 1.0, (6, 6)).astype(np.float32)])[None]
    out = recolour(red, green)[0]
    assert np.abs(out[0]).max() == 0.0  # the donor's empty channel stays empty
    assert np.corrcoef(out[1].ravel(), shape.ravel())[0, 1] > 0.99  # the recipient's shape, now green
    assert out[1].mean() == pytest.approx(green[0, 1].mean(), abs=0.02)
    assert np.ptp(match_statistics(red, green)[0, 1]) == 0.0  # channel by channel: no shape left at all
    grey_r, grey_d = rng.uniform(0.0, 1.0, (2, 4, 1, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(recolour(grey_r, grey_d), match_statistics(grey_r, grey_d), atol=1e-6)


def test_plan_augment__a_concept_flagged_by_a_box_test_and_the_statistics_test_is_shuffled_not_pasted():
    _, train, _ = _colour_world()
    scores = pd.DataFrame([{"concept_id": 7, "detector": d, "score": s, "is_bias": True, "reason": "moved",
                            "box": b} for d, s, b in (("transplant", 0.9, [0, 0, 2, 2]),
                                                      ("statistics_transplant", 0.4, None))])
    plan = plan_augment(train, {7: "moved"}, scores, None, {7: 0, 3: 0, 4: 1, 8: 1}, (6, 6), 0, None,
                        "drop_carriers", 10)
    (row,) = plan.corrections
    assert row["correction"] == "augment" and "whole-image flag" in row["reason"]
    assert plan.regions[7].whole_image and set(train["label"][plan.recipients]) == {0, 1}


def test_plan_augment__a_whole_image_flag_without_carriers_falls_back_and_says_why():
    _, train, _ = _colour_world()
    scores = pd.DataFrame([{"concept_id": 7, "detector": "statistics_transplant", "score": 0.5, "is_bias": True,
                            "reason": "moved"}])
    carriers = pd.DataFrame({"sample_id": train["sample_id"][:5], "concept_id": 7, "label": 0, "member": True,
                             "threshold": 0.5, "carries": False})
    plan = plan_augment(train, {7: "moved"}, scores, carriers, {7: 0, 3: 0, 4: 1, 8: 1}, (6, 6), 0, None,
                        "none", 10)
    (row,) = plan.corrections
    assert len(plan.recipients) == 0 and row["correction"] == "none"
    assert "found no carrier of it, so there is no share to shuffle" in row["reason"]


def test_augmented_images__reads_the_recipients_in_chunks_with_the_same_result():
    images, train, _ = _colour_world()
    scores = pd.DataFrame([{"concept_id": 7, "detector": "statistics_transplant", "score": 0.5, "is_bias": True,
                            "reason": "moved"}])
    plan = plan_augment(train, {7: "moved"}, scores, None, {7: 0, 3: 0, 4: 1, 8: 1}, (6, 6), 0, 1.0,
                        "drop_carriers", 10)
    rows = np.arange(len(train))
    np.testing.assert_array_equal(augmented_images(images, rows, plan, chunk=7), augmented_images(images, rows, plan))


def test_plan_augment__whole_image_shuffle_follows_the_rate_and_the_seed():
    _, train, _ = _colour_world()
    scores = pd.DataFrame([{"concept_id": 7, "detector": "statistics_transplant", "score": 0.5, "is_bias": True,
                            "reason": "moved"}])
    def plan(seed, rate):
        return plan_augment(train, {7: "moved"}, scores, None, {7: 0, 3: 0, 4: 1, 8: 1}, (6, 6), seed, rate,
                            "drop_carriers", 10)
    a, b, c = plan(1, 0.25), plan(1, 0.25), plan(2, 0.25)
    assert len(a.recipients) == 100 and "retrain.augment_rate" in a.corrections[0]["reason"]
    assert (a.recipients == b.recipients).all() and (a.donors == b.donors).all()
    assert not (a.recipients == c.recipients).all()


def test_plan_augment__override_only_flag_names_no_region():
    _, train = _toy()
    plan = _plan(train, _scores("override"), fallback="none")
    assert "person's override" in plan.corrections[0]["reason"]


def test_plan_augment__nothing_flagged_leaves_the_set_unchanged_and_says_so():
    _, train = _toy()
    plan = plan_augment(train, {}, _scores(box=list(BOX)), None, {7: 0}, (8, 8), 0, None, "drop_carriers", 10)
    assert plan.keep.all() and len(plan.recipients) == 0 and (plan.weights == 1).all()
    (row,) = plan.corrections
    assert row["concept_id"] is None and row["correction"] == "none" and "nothing flagged" in row["reason"]
    assert len(plan.table(train)) == len(train)


def test_concept_region__highest_scoring_regional_flag_names_the_box():
    scores = pd.concat([_scores("statistics_transplant", score=0.99), _scores(box=[1, 2, 3, 4]),
                        _scores("concentration", box=[5, 5, 7, 7], is_bias=False)])
    region = concept_region(scores, 7, (8, 8))
    assert region.detector == "transplant" and region.box == (1, 2, 3, 4)
    assert concept_region(scores, 99, (8, 8)) is None


def test_images_with_extra__rows_past_the_base_read_the_extra_images(tmp_path):
    import pickle

    base = np.arange(4 * 2, dtype=np.float32).reshape(4, 1, 1, 2)
    np.save(tmp_path / "x.npy", base)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    extra = -np.ones((2, 1, 1, 2), dtype=np.float32)
    both = ImagesWithExtra(mapped, extra)
    assert both.shape == (6, 1, 1, 2) and len(both) == 6
    got = both[np.array([5, 0, 3, 4])]
    np.testing.assert_array_equal(got, np.stack([extra[1], base[0], base[3], extra[0]]))
    np.testing.assert_array_equal(both[1], base[1])
    again = pickle.loads(pickle.dumps(both))  # DataLoader workers reopen the memmap
    assert isinstance(again.base, np.memmap)
    np.testing.assert_array_equal(again[np.array([4, 2])], both[np.array([4, 2])])


def test_plan_augment__carriers_only_the_concepts_channels_found_count_in_the_share_but_give_no_paste():
    _, train = _toy()
    # members 0-4 carry by the paste of the region; 5-7 were found by the concept's channels only (their mark
    # sits elsewhere, so a copy of the region from them holds none)
    carriers = pd.DataFrame({"sample_id": train["sample_id"][:10], "concept_id": 7, "label": 0,
                             "member": [True] * 5 + [False] * 5, "flip_rate": [0.9] * 5 + [0.0] * 5,
                             "threshold": 0.5, "carries": [True] * 8 + [False] * 2,
                             "channel_threshold": 2.0})
    plan = _plan(train, _scores(box=list(BOX)), carriers=carriers)
    labels = train["label"].to_numpy()
    # the share is all 8 carriers' (8 of 10 of class 0); the donors are the 5 whose region holds the mark
    assert len(plan.recipients) == 16 and set(np.bincount(labels[plan.recipients])[1:]) == {8}
    assert set(plan.donors) == set(range(5))
    (row,) = plan.corrections
    assert "the 5 of its 8 carriers whose region holds it" in row["reason"]


def test_plan_augment__a_carrier_the_channels_found_gives_its_box_re_centred_on_its_mark():
    """Without the layer's window (bias/carriers.parquet before bias logic 15, or a layer whose cells see no single
    place) the region is re-centred on the channels' place."""
    images, train = _toy()
    images[5:8, :, 5:7, 4:6] = 1.0  # three more carriers, the mark elsewhere
    carriers = pd.DataFrame({"sample_id": train["sample_id"][:10], "concept_id": 7, "label": 0,
                             "member": [True] * 5 + [False] * 5, "flip_rate": [0.9] * 5 + [0.0] * 5,
                             "threshold": 0.5, "carries": [True] * 8 + [False] * 2, "channel_threshold": 2.0,
                             "channel_y": [1.0] * 5 + [6.0] * 2 + [np.nan] * 3,
                             "channel_x": [1.0] * 5 + [5.0] * 2 + [np.nan] * 3})
    plan = _plan(train, _scores(box=list(BOX)), carriers=carriers)
    # carrier 7's mark has no place: it counts in the share (8 of 10) but gives no paste
    assert set(plan.donors) == set(range(7)) and len(plan.recipients) == 16
    moved = plan.donors >= 5
    assert np.isnan(plan.boxes[~moved]).all() and (plan.boxes[moved] == [5, 4, 7, 6]).all()
    x = augmented_images(images, np.arange(len(train)), plan)
    np.testing.assert_array_equal(x[moved][:, :, 5:7, 4:6], 1.0)  # the mark, where it sat in its donor
    np.testing.assert_array_equal(x[moved][:, :, :2, :2], images[plan.recipients[moved]][:, :, :2, :2])
    (row,) = plan.corrections
    assert "the 5 of its 8 carriers whose region holds it" in row["reason"]
    assert "re-centred on the mark's place in the 2" in row["reason"]
    reasons = plan.table(train).set_index("sample_id")["reason"]
    assert reasons.str.contains("rows 5-6, cols 4-5 .the region moved onto the carrier's mark").sum() == moved.sum()


def _windowed_carriers(train, windows):
    """Carrier rows of concept 7 for class 0's ten samples: 0-4 members the box test found, 5-7 found by the
    concept's channels only, with the layer's window ``windows`` (10, 4) where the channels are strongest."""
    windows = np.asarray(windows, dtype=np.float64)
    return pd.DataFrame({"sample_id": train["sample_id"][:10], "concept_id": 7, "label": 0,
                         "member": [True] * 5 + [False] * 5, "flip_rate": [0.9] * 5 + [0.0] * 5,
                         "threshold": 0.5, "carries": [True] * 8 + [False] * 2, "channel_threshold": 2.0,
                         "channel_y": (windows[:, 0] + windows[:, 2]) / 2,
                         "channel_x": (windows[:, 1] + windows[:, 3]) / 2,
                         **{c: windows[:, i] for i, c in enumerate(["window_y0", "window_x0", "window_y1",
                                                                     "window_x1"])}})


def test_plan_augment__a_carrier_gives_the_window_its_concepts_channels_see_and_a_cut_mark_is_pasted_whole():
    images, train = _toy()
    images[:5, :, :3, :3] = 1.0  # the members' mark is 3x3: the 2x2 region cuts it
    images[5:8, :, 4:7, 3:6] = 1.0  # three carriers with the mark elsewhere
    windows = [(0, 0, 3, 3)] * 5 + [(4, 3, 7, 6)] * 3 + [(np.nan,) * 4] * 2
    plan = _plan(train, _scores(box=list(BOX)), carriers=_windowed_carriers(train, windows))
    assert set(plan.donors) == set(range(8)) and len(plan.recipients) == 16
    x = augmented_images(images, np.arange(len(train)), plan)
    inside = plan.donors < 5
    # a member's region grows to the window that overlaps it: the whole 3x3 mark, and nothing beyond it
    assert (plan.boxes[inside] == [0, 0, 3, 3]).all()
    np.testing.assert_array_equal(x[inside][:, :, :3, :3], 1.0)
    np.testing.assert_array_equal(x[inside][:, :, 3:], images[plan.recipients[inside]][:, :, 3:])
    np.testing.assert_array_equal(x[inside][:, :, :3, 3:], images[plan.recipients[inside]][:, :, :3, 3:])
    # a carrier the channels found elsewhere gives its window there, and not the region
    assert (plan.boxes[~inside] == [4, 3, 7, 6]).all()
    np.testing.assert_array_equal(x[~inside][:, :, 4:7, 3:6], 1.0)
    np.testing.assert_array_equal(x[~inside][:, :, :2, :2], images[plan.recipients[~inside]][:, :, :2, :2])
    (row,) = plan.corrections
    assert "widened in 5 of them" in row["reason"] and "from the 3 the concept's channels found elsewhere" in \
        row["reason"]
    reasons = plan.table(train).set_index("sample_id")["reason"]
    assert reasons.str.contains("rows 4-6, cols 3-5 .the pixels the model's layer sees").sum() == (~inside).sum()


def test_plan_augment__a_window_apart_from_the_region_leaves_a_members_region_as_it_is():
    """A member's channels strongest away from its region (the window does not overlap it): the box the test
    showed to move predictions is pasted, not a box spanning both."""
    images, train = _toy()
    windows = [(5, 5, 8, 8)] * 5 + [(np.nan,) * 4] * 5
    carriers = _windowed_carriers(train, windows).assign(carries=[True] * 5 + [False] * 5)
    plan = _plan(train, _scores(box=list(BOX)), carriers=carriers)
    assert set(plan.donors) <= set(range(5)) and np.isnan(plan.boxes).all()


def test_region_paste__a_box_of_a_pairs_own_replaces_the_region_there():
    from soxai.train.regions import Region

    donors = np.arange(2 * 64, dtype=np.float32).reshape(2, 1, 8, 8)
    recipients = np.zeros((2, 1, 8, 8), np.float32)
    out = Region("transplant", box=(0, 0, 2, 2)).paste(recipients, donors, np.array([[np.nan] * 4, [5, 6, 8, 8]]))
    np.testing.assert_array_equal(out[0, 0, :2, :2], donors[0, 0, :2, :2])
    assert out[0].sum() == donors[0, 0, :2, :2].sum()
    np.testing.assert_array_equal(out[1, 0, 5:, 6:], donors[1, 0, 5:, 6:])
    assert out[1, 0, :2, :2].sum() == 0 and out[1].sum() == donors[1, 0, 5:, 6:].sum()
    wide = Region("transplant", box=(0, 0, 2, 3))
    assert wide.placed((4.0, 3.5), (8, 8)) == (3, 2, 5, 5)
    assert wide.placed((7.9, 7.9), (8, 8)) == (6, 5, 8, 8)  # kept inside the image


def test_correction_plan__reweight_reads_the_conflicts_and_carriers_of_the_run():
    """The variant's wiring: conflicts from bias/conflicts.parquet, carriers from bias/carriers.parquet, one
    train_ids row per sample with its weight, conflict and carrier, and a record row per (class, group)."""
    from soxai.config import load_config
    from soxai.errors import StageError
    from soxai.train.variants import _correction_plan, _CorrectionInputs

    labels = np.array([0] * 100 + [1] * 50)
    concepts = np.array([1] * 10 + [2] * 20 + [3] * 70 + [4] * 50)
    train = pd.DataFrame({"sample_id": [f"s{i:03d}" for i in range(150)], "label": labels, "row": np.arange(150)})
    carriers = pd.DataFrame({"sample_id": train["sample_id"][10:30], "concept_id": 3, "label": 0, "member": False,
                             "threshold": 0.5, "carries": True})
    inputs = _CorrectionInputs(concept_ids=concepts, preds=labels, flagged={3: "a shortcut on most of class 0"},
                               scores=pd.DataFrame(), carriers=carriers, concept_labels={1: 0, 2: 0, 3: 0, 4: 1},
                               conflicts=[(1, 0)])
    plan = _correction_plan(load_config(None, []), "reweight", 0, train, np.zeros((150, 1, 4, 4)), inputs)
    t = plan.table
    assert t["conflict"].tolist() == [True] * 10 + [False] * 140 and t["carrier"].sum() == 20
    assert t["weight"][:10].tolist() == pytest.approx([5.0] * 10)  # half of class 0's draws
    assert (t["weight"][10:30] < 1).all() and (t["weight"][100:] == 1).all()  # carriers in the rest; class 1 as is
    assert t["weight"][:100].sum() == pytest.approx(100) and plan.mask.all()
    assert [(r["concept_id"], r["label"]) for r in plan.record["corrections"]] == [(None, 0), (1, 0), (None, 1)]
    inputs.conflicts = None
    with pytest.raises(StageError, match="conflicts.parquet is missing"):
        _correction_plan(load_config(None, []), "reweight", 0, train, np.zeros((150, 1, 4, 4)), inputs)


def test_tied_conflicts__tied_where_most_of_its_class_or_of_the_class_its_errors_go_to_carries_a_flag():
    # class 0: flagged concept 3 holds 70 of 100 (most); class 1: flagged concept 6 holds 10 of 100 (a minority)
    labels = np.array([0] * 100 + [1] * 100 + [2] * 100)
    concepts = np.array([1] * 10 + [2] * 20 + [3] * 70 + [4] * 20 + [5] * 70 + [6] * 10 + [7] * 20 + [8] * 80)
    preds = labels.copy()
    preds[100:110] = 0  # class 1's conflict 4 is mostly taken for class 0, whose majority carries a flag
    preds[200:215] = 1  # class 2's conflict 7 is taken for class 1, whose flag is on a minority
    carrier = np.zeros(300, dtype=bool)
    conflicts = [(1, 0), (4, 1), (7, 2)]
    tied, untied = tied_conflicts(labels, concepts, preds, conflicts, {3, 6}, carrier)
    assert tied == [(1, 0), (4, 1)]
    assert [(r["concept_id"], r["label"], r["correction"], r["n_samples"]) for r in untied] == [(7, 2, "none", 20)]
    assert "no flagged shortcut is carried by most of class 2 (0% of it) or of class 1" in untied[0]["reason"]
    assert "(10%)" in untied[0]["reason"] and "hard subgroup" in untied[0]["reason"]
    # the carrier test's carriers count with the flagged members: 45 more of class 1 carry concept 6's shortcut
    carrier[110:155] = True
    tied, untied = tied_conflicts(labels, concepts, preds, conflicts, {3, 6}, carrier)
    assert tied == [(1, 0), (4, 1), (7, 2)] and untied == []
    # no flag: nothing tied, whatever the conflicts
    assert tied_conflicts(labels, concepts, preds, conflicts, set(), np.zeros(300, bool))[0] == []


def test_correction_plan__reweight_with_no_tied_conflict_trains_as_the_baseline():
    """A conflict beside a flag on a minority of its class (a hard subgroup beside a mark): uniform draws, no
    epoch selection, and the record names the conflict and why it was left."""
    from soxai.config import load_config
    from soxai.train.variants import _correction_plan, _CorrectionInputs

    labels = np.array([0] * 100 + [1] * 50)
    concepts = np.array([1] * 10 + [2] * 20 + [3] * 70 + [4] * 50)
    train = pd.DataFrame({"sample_id": [f"s{i:03d}" for i in range(150)], "label": labels, "row": np.arange(150)})
    preds = labels.copy()
    preds[:8] = 1
    for conflicts in ([(1, 0)], []):
        inputs = _CorrectionInputs(concept_ids=concepts, preds=preds, flagged={2: "a mark on 20% of class 0"},
                                   scores=pd.DataFrame(), carriers=None, concept_labels={1: 0, 2: 0, 3: 0, 4: 1},
                                   conflicts=conflicts)
        plan = _correction_plan(load_config(None, []), "reweight", 0, train, np.zeros((150, 1, 4, 4)), inputs)
        assert plan.weights is None and plan.mask.all() and (plan.table["weight"] == 1).all()
        assert not plan.table["conflict"].any()
        rows = plan.record["corrections"]
        assert [r["correction"] for r in rows] == ["none"] and rows[0]["weight"] == 1.0
        assert ("concept 1 is a conflict (the baseline is wrong on 8 of its 10)" in rows[0]["reason"]
                if conflicts else "no conflict concept" in rows[0]["reason"])


def test_tied_conflicts__a_bare_half_is_not_most_and_the_errors_alone_name_the_class():
    labels = np.array([0] * 100 + [1] * 100)
    concepts = np.array([1] * 50 + [2] * 50 + [3] * 20 + [4] * 80)
    preds = labels.copy()
    preds[100:104] = 0  # 4 of conflict 3's 20 are wrong, all taken for class 0; the other 16 are right (class 1)
    conflicts = [(3, 1)]
    # class 0's flagged concept 1 holds exactly half of it: not most
    tied, untied = tied_conflicts(labels, concepts, preds, conflicts, {1}, np.zeros(200, bool))
    assert tied == [] and "(50%)" in untied[0]["reason"] and "or of class 0" in untied[0]["reason"]
    # one more carrier makes it most; the conflict's members are mostly predicted as their own class, but its
    # errors go to class 0, and that is what ties it
    carrier = np.zeros(200, bool)
    carrier[50] = True
    assert tied_conflicts(labels, concepts, preds, conflicts, {1}, carrier)[0] == [(3, 1)]


def test_correction_plan__an_untied_conflict_beside_a_tied_one_is_drawn_with_the_rest_and_says_so():
    from soxai.config import load_config
    from soxai.train.variants import _correction_plan, _CorrectionInputs

    # class 1 carries a flagged shortcut (concept 4, all of it); class 0's conflict 1 is taken for class 1 (tied),
    # its conflict 2 for class 2, which carries none (untied): conflict 2 stays in class 0's rest
    labels = np.array([0] * 100 + [1] * 50 + [2] * 50)
    concepts = np.array([1] * 10 + [2] * 20 + [3] * 70 + [4] * 50 + [5] * 50)
    train = pd.DataFrame({"sample_id": [f"s{i:03d}" for i in range(200)], "label": labels, "row": np.arange(200)})
    preds = labels.copy()
    preds[:8], preds[10:20] = 1, 2
    inputs = _CorrectionInputs(concept_ids=concepts, preds=preds, flagged={4: "a shortcut on all of class 1"},
                               scores=pd.DataFrame(), carriers=None, concept_labels={1: 0, 2: 0, 3: 0, 4: 1, 5: 2},
                               conflicts=[(1, 0), (2, 0)])
    plan = _correction_plan(load_config(None, []), "reweight", 0, train, np.zeros((200, 1, 4, 4)), inputs)
    t = plan.table
    assert t["conflict"].tolist() == [True] * 10 + [False] * 190
    assert t["weight"][:10].tolist() == pytest.approx([5.0] * 10)
    rest = 50 / 90
    assert t["weight"][10:100].tolist() == pytest.approx([rest] * 90)
    rows = {(r["concept_id"], r["label"]): r for r in plan.record["corrections"]}
    assert rows[(2, 0)]["correction"] == "none" and rows[(2, 0)]["weight"] == pytest.approx(rest, abs=1e-6)
    assert "drawn with the rest of class 0, 0.56x as often as in the baseline" in rows[(2, 0)]["reason"]
    assert rows[(1, 0)]["correction"] == "reweight"


def test_plan_augment__without_a_window_a_member_keeps_its_region_and_a_carrier_found_elsewhere_is_re_centred():
    """The bias stage gives no window (NaN) where the layer's cells see more than a quarter of the image: a member
    pastes its region, a carrier the channels found elsewhere the region re-centred on their place; the reason
    counts the carriers found elsewhere, whatever box they give."""
    images, train = _toy()
    windows = [(np.nan,) * 4] * 10
    carriers = _windowed_carriers(train, windows)
    carriers.loc[5:7, ["channel_y", "channel_x"]] = [[5.5, 5.5], [5.5, 5.5], [1.0, 1.0]]
    carriers.loc[8, "carries"] = True  # found elsewhere too, with no place: it gives no paste
    plan = _plan(train, _scores(box=list(BOX)), carriers=carriers)
    assert set(plan.donors) == set(range(8))
    inside = plan.donors < 5
    assert np.isnan(plan.boxes[inside]).all()
    assert (plan.boxes[(plan.donors == 5) | (plan.donors == 6)] == [4, 4, 6, 6]).all()  # 2x2 on (5.5, 5.5)
    assert np.isnan(plan.boxes[plan.donors == 7]).all()  # its place puts the region on the region itself
    (row,) = plan.corrections
    # carrier 7 gives the region's own box and still counts as found elsewhere
    assert "the 5 of its 9 carriers whose region holds it" in row["reason"]
    assert "re-centred on the mark's place in the 2" in row["reason"]
