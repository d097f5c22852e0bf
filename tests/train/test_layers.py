"""Choosing the explained layer by name."""

import pytest
from torch import nn

from soxai.config import Config
from soxai.errors import ConfigError
from soxai.models.layers import feature_map_layers, resolve_layer
from soxai.models.registry import build_model


def _model():
    return build_model(Config().model, in_channels=1, n_classes=3, image_size=32, seed=0)


def test_default_is_last_conv():
    model = _model()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert resolve_layer(model, None) is convs[-1]


def test_named_layer_is_returned():
    model = _model()
    name = feature_map_layers(model)[0]
    assert resolve_layer(model, name) is dict(model.named_modules())[name]


def test_wrong_name_lists_candidates_and_closest():
    model = _model()
    first = feature_map_layers(model)[0]
    with pytest.raises(ConfigError) as err:
        resolve_layer(model, first + "x")
    message = str(err.value)
    assert "no layer of that name" in message and f"Did you mean {first!r}" in message
    for name in feature_map_layers(model):
        assert name in message


def test_model_without_conv_needs_a_name():
    with pytest.raises(ConfigError, match="has no Conv2d"):
        resolve_layer(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), None)


def test_layer_does_not_change_the_training_hash():
    base = Config()
    other = Config.model_validate({**base.model_dump(), "model": {**base.model.model_dump(), "layer": "x"}})
    assert base.section_hash("model", "train") == other.section_hash("model", "train")
