"""Channel relevance (activation x gradient per channel of model.layer) against closed forms."""

import numpy as np
import pytest
import torch

from soxai.embed.relevance import channel_relevance
from soxai.testing.toy import ConvPoolToy


def _images(n: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 2, 6, 5)).astype(np.float32)


def test_channel_relevance__conv_pool_toy_equals_class_weight_times_mean_activation() -> None:
    # logit_k = sum_j V[k, j] * mean_p A_j[p] + b_k, so d logit / d A_j[p] = V[k, j] / (h w) and the
    # channel's relevance is V[k, j] * mean_p A_j: its share of the logit (all but the bias).
    model = ConvPoolToy(in_channels=2, n_classes=3, hidden=4)
    images = _images()
    targets = np.array([0, 1, 2, 0, 1, 2])
    rows = np.array([5, 0, 3, 1, 4, 2])

    rel = channel_relevance(model, "conv", images, rows, targets[rows], batch_size=4)

    with torch.no_grad():
        x = torch.from_numpy(images[rows])
        mean_act = model.conv(x).double().mean(dim=(2, 3)).numpy()  # (n, 4)
        logits = model(x).double().numpy()
    weight = model.head.weight.detach().double().numpy()[targets[rows]]  # (n, 4)
    expected = weight * mean_act
    # float32 sums of 30 products per channel: rounding ~ 30 * eps * |terms|, far below 1e-5 at these sizes
    scale = np.abs(expected).max()
    np.testing.assert_allclose(rel, expected, rtol=0, atol=64 * np.finfo(np.float32).eps * scale)
    bias = model.head.bias.detach().double().numpy()[targets[rows]]
    np.testing.assert_allclose(rel.sum(axis=1), logits[np.arange(6), targets[rows]] - bias, rtol=0,
                               atol=64 * np.finfo(np.float32).eps * np.abs(logits).max())
    assert rel.dtype == np.float32 and rel.shape == (6, 4)


def test_channel_relevance__a_mark_anywhere_lights_the_same_channel() -> None:
    # one channel detects a bright 2x2 dot; the relevance vector does not depend on where the dot is
    conv = torch.nn.Conv2d(1, 2, 2, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0] = 1.0  # dot detector
        conv.weight[1, 0, 0, 0] = -0.1  # something else, weak
    model = torch.nn.Sequential(conv, torch.nn.ReLU(), torch.nn.AdaptiveMaxPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(2, 2))
    images = np.zeros((3, 1, 8, 8), np.float32)
    images[0, 0, 0:2, 0:2] = 1.0
    images[1, 0, 5:7, 3:5] = 1.0
    images[2, 0, 6:8, 6:8] = 1.0
    rel = channel_relevance(model, "0", images, np.arange(3), np.zeros(3, dtype=int))
    np.testing.assert_allclose(rel[1], rel[0], rtol=1e-6)
    np.testing.assert_allclose(rel[2], rel[0], rtol=1e-6)
    assert abs(rel[0, 0]) > 0


def test_channel_relevance__rows_and_targets_of_different_length__raise() -> None:
    with pytest.raises(ValueError, match="targets"):
        channel_relevance(ConvPoolToy(in_channels=2), "conv", _images(), np.arange(3), np.zeros(2, dtype=int))


def test_channel_relevance__layer_without_channels__raises_with_fix() -> None:
    from soxai.errors import ConfigError

    # a layer whose output is (n, 6, 10): neither feature maps nor a vector of channels
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Unflatten(1, (6, 10)), torch.nn.Flatten(),
                                torch.nn.Linear(60, 3))
    with pytest.raises(ConfigError, match="not channels"):
        channel_relevance(model, "1", _images(), np.arange(2), np.zeros(2, dtype=int))


def _dot_model() -> torch.nn.Module:
    # channel 0 detects a bright 2x2 dot; channel 1 is a weak detector of something else
    conv = torch.nn.Conv2d(1, 2, 2, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0] = 1.0
        conv.weight[1, 0, 0, 0] = -0.1
    return torch.nn.Sequential(conv, torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                               torch.nn.Linear(2, 2))


def test_relevance_and_peaks__a_mark_anywhere__same_peak_and_the_same_relevance_as_alone() -> None:
    from soxai.embed.relevance import relevance_and_peaks

    images = np.zeros((3, 1, 8, 8), np.float32)
    images[:, 0, 0:4, 0:8] = 0.3  # a faint object in the top half of every image
    images[0, 0, 5:7, 0:2] = 1.0  # the dot, at three places of the bottom half
    images[1, 0, 5:7, 3:5] = 1.0
    images[2, 0, 6:8, 6:8] = 1.0
    model = _dot_model()
    rel, peaks = relevance_and_peaks(model, "0", images, np.arange(3), np.zeros(3, dtype=int), batch_size=2)
    assert rel.shape == peaks.shape == (3, 2) and peaks.dtype == np.float32
    np.testing.assert_allclose(peaks[1:], np.repeat(peaks[:1], 2, axis=0), rtol=1e-6)
    assert peaks[0, 0] == pytest.approx(4.0)  # the dot's 2x2 sum: the conv's largest output
    # relevance against its closed form: the head reads the channels' mean after a ReLU, so channel c's relevance
    # for class 0 is W[0, c] * mean over positions of relu(activation)
    with torch.no_grad():
        act = model[0](torch.from_numpy(images)).double()
    expected = model[4].weight.detach().double()[0] * torch.relu(act).mean(dim=(2, 3))
    np.testing.assert_allclose(rel, expected.numpy(), rtol=1e-5, atol=1e-7)


def test_relevance_and_peaks__a_layer_without_positions__peak_is_the_activation() -> None:
    from soxai.embed.relevance import relevance_and_peaks

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(60, 4), torch.nn.Linear(4, 3))
    images = _images()
    _, peaks = relevance_and_peaks(model, "1", images, np.arange(6), np.zeros(6, dtype=int))
    with torch.no_grad():
        expected = model[1](model[0](torch.from_numpy(images))).numpy()
    np.testing.assert_allclose(peaks, expected, rtol=1e-6)
