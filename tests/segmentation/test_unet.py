import pytest
import torch

from soxai.errors import ConfigError
from soxai.models.unet import UNet


def test_unet__logits_per_class_and_pixel():
    model = UNet(1, 4, (8, 16, 32))
    assert model(torch.zeros(3, 1, 32, 32)).shape == (3, 4, 32, 32)
    assert UNet(3, 2, (4, 8))(torch.zeros(1, 3, 16, 24)).shape == (1, 2, 16, 24)


def test_unet__default_size__a_few_hundred_thousand_parameters_at_most():
    n = sum(p.numel() for p in UNet(1, 4, (16, 32, 64, 64)).parameters())
    assert 100_000 < n < 500_000


def test_unet__side_not_divisible__config_error_names_the_fix():
    with pytest.raises(ConfigError, match="divisible by 4"):
        UNet(1, 3, (8, 16, 32))(torch.zeros(1, 1, 30, 30))


def test_unet__one_level__config_error():
    with pytest.raises(ConfigError, match="at least two levels"):
        UNet(1, 3, (8,))
