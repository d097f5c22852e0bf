"""augment of the unclustered test's flag (soxai.train.augment._paste_unclustered): each carrier of a flagged class
gives its own most salient box, the one the test pasted (bias/carriers.parquet, concept -1, window_* columns)."""

import numpy as np
import pandas as pd

from soxai.bias.carriers import WINDOW_COLUMNS
from soxai.train.augment import augmented_images, plan_augment

CORNERS = [(0, 0), (0, 6), (6, 0), (6, 6), (0, 0)]


def _world():
    """Three classes of 10 8x8 images; the first 5 of class 0 carry a bright 2x2 mark, each in its own corner, and
    the unclustered test found them (its rows for class 0 and, unflagged, for class 1)."""
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 10)
    images = rng.uniform(0.0, 0.5, (30, 1, 8, 8)).astype(np.float32)
    boxes = np.full((30, 4), np.nan)
    for i, (y, x) in enumerate(CORNERS):
        images[i, :, y:y + 2, x:x + 2] = 1.0
        boxes[i] = (y, x, y + 2, x + 2)
    boxes[5:20] = (3, 3, 5, 5)  # the other samples' own boxes, in their middle
    train = pd.DataFrame({"sample_id": [f"s{i:02d}" for i in range(30)], "label": labels,
                          "concept_id": np.where(np.arange(30) < 4, -1, labels + 10)})
    carriers = pd.DataFrame({"sample_id": train["sample_id"][:20], "concept_id": -1, "label": labels[:20],
                             "member": np.arange(20) < 4, "threshold": 0.4, "n_recipients": 16,
                             "flip_rate": np.where(np.arange(20) < 5, 0.8, 0.0),
                             "carries": (np.arange(20) < 5) | (np.arange(20) >= 18),
                             **{c: boxes[:20, j] for j, c in enumerate(WINDOW_COLUMNS)}})
    return images, train, carriers


def _plan(train, carriers, fallback="drop_carriers", flagged=None, seed=0):
    return plan_augment(train, flagged or {}, pd.DataFrame(columns=["concept_id", "detector", "score", "is_bias"]),
                        carriers, {10: 0, 11: 1, 12: 2}, (8, 8), seed, None, fallback, 10.0,
                        unclustered={0: "a shortcut among samples that form no concept"})


def test_plan_augment__an_unclustered_flag_pastes_each_carriers_own_box_into_other_classes():
    images, train, carriers = _world()
    plan = _plan(train, carriers)
    labels = train["label"].to_numpy()
    # the carriers' share of class 0 (5 of 10) of each other class; class 1's two unflagged carriers give nothing
    assert len(plan.recipients) == 10 and set(np.bincount(labels[plan.recipients])[1:]) == {5}
    assert set(plan.donors) <= set(range(5)) and plan.keep.all() and (plan.concepts == -1).all()
    x = augmented_images(images, np.arange(30), plan)
    for i, (r, d) in enumerate(zip(plan.recipients, plan.donors, strict=True)):
        y, c = CORNERS[d]
        assert tuple(plan.boxes[i]) == (y, c, y + 2, c + 2)
        np.testing.assert_array_equal(x[i, :, y:y + 2, c:c + 2], 1.0)  # the mark, at its own place
        rest = np.ones((8, 8), dtype=bool)
        rest[y:y + 2, c:c + 2] = False
        np.testing.assert_array_equal(x[i, :, rest], images[r, :, rest])  # nothing else moved
    (row,) = plan.corrections
    assert row["concept_id"] == -1 and row["label"] == 0 and row["correction"] == "augment"
    assert "the unclustered samples of class 0" in row["reason"] and "each of the 5 of its 5 carriers" in row["reason"]
    table = plan.table(train)
    pasted = table[table["augment_concept"].notna()]
    assert len(pasted) == 10 and (pasted["augment_concept"] == -1).all()
    assert pasted["reason"].str.contains("the unclustered flag of class 0").all()
    assert pasted["reason"].str.contains("own most salient box").all()


def test_plan_augment__an_unclustered_flag_beside_a_concept_flag_takes_other_recipients():
    _, train, carriers = _world()
    scores = pd.DataFrame([{"concept_id": 11, "detector": "transplant", "score": 0.9, "is_bias": True,
                            "reason": "moved", "box": [3, 3, 5, 5]}])
    plan = plan_augment(train, {11: "moved"}, scores, carriers, {10: 0, 11: 1, 12: 2}, (8, 8), 0, None,
                        "drop_carriers", 10.0, unclustered={0: "a shortcut among samples that form no concept"})
    assert len(set(plan.recipients)) == len(plan.recipients)  # no image augmented twice
    assert sorted(c["concept_id"] for c in plan.corrections) == [-1, 11]


