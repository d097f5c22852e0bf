import numpy as np
import pandas as pd

from soxai.bias.carriers import carrier_flip_rates, carrier_threshold, find_carriers
from soxai.bias.config import BiasConfig, CarriersConfig, TransplantConfig
from soxai.bias.decide import flagged_concepts
from soxai.bias.transplant import detect_transplant
from soxai.manifest.policies import PolicyContext, drop_carriers
from soxai.testing.shortcut import shortcut_world

CFG = BiasConfig(transplant=TransplantConfig(region_frac=0.25), carriers=CarriersConfig(n_recipients=16))


def _split_shortcut_world():
    """The shortcut world (soxai.testing.shortcut) where the clustering put 22 of the 30 marked samples in
    concept 0 and the rest beside the unmarked ones in concept 1 (recall 0.73 for drop_flagged), and one
    unmarked sample in concept 0 (precision below 1)."""
    return shortcut_world(60, 12, marked_in_concept=22, stray_member=True)


def test_carrier_flip_rates__region_moves_recipients_only_from_marked_donors():
    donors = np.zeros((3, 1, 4, 4), dtype=np.float32)
    donors[0, 0, :2, :2] = 1.0
    donors[2, 0, :2, :2] = 0.5
    recipients = np.zeros((5, 1, 4, 4), dtype=np.float32)

    def predict(x):
        return (x[:, 0, :2, :2].mean(axis=(1, 2)) > 0.9).astype(int)

    rates = carrier_flip_rates(predict, donors, np.arange(3), recipients, 1, (0, 0, 2, 2), max_bytes=64 * 3)
    assert rates.tolist() == [1.0, 0.0, 0.0]


def test_carrier_flip_rates__whole_image_statistics_carry_a_tint():
    rng = np.random.default_rng(1)
    recipients = rng.uniform(0, 0.3, (8, 1, 6, 6)).astype(np.float32)
    donors = rng.uniform(0, 0.3, (4, 1, 6, 6)).astype(np.float32)
    donors[:2] = 0.7 * donors[:2] + 0.3  # tinted

    def predict(x):
        return (x.mean(axis=(1, 2, 3)) > 0.3).astype(int)

    assert carrier_flip_rates(predict, donors, np.arange(4), recipients, 1, None).tolist() == [1.0, 1.0, 0.0, 0.0]


