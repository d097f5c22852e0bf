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


def _layer_output(model, module, x):
    import torch

    out = []
    handle = module.register_forward_hook(lambda _m, _i, o: out.append(o.detach()))
    try:
        with torch.no_grad():
            model(torch.from_numpy(x))
    finally:
        handle.remove()
    return out[-1].numpy()


def test_receptive_field__a_cell_sees_its_window_and_nothing_else():
    """The defining property: a cell's activations are the same in any image holding the same pixels in its
    window, and the window is no larger than needed (a row less changes them)."""
    import numpy as np

    from soxai.models.layers import ReceptiveField

    model = build_model(Config().model, in_channels=1, n_classes=3, image_size=28, seed=0).eval()
    field = ReceptiveField(model, None, (1, 28, 28))
    assert field.map_shape == (14, 14)
    # two 3x3 convs with a 2x2 max-pool between: 8x8 px, stride 2; clipped at the border
    assert field.window(7, 3) == (11, 3, 19, 11) and field.window(0, 0) == (0, 0, 5, 5)
    assert field.window(13, 13) == (23, 23, 28, 28)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 1, 1, 28, 28)).astype(np.float32)
    module = resolve_layer(model, None)
    y0, x0, y1, x1 = field.window(7, 3)
    mixed = b.copy()
    mixed[..., y0:y1, x0:x1] = a[..., y0:y1, x0:x1]
    np.testing.assert_allclose(_layer_output(model, module, mixed)[0, :, 7, 3],
                               _layer_output(model, module, a)[0, :, 7, 3], rtol=0, atol=1e-6)
    short = b.copy()
    short[..., y0:y1 - 1, x0:x1] = a[..., y0:y1 - 1, x0:x1]
    assert not np.allclose(_layer_output(model, module, short)[0, :, 7, 3],
                           _layer_output(model, module, a)[0, :, 7, 3], atol=1e-6)


def test_receptive_field__leaves_the_model_as_it_was_and_knows_a_layer_without_a_map():
    import torch

    from soxai.bias.layer import LayerAccess
    from soxai.models.layers import ReceptiveField

    for train in (True, False):
        model = build_model(Config().model, in_channels=1, n_classes=3, image_size=28, seed=0).train(train)
        state = torch.get_rng_state()
        assert ReceptiveField(model, None, (1, 28, 28)).window(3, 3) is not None
        assert model.training is train
        assert all(p.grad is None for p in model.parameters())  # nothing left in the parameters' gradients
        assert torch.equal(torch.get_rng_state(), state)  # its own generator: the run's random draws unchanged
    dense = nn.Sequential(nn.Flatten(), nn.Linear(16, 4), nn.ReLU(), nn.Linear(4, 2))
    assert ReceptiveField(dense, "1", (1, 4, 4)).map_shape is None
    assert not ReceptiveField(dense, "1", (1, 4, 4)).local
    assert LayerAccess(dense, "1").receptive_field((1, 4, 4)) is None


def test_receptive_field__the_same_windows_whatever_was_asked_first():
    from soxai.models.layers import ReceptiveField

    model = build_model(Config().model, in_channels=1, n_classes=3, image_size=28, seed=0)
    first = ReceptiveField(model, None, (1, 28, 28))
    cells = [(7, 3), (0, 13), (13, 0)]
    got = [first.window(*c) for c in cells]
    second = ReceptiveField(model, None, (1, 28, 28))
    assert [second.window(*c) for c in reversed(cells)][::-1] == got


def test_receptive_field__a_deep_layers_cells_are_not_a_marks_place():
    """The built-in ResNet's last conv on 32 px images sees 25x25 px from the map's centre: not local, though a
    corner cell's window, cut by the border, is under a quarter of the image."""
    from soxai.models.layers import ReceptiveField

    model = build_model(Config(model={"name": "resnet"}).model, in_channels=3, n_classes=3, image_size=32, seed=0)
    field = ReceptiveField(model, None, (3, 32, 32))
    y0, x0, y1, x1 = field.window(field.map_shape[0] // 2, field.map_shape[1] // 2)
    assert (y1 - y0, x1 - x0) == (25, 25) and not field.local
    a, b, c, d = field.window(0, 0)
    assert (c - a) * (d - b) <= 32 * 32 / 4
    small = ReceptiveField(build_model(Config().model, in_channels=1, n_classes=3, image_size=28, seed=0), None,
                           (1, 28, 28))
    assert small.local
