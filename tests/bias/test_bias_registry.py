"""The detector registry keeps its contract: every entry's rows, its config section, and the bias/ import layers."""

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

import soxai.bias
from soxai.bias.config import BiasConfig, DetectorSection, TransplantConfig
from soxai.bias.context import SCORE_COLUMNS, score_row
from soxai.bias.detectors import BIAS_DETECTORS, CLEAN_CONTROL_DETECTORS, WHOLE_IMAGE_DETECTORS, Detector, run_detector
from soxai.bias.layer import LayerAccess
from soxai.testing.shortcut import shortcut_world

CFG = BiasConfig(transplant=TransplantConfig(region_frac=0.25))
# what a flagged row carries, by the entry's region (soxai.bias.detectors)
REGION_COLUMNS = {"box": {"box"}, "pixels": {"pixels", "box"}, "channels": {"n_channels"}, "own_box": set(),
                  "whole_image": set()}


def _world():
    """shortcut_world with a small seeded conv model for the detectors that read the model's layer."""
    ctx, _ = shortcut_world()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveMaxPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(4, 2)).eval()
    return dataclasses.replace(ctx, layer=LayerAccess(model, "0"))


def test_registry__names_are_the_config_detector_sections():
    assert set(BIAS_DETECTORS) == set(BiasConfig.detector_names())
    assert all(isinstance(getattr(CFG, name), DetectorSection) for name in BIAS_DETECTORS)
    assert "carriers" not in BiasConfig.detector_names()


@pytest.mark.parametrize("name", sorted(BIAS_DETECTORS))
def test_registry__every_detector_keeps_the_row_contract(name):
    ctx = _world()
    rows = run_detector(name, ctx, CFG)
    concepts = ctx.concepts.loc[~ctx.concepts["is_noise"], "concept_id"].astype(int).tolist()
    assert [int(r["concept_id"]) for r in rows] == concepts
    for r in rows:
        assert tuple(r)[:len(SCORE_COLUMNS)] == SCORE_COLUMNS and r["detector"] == name
        assert isinstance(r["score"], float) and isinstance(r["is_bias"], bool) and r["reason"]
        if r["is_bias"]:
            assert REGION_COLUMNS[BIAS_DETECTORS[name].region] <= set(r), r
    assert run_detector(name, _world(), CFG) == rows  # same seed, same rows


@pytest.mark.parametrize("name", CLEAN_CONTROL_DETECTORS)
def test_registry__clean_control_detectors_take_only_and_left_out(name):
    section = getattr(CFG, name)
    assert hasattr(section, "clean_control") and hasattr(section, "max_p_value")
    # concept 0 is concept 1's whole control here, so it stays in (soxai.bias.context.MIN_CONTROL)
    rows = run_detector(name, _world(), CFG, left_out=frozenset({0}), only={1}, suspected=frozenset())
    assert [r["concept_id"] for r in rows] == [1] and rows[0]["control_left_out"] == []


def test_registry__derived_lists_follow_the_entries():
    assert CLEAN_CONTROL_DETECTORS[:2] == ("transplant", "pixel_transplant")  # in registry order
    assert "statistics_transplant" in WHOLE_IMAGE_DETECTORS and "transplant" not in WHOLE_IMAGE_DETECTORS


def test_run_detector__a_row_off_the_contract_raises_naming_score_row(monkeypatch):
    def bad(ctx, cfg):
        return [{"concept_id": 0, "score": 1.0, "is_bias": True, "reason": "no detector column"}]

    def misnamed(ctx, cfg):
        return [score_row("transplant", 0, 1.0, True, "under another detector's name")]

    monkeypatch.setitem(BIAS_DETECTORS, "transplant", Detector(bad, region="box"))
    with pytest.raises(TypeError, match="score_row"):
        run_detector("transplant", _world(), CFG)
    monkeypatch.setitem(BIAS_DETECTORS, "concentration", Detector(misnamed, region="box"))
    with pytest.raises(TypeError, match="detector='concentration'"):
        run_detector("concentration", _world(), CFG)


def test_bias_config__unknown_detector__names_the_choices():
    with pytest.raises(ValueError, match=r"unknown detector\(s\) \['nope'\]; choose from \[.*'transplant'"):
        BiasConfig(detectors=("transplant", "nope"))


def _bias_imports() -> dict[str, list[tuple[str, str]]]:
    """{module: [(imported bias module, name)]} for every import statement in soxai/bias, at any depth."""
    out: dict[str, list[tuple[str, str]]] = {}
    for path in Path(soxai.bias.__file__).parent.glob("*.py"):
        found = out.setdefault(path.stem, [])
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("soxai.bias."):
                found += [(node.module.split(".")[2], a.name) for a in node.names]
            elif isinstance(node, ast.Import):
                found += [(a.name.split(".")[2], "") for a in node.names if a.name.startswith("soxai.bias.")]
    return out


def test_bias_modules__no_import_cycle_and_no_private_name_across_files():
    imports = _bias_imports()
    assert not [(m, t, n) for m, found in imports.items() for t, n in found if n.startswith("_") and t != m]
    graph = {m: {t for t, _ in found if t != m} for m, found in imports.items()}

    def on_a_cycle(start: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            for t in graph[todo.pop()] - seen:
                if t == start:
                    return True
                seen.add(t)
                todo.append(t)
        return False

    assert [m for m in graph if on_a_cycle(m)] == []
    # detectors import the base, never the registry or what sits above it (the stage's steps)
    above = {"detectors", "rounds", "carriers", "unclustered", "runner"}  # steps of the stage, not detectors
    plugins = {m for m, found in imports.items() if any(t == "context" for t, _ in found)} - above
    assert {"transplant", "location", "disparity", "pixels", "channels"} <= plugins
    assert not [(m, t) for m in plugins for t in graph[m] if t in above]


def test_bias_modules__at_most_500_lines():
    lengths = {p.name: len(p.read_text().splitlines()) for p in Path(soxai.bias.__file__).parent.glob("*.py")}
    assert max(lengths.values()) <= 500, lengths


def test_context__score_row_puts_the_contract_first():
    row = score_row("x", 3, np.float64(0.5), np.bool_(True), "why", p_value=0.01, box=[0, 0, 1, 1])
    assert list(row) == [*SCORE_COLUMNS, "p_value", "box"]
    assert type(row["score"]) is float and row["is_bias"] is True