def test_carrier_flip_rates__with_recipient_labels_counts_moves_off_their_class():
    rng = np.random.default_rng(1)
    recipients = rng.uniform(0, 0.3, (8, 1, 6, 6)).astype(np.float32)
    labels = np.array([1, 2] * 4)
    donors = rng.uniform(0, 0.3, (3, 1, 6, 6)).astype(np.float32)
    donors[0] = 0.7 * donors[0] + 0.3  # tinted

    def predict(x):  # a bright image goes to class 3, never to the tint's class 0
        return np.where(x.mean(axis=(1, 2, 3)) > 0.3, 3, np.tile(labels, len(x) // len(labels)))

    assert carrier_flip_rates(predict, donors, np.arange(3), recipients, 0, None).tolist() == [0.0, 0.0, 0.0]
    moved = carrier_flip_rates(predict, donors, np.arange(3), recipients, 0, None, recipient_labels=labels)
    assert moved.tolist() == [1.0, 0.0, 0.0]


def test_carrier_flip_rates__pixel_mask_pastes_only_its_pixels():
    donors = np.zeros((2, 1, 4, 4), dtype=np.float32)
    donors[0, 0, [0, 1], [0, 1]] = 1.0  # the masked diagonal
    donors[1, 0, 0, 1] = 1.0  # inside the diagonal's bounding box, outside the mask
    recipients = np.zeros((3, 1, 4, 4), dtype=np.float32)

    def predict(x):
        return ((x[:, 0, 0, 1] > 0.5) | (x[:, 0, [0, 1], [0, 1]].min(axis=1) > 0.5)).astype(int)

    mask = np.zeros((4, 4), dtype=bool)
    mask[[0, 1], [0, 1]] = True
    assert carrier_flip_rates(predict, donors, np.arange(2), recipients, 1, mask).tolist() == [1.0, 0.0]
    assert carrier_flip_rates(predict, donors, np.arange(2), recipients, 1, (0, 0, 2, 2)).tolist() == [1.0, 1.0]


def test_carrier_threshold__midpoint_or_none_below_the_gap():
    assert carrier_threshold(np.array([0.9, 0.7]), np.array([0.0, 0.1, 0.0]), 0.15) == 0.4
    assert carrier_threshold(np.array([0.2]), np.array([0.1]), 0.15) is None
    assert carrier_threshold(np.array([]), np.array([0.1]), 0.15) is None


def test_find_carriers__finds_marked_samples_outside_the_flagged_concept():
    ctx, marked = _split_shortcut_world()
    scores = pd.DataFrame(detect_transplant(ctx, CFG))
    flagged = flagged_concepts(scores)
    assert flagged.keys() == {0}
    carriers = find_carriers(ctx, scores, flagged, CFG)
    ids = ctx.train["sample_id"].to_numpy()
    assert set(carriers["sample_id"]) == set(ids[ctx.train["label"] == 0])  # every class-0 sample tested
    found = set(carriers.loc[carriers["carries"], "sample_id"])
    assert found == set(ids[marked])
    assert carriers["test"].str.startswith("transplant region").all()


def test_find_carriers__override_only_flag__members_stand():
    ctx, _ = _split_shortcut_world()
    scores = pd.DataFrame([{"concept_id": 1, "detector": "override", "score": 1.0, "is_bias": True,
                            "reason": "dropped by a person"}])
    carriers = find_carriers(ctx, scores, {1: "person"}, CFG)
    assert (carriers["carries"] == carriers["member"]).all() and carriers["threshold"].isna().all()
    assert carriers["test"].str.startswith("members stand").all()


def test_find_carriers__nothing_flagged__empty_table_with_columns():
    ctx, _ = _split_shortcut_world()
    carriers = find_carriers(ctx, pd.DataFrame(detect_transplant(ctx, CFG)), {}, CFG)
    assert carriers.empty and {"sample_id", "carries", "flip_rate"} <= set(carriers.columns)


def test_drop_carriers__drops_carriers_anywhere_and_keeps_members_that_are_not():
    ctx, marked = _split_shortcut_world()
    scores = pd.DataFrame(detect_transplant(ctx, CFG))
    flagged = flagged_concepts(scores)
    carriers = find_carriers(ctx, scores, flagged, CFG)
    pctx = PolicyContext(boxes={}, sample_maps=ctx.sample_maps, region_threshold=0.5, carriers=carriers)
    keep, reasons = drop_carriers(ctx.train, flagged, pctx)
    assert (~keep == marked).all()  # precision and recall 1, where drop_flagged had 22 of 30 and one clean
    outside = int(np.flatnonzero(marked & (ctx.train["concept_id"] != 0).to_numpy())[0])
    assert "carries the shortcut of flagged concept 0" in reasons[outside] and "elsewhere" in reasons[outside]
    named = PolicyContext(boxes={}, sample_maps=ctx.sample_maps, region_threshold=0.5, carriers=carriers,
                          class_names=("marked", "plain"))
    donor = [r for r in drop_carriers(ctx.train, flagged, named)[1] if "as a donor" in r]
    assert donor and all("recipients to class marked (" in r for r in donor)
    # without a carrier test (an older run), the members of flagged concepts are dropped
    plain = PolicyContext(boxes={}, sample_maps=ctx.sample_maps, region_threshold=0.5, carriers=None)
    assert (~drop_carriers(ctx.train, flagged, plain)[0] == (ctx.train["concept_id"] == 0).to_numpy()).all()


def test_find_carriers__only_samples_in_doubt_are_tested_on_every_recipient():
    ctx, marked = _split_shortcut_world()
    scores = pd.DataFrame(detect_transplant(ctx, CFG))
    clear = find_carriers(ctx, scores, flagged_concepts(scores), CFG)
    assert (clear["n_recipients"] == 8).all()  # the rule reads the mark exactly: 8 recipients decide
    # a 'model' that reads the mark only now and then leaves single samples in doubt after 8 recipients
    calls = {"n": 0}
    rule = ctx.predict

    def flaky(x):
        calls["n"] += 1
        pred = rule(x)
        coin = np.random.default_rng(calls["n"]).random(len(x)) < 0.5
        return np.where(coin, pred, 1)

    ctx.predict = flaky
    doubtful = find_carriers(ctx, scores, {0: "why"}, CFG)
    assert set(doubtful["n_recipients"]) <= {8, 16} and (doubtful["n_recipients"] == 16).any()
    assert (doubtful["n_recipients"] == 8).any()  # the clear ones stop after the first 8
    tested = doubtful[doubtful["n_recipients"] == 16]
    assert tested["flip_rate"].between(0, 1).all()


def test_wilson_interval__contains_the_rate_and_narrows_with_n():
    from soxai.bias.carriers import wilson_interval

    lo8, hi8 = wilson_interval(np.array([0.0, 0.5, 1.0]), 8)
    lo32, hi32 = wilson_interval(np.array([0.0, 0.5, 1.0]), 32)
    assert (lo8 <= [0.0, 0.5, 1.0]).all() and (hi8 >= [0.0, 0.5, 1.0]).all()
    assert ((hi32 - lo32) < (hi8 - lo8)).all()
    assert abs(hi8[0] - 0.3244) < 1e-3  # 0 of 8: the 95% Wilson upper bound


def test_find_carriers__a_mark_that_moves_half_the_recipients_is_decided_before_all_are_used():
    ctx, marked = _split_shortcut_world()
    rule = ctx.predict

    def half(x):  # the mark moves only recipients whose bottom-right pixel is bright (about half of them)
        corner = x[:, 0, :3, 8:11].mean(axis=(1, 2)) > 0.9
        return np.where(corner & (x[:, 0, -1, -1] < 0.1), rule(x), np.where(corner, 1, rule(x)))

    ctx.predict = half
    ctx.train["pred"] = half(ctx.images)
    scores = pd.DataFrame([{"concept_id": 0, "detector": "transplant", "score": 0.5, "is_bias": True,
                            "reason": "r", "box": [0, 8, 3, 11]}])
    cfg = BiasConfig(carriers=CarriersConfig(n_recipients=64))
    carriers = find_carriers(ctx, scores, {0: "why"}, cfg)
    assert carriers["n_recipients"].max() < 64 and carriers["n_recipients"].max() > 8
    assert set(carriers.loc[carriers["carries"], "sample_id"]) == set(ctx.train["sample_id"][marked])


def testsequential_rates__members_stand_when_their_gap_was_luck_of_the_first_recipients():
    """A weak mark moves only two particular recipients of 32, both among the first 8: the members' first-stage
    rate (25%) clears the gap, but over all 32 (6%) it does not, so no threshold is returned (the members stand)
    instead of one no sample reaches. A strong mark keeps its threshold and its carriers."""
    from soxai.bias.carriers import sequential_rates

    donors = np.zeros((6, 1, 4, 4), dtype=np.float32)
    donors[:3, 0, :2, :2] = 1.0  # members carry the mark
    member = np.array([True] * 3 + [False] * 3)
    recipients = np.zeros((32, 1, 4, 4), dtype=np.float32)
    recipients[:2, 0, 3, 3] = 1.0  # the two recipients the weak mark can move

    def weak(x):
        return ((x[:, 0, :2, :2].mean(axis=(1, 2)) > 0.9) & (x[:, 0, 3, 3] > 0.5)).astype(int)

    rates, n, t, _ = sequential_rates(weak, donors, np.arange(6), recipients, 1, (0, 0, 2, 2), member, 0.15)
    assert t is None and n[:3].tolist() == [32, 32, 32] and np.allclose(rates[:3], 2 / 32)

    def strong(x):
        return (x[:, 0, :2, :2].mean(axis=(1, 2)) > 0.9).astype(int)

    rates, n, t, _ = sequential_rates(strong, donors, np.arange(6), recipients, 1, (0, 0, 2, 2), member, 0.15)
    assert t == 0.5 and (rates >= t).tolist() == member.tolist() and n.tolist() == [8] * 6


def test_sequential_rates__a_split_of_the_rates_is_drawn_again_on_the_final_rates():
    """The unclustered test's Otsu split: on the first 8 recipients 20 clean samples that move two particular
    recipients (2/8) fall on the carriers' side, with 4 carriers at 4/8; over all 32 those 20 move 2/32. The split
    drawn again on the final rates keeps the 4 carriers (before: the first split's mean fell below the gap, and
    no carrier was found)."""
    from soxai.bias.carriers import sequential_rates
    from soxai.bias.unclustered import otsu_cut

    donors = np.zeros((34, 1, 4, 4), dtype=np.float32)
    donors[:4, 0, :2, :2] = 1.0  # the carriers' mark
    donors[4:24, 0, 2, 2] = 1.0  # a clean feature that moves only the first two recipients
    recipients = np.zeros((32, 1, 4, 4), dtype=np.float32)
    recipients[:2, 0, 3, 3] = 1.0
    recipients[::2, 0, 3, 0] = 1.0  # the mark moves every other recipient

    def predict(x):
        mark = x[:, 0, :2, :2].mean(axis=(1, 2)) > 0.9
        return ((mark & (x[:, 0, 3, 0] > 0.5)) | ((x[:, 0, 2, 2] > 0.5) & (x[:, 0, 3, 3] > 0.5))).astype(int)

    def split(rates):
        return rates > otsu_cut(rates)

    rates, n, t, upper = sequential_rates(predict, donors, np.arange(34), recipients, 1, (0, 0, 3, 3), split, 0.15)
    assert t is not None and (rates >= t).tolist() == [True] * 4 + [False] * 30
    assert upper.tolist() == [True] * 4 + [False] * 30
    assert np.allclose(rates[:4], 0.5) and np.allclose(rates[4:24], 2 / 32) and n[4:24].tolist() == [32] * 20
