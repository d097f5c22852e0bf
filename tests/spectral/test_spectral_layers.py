"""Layer spectra: the FFT operator norm of a convolution against the operator itself, effective rank, the
skipped-layer list and the Lipschitz bound."""

import numpy as np
import pytest
import torch
from torch import nn

from soxai.spectral.layers import (
    conv_operator_spectrum,
    effective_rank,
    layer_rows,
    lipschitz_bound,
    matrix_spectrum,
)


def _power_iteration(conv: nn.Conv2d, size: tuple[int, int], n_iter: int = 500) -> float:
    """Largest singular value of ``conv`` (bias left out) on inputs of ``size``: power iteration on conv^T conv."""
    weight = conv.weight.detach().double()

    def apply(v):
        if conv.padding_mode == "circular":
            ph, pw = conv.padding
            v = nn.functional.pad(v, (pw, pw, ph, ph), mode="circular")
            return nn.functional.conv2d(v, weight, None, conv.stride, 0, conv.dilation, conv.groups)
        return nn.functional.conv2d(v, weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)

    x = torch.randn(1, conv.in_channels, *size, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sigma = 0.0
    for _ in range(n_iter):
        x = (x / x.norm()).requires_grad_(True)
        y = apply(x)
        (grad,) = torch.autograd.grad(0.5 * (y**2).sum(), x)
        sigma = float(y.detach().norm())
        x = grad.detach()
    return sigma


def _dense_operator(conv: nn.Conv2d, size: tuple[int, int]) -> np.ndarray:
    """The circular convolution as a matrix (columns: the images of the basis vectors)."""
    n_in = conv.in_channels * size[0] * size[1]
    basis = torch.eye(n_in, dtype=torch.float64).reshape(n_in, conv.in_channels, *size)
    ph, pw = conv.padding
    out = nn.functional.conv2d(nn.functional.pad(basis, (pw, pw, ph, ph), mode="circular"),
                               conv.weight.detach().double(), None, 1, 0, conv.dilation, conv.groups)
    return out.reshape(n_in, -1).T.numpy()


def test_conv_operator_spectrum__equals_power_iteration_on_a_circular_conv():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular", bias=False)
    fft_norm = conv_operator_spectrum(conv.weight.detach().numpy(), (6, 6))[0]
    assert fft_norm == pytest.approx(_power_iteration(conv, (6, 6)), rel=1e-6)


def test_conv_operator_spectrum__every_value_matches_the_dense_operator_with_groups_and_dilation():
    torch.manual_seed(1)
    conv = nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=2, padding_mode="circular", bias=False)
    values = conv_operator_spectrum(conv.weight.detach().numpy(), (7, 7), groups=2, dilation=(2, 2))
    dense = np.linalg.svd(_dense_operator(conv, (7, 7)), compute_uv=False)
    np.testing.assert_allclose(values, dense, rtol=1e-9, atol=1e-9)


def test_conv_operator_spectrum__bounds_a_zero_padded_strided_conv_from_above():
    torch.manual_seed(2)
    for stride in (1, 2):
        conv = nn.Conv2d(3, 5, 3, padding=1, stride=stride, bias=False)
        rows, _ = layer_rows(nn.Sequential(conv), (3, 8, 8))
        truth = _power_iteration(conv, (8, 8))
        assert not rows[0]["operator_norm_exact"]
        assert truth <= rows[0]["operator_norm"] * (1 + 1e-9)
        assert truth >= 0.5 * rows[0]["operator_norm"]  # a bound, not a loose one


def test_conv_operator_spectrum__kernel_larger_than_input__raises():
    with pytest.raises(ValueError, match="does not fit"):
        conv_operator_spectrum(np.ones((1, 1, 5, 5)), (3, 3))


def test_effective_rank__equal_values_give_their_count_and_one_value_gives_one():
    assert effective_rank(np.ones(7)) == pytest.approx(7.0)
    assert effective_rank(np.array([3.0, 0.0, 0.0])) == pytest.approx(1.0)
    assert effective_rank(np.zeros(3)) == 0.0
    assert 1.0 < effective_rank(np.array([4.0, 1.0, 1.0])) < 3.0


def test_matrix_spectrum__reshapes_a_kernel_to_out_by_rest():
    w = np.random.default_rng(0).normal(size=(4, 2, 3, 3))
    np.testing.assert_allclose(matrix_spectrum(w), np.linalg.svd(w.reshape(4, 18), compute_uv=False))


class _Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.norm = nn.LayerNorm([2, 6, 6])
        self.fc = nn.Linear(72, 3)
        self.unused = nn.Linear(3, 3)

    def forward(self, x):
        return self.fc(self.norm(self.conv(x)).flatten(1))


def test_layer_rows__lists_every_unsupported_layer_by_name_and_type():
    rows, skipped = layer_rows(_Mixed().eval(), (1, 6, 6))
    assert [(r["name"], r["kind"]) for r in rows] == [("conv", "conv"), ("fc", "linear")]
    assert {(s["name"], s["type"]) for s in skipped} == {("norm", "LayerNorm"), ("unused", "Linear")}
    assert all(s["why"] for s in skipped)


def test_lipschitz_bound__bounds_how_far_a_chain_moves_two_inputs_apart():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3)).eval()
    net[1].running_var.uniform_(0.5, 2.0)
    rows, skipped = layer_rows(net, (1, 8, 8))
    bound = lipschitz_bound(rows)
    assert not skipped and [r["kind"] for r in rows] == ["conv", "norm", "conv", "linear"]
    x, y = torch.randn(256, 1, 8, 8), torch.randn(256, 1, 8, 8)
    with torch.no_grad():
        gain = ((net(x) - net(y)).flatten(1).norm(dim=1) / (x - y).flatten(1).norm(dim=1)).max().item()
    assert 0 < gain <= bound
