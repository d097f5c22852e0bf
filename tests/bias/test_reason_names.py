"""Every detector's reasons name a class as `soxai concepts` does (bias logic 20): by the data's class names."""

import dataclasses
import re

import pytest

from soxai.bias.config import BiasConfig, ConcentrationConfig, TransplantConfig
from soxai.bias.detectors import BIAS_DETECTORS, run_detector
from soxai.bias.unclustered import check_unclustered
from soxai.testing.shortcut import shortcut_world

CFG = BiasConfig(transplant=TransplantConfig(region_frac=0.25), concentration=ConcentrationConfig(region_frac=0.25))
# a code where a name belongs: 'class 0', 'class-1 images'
CODE = re.compile(r"class[ -][01]\b")


@pytest.mark.parametrize("name", [d for d in BIAS_DETECTORS if d != "channel_patch"])  # that one needs a layer
def test_detector_reasons__say_the_class_name_and_flag_the_same_as_with_codes(name):
    coded = run_detector(name, shortcut_world(60, 12, 0)[0], CFG)
    named_ctx = dataclasses.replace(shortcut_world(60, 12, 0)[0], class_names=("marked", "plain"))
    named = run_detector(name, named_ctx, CFG)
    assert [r["is_bias"] for r in named] == [r["is_bias"] for r in coded]
    assert not [r["reason"] for r in named if CODE.search(r["reason"])]
    assert any("class marked" in r["reason"] or "class plain" in r["reason"] for r in named)


def test_detect_transplant__the_reason_reads_as_the_concepts_table():
    ctx = dataclasses.replace(shortcut_world(60, 12, 0)[0], class_names=("marked", "plain"))
    row = run_detector("transplant", ctx, CFG)[0]
    assert "to class marked (other images of class marked" in row["reason"]


def test_unclustered_reasons__say_the_class_name():
    ctx = dataclasses.replace(shortcut_world(60, 12, 0)[0], class_names=("marked", "plain"))
    ctx.train.loc[ctx.train.index[:20], "concept_id"] = -1  # some unclustered samples in class 0
    table, _ = check_unclustered(ctx, CFG)
    assert len(table) and all("class marked" in r for r in table["reason"]) and not table["reason"].str.contains(
        CODE).any()
