"""model.factory: the user's own architecture, and the errors that name the fix."""

import textwrap

import pytest
import torch

from soxai.config import load_config
from soxai.errors import ConfigError
from soxai.models.config import ModelConfig
from soxai.models.registry import build_model

USER_MODULE = textwrap.dedent("""
    from torch import nn

    def build(num_classes, in_channels, width=8):
        return nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))

    def classes_only(num_classes):
        return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))

    def returns_dict(num_classes, in_channels):
        return build(num_classes, in_channels).state_dict()

    def wrong_outputs(num_classes, in_channels):
        return build(num_classes + 1, in_channels)

    def crashes(num_classes, in_channels):
        return nn.Linear(3, num_classes)

    def forwards(*, weights=None, **kwargs):  # like torchvision's resnet18(*, weights=None, progress=True, **kwargs)
        return Plain(**kwargs)

    class Plain(nn.Sequential):
        def __init__(self, num_classes):
            super().__init__(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))

    NOT_CALLABLE = 3
""")


@pytest.fixture
def usermod(tmp_path, monkeypatch):
    (tmp_path / "soxai_test_usermod.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "soxai_test_usermod"


def test_factory__builds_with_kwargs_and_data_shapes(usermod):
    cfg = ModelConfig(factory=f"{usermod}:build", kwargs={"width": 5})
    model = build_model(cfg, in_channels=3, n_classes=4, image_size=12, seed=0)
    assert model[0].out_channels == 5 and model[0].in_channels == 3
    assert model(torch.rand(2, 3, 12, 12)).shape == (2, 4)
    again = build_model(cfg, in_channels=3, n_classes=4, image_size=12, seed=0)
    assert torch.equal(model[0].weight, again[0].weight)  # seeded before the call


def test_factory__only_accepted_arguments_are_passed(usermod):
    model = build_model(ModelConfig(factory=f"{usermod}:classes_only"), 1, 3, 8, seed=0)
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 3)
    # **kwargs gets num_classes but not in_channels (it may forward to a class that does not take it)
    model = build_model(ModelConfig(factory=f"{usermod}:forwards", kwargs={"weights": None}), 3, 5, 8, seed=0)
    assert model(torch.rand(2, 3, 8, 8)).shape == (2, 5)


@pytest.mark.parametrize(("spec", "kwargs", "match"), [
    ("soxai_no_such_module_xyz:build", {}, "cannot import module 'soxai_no_such_module_xyz'.*PYTHONPATH"),
    ("{m}:buidl", {}, "has no attribute 'buidl'. Did you mean 'build'"),
    ("{m}:NOT_CALLABLE", {}, "not a function or class"),
    ("{m}:build", {"depth": 3}, "failed on its arguments.*fix model.kwargs"),
    ("{m}:build", {"num_classes": 3}, "remove them from model.kwargs"),
    ("{m}:returns_dict", {}, "returned a OrderedDict, not a torch.nn.Module"),
    ("{m}:wrong_outputs", {}, r"logits of shape \(n, 3\).*returned \(2, 4\)"),
    ("{m}:crashes", {}, r"fails on a batch of shape \(2, 1, 8, 8\)"),
    ("{m}:forwards", {"weights": "DEFAULT"}, "never downloads weights.*model.checkpoint"),
])
def test_factory__bad_factory_names_the_fix(usermod, spec, kwargs, match):
    cfg = ModelConfig(factory=spec.format(m=usermod), kwargs=kwargs)
    with pytest.raises(ConfigError, match=match):
        build_model(cfg, in_channels=1, n_classes=3, image_size=8, seed=0)


def test_factory__malformed_spec_is_a_config_error():
    with pytest.raises(ConfigError, match=r"model.factory must look like 'package.module:function'"):
        load_config(None, ["model.factory=mymodels.build"])


def test_readme__bring_your_own_config_is_valid(tmp_path):
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### Your own model and image folder", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    assert len(block.strip().splitlines()) == 3
    (tmp_path / "audit.yaml").write_text(block)
    cfg = load_config(tmp_path / "audit.yaml")
    assert cfg.data.source == "image_folder" and cfg.data.crop == 224 and cfg.model.factory == "mymodels:build"
    assert cfg.model.checkpoint == "my_model.pt" and cfg.train.patience == 5


def test_factory__module_in_the_working_directory_imports(tmp_path, monkeypatch):
    import sys

    (tmp_path / "soxai_test_cwdmod.py").write_text(USER_MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    model = build_model(ModelConfig(factory="soxai_test_cwdmod:build"), 1, 2, 8, seed=0)
    assert model(torch.rand(1, 1, 8, 8)).shape == (1, 2)
    assert str(tmp_path) not in sys.path
