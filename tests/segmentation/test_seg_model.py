import textwrap

import pytest

from soxai.config import Config
from soxai.errors import ConfigError
from soxai.models.config import ModelConfig
from soxai.segmentation.model import build_segmenter

FACTORIES = textwrap.dedent('''
    import torch
    from torch import nn


    def per_pixel(num_classes, in_channels):
        return nn.Conv2d(in_channels, num_classes, 3, padding=1)


    def per_image(num_classes, in_channels):
        return nn.Sequential(nn.Conv2d(in_channels, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(4, num_classes))


    def half_size(num_classes, in_channels):
        return nn.Conv2d(in_channels, num_classes, 2, stride=2)
''')


@pytest.fixture
def factories(tmp_path, monkeypatch):
    (tmp_path / "seg_factories_mod.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "seg_factories_mod"


def _cfg(**model) -> Config:
    task = "classification" if model.get("name") == "small_cnn" else "segmentation"
    return Config(task=task, model=ModelConfig(**model), embed={"features": "pooled"})


def test_build_segmenter__built_in_unet__logits_per_pixel():
    import torch

    model = build_segmenter(_cfg(name="unet", channels=(4, 8)), 1, 3, 16, seed=0)
    assert model(torch.zeros(1, 1, 16, 16)).shape == (1, 3, 16, 16)


def test_build_segmenter__same_seed__same_weights():
    a = build_segmenter(_cfg(name="unet", channels=(4, 8)), 1, 3, 16, seed=3)
    b = build_segmenter(_cfg(name="unet", channels=(4, 8)), 1, 3, 16, seed=3)
    assert all((p == q).all() for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_build_segmenter__user_factory_per_pixel__accepted(factories):
    build_segmenter(_cfg(factory=f"{factories}:per_pixel"), 1, 3, 16, seed=0)


def test_build_segmenter__factory_returning_n_classes__error_names_the_shape(factories):
    with pytest.raises(ConfigError, match=r"\(2, 3, 16, 16\).*returned \(2, 3\).*classifier's output"):
        build_segmenter(_cfg(factory=f"{factories}:per_image"), 1, 3, 16, seed=0)


def test_build_segmenter__factory_at_another_size__error(factories):
    with pytest.raises(ConfigError, match=r"returned \(2, 3, 8, 8\)"):
        build_segmenter(_cfg(factory=f"{factories}:half_size"), 1, 3, 16, seed=0)


def test_build_segmenter__classifier_name__error_names_unet():
    with pytest.raises(ConfigError, match="model.name: unet"):
        build_segmenter(_cfg(name="small_cnn"), 1, 3, 16, seed=0)


def test_check_segmentation_setup__checkpoint_of_another_network__refused(tmp_path):
    import torch

    from soxai.models.unet import UNet
    from soxai.segmentation.model import check_segmentation_setup

    torch.save(UNet(1, 3, (4, 8)).state_dict(), tmp_path / "w.pt")
    model = ModelConfig(name="unet", channels=(4, 8), checkpoint=str(tmp_path / "w.pt"))
    data = {"n_classes": 2, "image_size": 16}
    fits = Config(task="segmentation", model=model, embed={"features": "pooled"}, data=data)
    check_segmentation_setup(fits)
    other = fits.model_copy(update={"model": fits.model.model_copy(update={"channels": (4, 8, 16)})})
    with pytest.raises(ConfigError, match="does not match the model architecture"):
        check_segmentation_setup(other)
