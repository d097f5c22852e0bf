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
