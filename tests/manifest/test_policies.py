import numpy as np
import pandas as pd

from soxai.manifest.policies import drop_flagged, random_control


def test_drop_flagged__drops_members_with_reason():
    train = pd.DataFrame({"concept_id": [0, 1, -1, 1]})
    keep, reasons = drop_flagged(train, {1: "why"})
    assert keep.tolist() == [True, False, True, False]
    assert reasons[1] == "member of flagged concept 1" and reasons[0] == ""


def test_random_control__same_count_per_class_and_seeded():
    labels = np.array([0] * 10 + [1] * 10)
    keep = np.ones(20, dtype=bool)
    keep[:4] = False
    keep[10:11] = False
    a, b = random_control(labels, keep, 3), random_control(labels, keep, 3)
    assert (a == b).all()
    assert (~a[:10]).sum() == 4 and (~a[10:]).sum() == 1
    assert not (a == random_control(labels, keep, 4)).all()


def test_drop_flagged_region__drops_only_members_with_mass_on_the_region():
    from soxai.manifest.policies import PolicyContext, drop_flagged_region

    train = pd.DataFrame({"concept_id": [1, 1, 1, 0, -1]})
    maps = np.full((5, 8, 8), 0.01, dtype=np.float32)
    maps[0, :2, :2] = 5.0  # most of its relevance on the flagged region
    maps[1, 6:, 6:] = 5.0  # a member that looks elsewhere
    maps[3, :2, :2] = 5.0  # looks there too, but its concept is not flagged
    ctx = PolicyContext(boxes={1: (0, 0, 2, 2)}, sample_maps=lambda pos: maps[pos], region_threshold=0.5)
    keep, reasons = drop_flagged_region(train, {1: "why"}, ctx)
    assert keep.tolist() == [False, True, True, True, True]
    assert reasons[0].startswith("member of flagged concept 1 with") and "rows 0-1, cols 0-1" in reasons[0]
    looser = PolicyContext(boxes=ctx.boxes, sample_maps=ctx.sample_maps, region_threshold=0.0)
    assert drop_flagged_region(train, {1: "why"}, looser)[0].tolist() == [False, False, False, True, True]


def test_drop_flagged_region__concept_without_region__drops_all_members():
    from soxai.manifest.policies import PolicyContext, drop_flagged_region

    train = pd.DataFrame({"concept_id": [2, 2, 0]})
    ctx = PolicyContext(boxes={}, sample_maps=lambda pos: np.ones((len(pos), 4, 4)), region_threshold=0.5)
    keep, reasons = drop_flagged_region(train, {2: "tint"}, ctx)
    assert keep.tolist() == [False, False, True] and "whole image" in reasons[0]


def test_keep_majority_classes__undoes_a_class_pruned_past_the_share_whose_rest_the_baseline_gets_wrong():
    import numpy as np

    from soxai.manifest.policies import keep_majority_classes

    labels = np.array([0] * 10 + [1] * 10 + [2] * 10)
    keep = np.ones(30, dtype=bool)
    keep[:6] = False    # 6 of class 0's 10: more than half; the baseline wrong on 3 of the 4 left
    keep[10:15] = False  # 5 of class 1's 10: exactly half, allowed
    keep[20:28] = False  # 8 of class 2's 10, but the baseline right on the 2 left: the prune goes ahead
    wrong = np.zeros(30, dtype=bool)
    wrong[6:9] = True
    reasons = ["dropped" if not k else "" for k in keep]
    new_keep, new_reasons, whole = keep_majority_classes(labels, keep, reasons, {3: "why"}, 0.5, wrong)
    assert new_keep[:10].all() and not new_keep[10:15].any() and new_keep[15:20].all()
    assert not new_keep[20:28].any() and new_keep[28:].all()
    assert whole == {"0": {"would_drop": 6, "of": 10, "rest_wrong": 0.75}}
    assert all("max_class_drop=0.5" in r and "[3]" in r and "75%" in r for r in new_reasons[:6])
    assert new_reasons[10:15] == ["dropped"] * 5 and new_reasons[20:28] == ["dropped"] * 8
    assert not keep[:6].any()  # the input is not modified
    _, _, none_whole = keep_majority_classes(labels, keep, reasons, {3: "why"}, 1.0, wrong)
    assert none_whole == {}
    # the reason names the class as the concepts table does (manifest logic 4)
    assert "of the 10 training samples of class 0 (" in new_reasons[0]
    _, named, _ = keep_majority_classes(labels, keep, reasons, {3: "why"}, 0.5, wrong, ("round", "lobed", "long"))
    assert "of the 10 training samples of class round (" in named[0]
