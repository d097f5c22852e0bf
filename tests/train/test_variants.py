"""The registry of retrain variants: one plan function per name the config accepts."""

from typing import get_args

import pytest

from soxai.errors import StageError
from soxai.train.config import Variant
from soxai.train.variants import VARIANTS, plan_variant


def test_variants__keys_equal_the_config_literal() -> None:
    assert list(VARIANTS) == list(get_args(Variant))


def test_plan_variant__unknown_name_lists_the_choices() -> None:
    with pytest.raises(StageError, match="choose baseline, pruned, random_control"):
        plan_variant("nope", None, 0)  # type: ignore[arg-type]


def test_correction_plan_hash__holds_weights_and_pastes_not_the_wording_of_reasons():
    import numpy as np
    import pandas as pd

    from soxai.train.variants import CorrectionPlan

    def plan(reason: str, weight: float = 2.0, donor: str = "a") -> CorrectionPlan:
        table = pd.DataFrame({"sample_id": ["a", "b"], "weight": [weight, 1.0], "donor_id": [donor, ""],
                              "reason": [reason, ""]})
        record = {"corrections": [{"concept_id": 3, "label": 0, "n_samples": 1, "reason": reason}], "n": 1}
        return CorrectionPlan(np.ones(2, dtype=bool), np.arange(2), None, table, record)

    same = plan("concept 3 (class 0): pasted").content_hash()
    assert plan("concept 3 (class round): pasted").content_hash() == same  # words only: no retraining
    assert plan("concept 3 (class 0): pasted", weight=3.0).content_hash() != same
    assert plan("concept 3 (class 0): pasted", donor="b").content_hash() != same
