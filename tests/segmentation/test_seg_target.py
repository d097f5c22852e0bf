import numpy as np
import pytest
import torch
from torch import nn

from soxai.errors import ConfigError
from soxai.saliency.methods import compute_maps
from soxai.segmentation.target import SegmentationTarget, region_scores


class PixelLinear(nn.Module):
    """logits[c] = w_c * x per pixel (a 1x1 conv without bias): the region of class c is where w_c * x is largest."""

    def __init__(self, weights: list[float]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, len(weights), 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor(weights).view(-1, 1, 1, 1))

    def forward(self, x):
        return self.conv(x)


def test_region_scores__sum_of_class_logits_over_its_predicted_pixels():
    logits = torch.tensor([[[[2.0, 0.0]], [[1.0, 3.0]]]])  # (1, 2, 1, 2): pixel 0 is class 0, pixel 1 class 1
    assert region_scores(logits).tolist() == [[2.0, 3.0]]


def test_region_scores__class_predicted_nowhere__whole_image():
    logits = torch.tensor([[[[2.0, 5.0]], [[1.0, 3.0]]]])  # class 1 is argmax nowhere
    assert region_scores(logits).tolist() == [[7.0, 4.0]]


GRADIENT = {"method": "gradient", "reduce": "sum", "batch_size": 4, "ig_steps": 8, "device": torch.device("cpu")}


def test_segmentation_target__gradient_is_the_class_weight_on_its_region():
    # closed form: score_c = sum over {p: argmax = c} of w_c * x_p, so d score_c / d x_p = w_c on that region, 0 off it
    x = torch.tensor([[[[-1.0, 2.0], [0.5, -3.0]]]])
    model = SegmentationTarget(PixelLinear([-1.0, 2.0]))  # class 1 where x > 0, class 0 where x < 0
    grads = compute_maps(model, x.numpy(), np.array([1]), **GRADIENT)
    np.testing.assert_allclose(grads[0], [[0.0, 2.0], [2.0, 0.0]])
    grads0 = compute_maps(model, x.numpy(), np.array([0]), **GRADIENT)
    np.testing.assert_allclose(grads0[0], [[-1.0, 0.0], [0.0, -1.0]])


def test_segmentation_target__classifier_output__config_error():
    with pytest.raises(ConfigError, match=r"\(n, classes, H, W\)"):
        SegmentationTarget(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)))(torch.zeros(2, 1, 2, 2))
