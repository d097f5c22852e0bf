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