def test_plan_augment__an_unclustered_flag_without_boxes_falls_back_for_its_own_class_only():
    _, train, carriers = _world()
    carriers[WINDOW_COLUMNS] = np.nan  # a run from before bias logic 18
    plan = _plan(train, carriers)
    assert len(plan.recipients) == 0
    assert set(np.flatnonzero(~plan.keep)) == set(range(5))  # class 0's carriers; class 1's two stay
    (row,) = plan.corrections
    assert row["correction"] == "drop_carriers" and "no box of their own" in row["reason"]
    none = _plan(train, carriers, fallback="none")
    assert none.keep.all() and none.corrections[0]["correction"] == "none"


def test_plan_augment__an_unclustered_flag_is_deterministic_by_seed():
    _, train, carriers = _world()
    a, b, c = _plan(train, carriers, seed=1), _plan(train, carriers, seed=1), _plan(train, carriers, seed=2)
    assert np.array_equal(a.recipients, b.recipients) and np.array_equal(a.donors, b.donors)
    assert not (np.array_equal(a.recipients, c.recipients) and np.array_equal(a.donors, c.donors))


def test_plan_augment__two_unclustered_flags_each_paste_their_own_carriers_and_fall_back_apart():
    _, train, carriers = _world()
    # class 1's two carriers (rows 18, 19) have boxes too; class 1 flagged as well
    both = {0: "a shortcut among samples that form no concept", 1: "another"}
    plan = plan_augment(train, {}, pd.DataFrame(columns=["concept_id", "detector", "score", "is_bias"]), carriers,
                        {10: 0, 11: 1, 12: 2}, (8, 8), 0, None, "drop_carriers", 10.0, unclustered=both)
    labels = train["label"].to_numpy()
    assert [(c["concept_id"], c["label"], c["correction"]) for c in plan.corrections] == [
        (-1, 0, "augment"), (-1, 1, "augment")]
    assert len(set(plan.recipients)) == len(plan.recipients)
    from_1 = labels[plan.donors] == 1
    assert set(plan.donors[from_1]) == {18, 19} and not (labels[plan.recipients[from_1]] == 1).any()
    assert not (labels[plan.recipients[~from_1]] == 0).any()
    # class 1's carriers without boxes: class 1 falls back alone, its reason naming the class's flag
    carriers.loc[carriers["label"] == 1, WINDOW_COLUMNS] = np.nan
    plan = plan_augment(train, {}, pd.DataFrame(columns=["concept_id", "detector", "score", "is_bias"]), carriers,
                        {10: 0, 11: 1, 12: 2}, (8, 8), 0, None, "reweight", 10.0, unclustered=both)
    rows = {c["label"]: c for c in plan.corrections}
    assert rows[0]["correction"] == "augment" and rows[1]["correction"] == "reweight"
    assert rows[1]["reason"].startswith("the unclustered flag of class 1 cannot be augmented")
    assert "nan" not in rows[1]["reason"] and "concept -1" not in rows[1]["reason"]


def test_augment_plan_hash__a_moved_box_retrains_though_recipients_and_donors_stay():
    """Where a paste goes is in no column of train_ids.parquet, only in the reasons, which the hash leaves out: the
    plan's geometry digest keeps a model pasted from other boxes from being reused."""
    from soxai.train.variants import CorrectionPlan, _paste_geometry

    images, train, carriers = _world()

    def digest(carriers):
        plan = _plan(train, carriers)
        return CorrectionPlan(plan.keep, np.arange(30), None, plan.table(train), {"corrections": plan.corrections},
                              geometry=_paste_geometry(plan)), plan

    first, a = digest(carriers)
    moved = carriers.copy()
    moved[WINDOW_COLUMNS] = moved[WINDOW_COLUMNS].to_numpy() + np.array([1, 1, 1, 1])  # every box one pixel down-right
    second, b = digest(moved)
    np.testing.assert_array_equal(a.recipients, b.recipients)
    np.testing.assert_array_equal(a.donors, b.donors)
    assert first.content_hash() != second.content_hash()
    assert digest(carriers)[0].content_hash() == first.content_hash()
