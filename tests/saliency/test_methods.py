"""Saliency methods against closed forms on toy models, and the batching/device contracts."""

import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from _tolerance import assert_within, dot_gamma, gamma

import soxai
from soxai.errors import ConfigError, DataError
from soxai.saliency import methods, path_integration
from soxai.saliency.methods import (
    SALIENCY_METHODS,
    compute_maps,
    gauss_legendre,
    gradient_shap_baselines,
    iter_maps,
    last_conv_layer,
    occlusion_window,
    reduce_channels,
    resolve_device,
)
from soxai.testing.toy import ConvPoolToy, ConvToy, LinearToy

IN_SHAPE = (2, 4, 4)
N_CLASSES = 3
CPU = torch.device("cpu")
OPTIONS = {"batch_size": 3, "ig_steps": 8, "reduce": "sum", "device": CPU}


def _inputs(n: int = 5, shape: tuple[int, ...] = IN_SHAPE, seed: int = 0) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=generator)
    target = torch.randint(0, N_CLASSES, (n,), generator=generator)
    return x, target


def _maps(model: torch.nn.Module, images: np.ndarray, targets: np.ndarray, **options: object) -> np.ndarray:
    return compute_maps(model, images, targets, **({"method": "gradient"} | OPTIONS | options))


def _attribute(
    name: str, model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, ig_steps: int = 16, internal: int = 10
) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    attr = SALIENCY_METHODS[name](model.eval(), x, target, ig_steps=ig_steps, internal_batch_size=internal, layer=None)
    return attr.detach()


def _class_weights(model: LinearToy, target: torch.Tensor) -> torch.Tensor:
    return torch.stack([model.class_weight(int(k)) for k in target])


@pytest.mark.parametrize("name", ["gradient", "guided_backprop", "deconvolution"])
def test_gradient_methods__linear_toy_equal_class_weight(name: str) -> None:
    model = LinearToy(IN_SHAPE, N_CLASSES)
    x, target = _inputs()

    attr = _attribute(name, model, x, target)

    torch.testing.assert_close(attr, _class_weights(model, target), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(
    "name", ["input_x_gradient", "integrated_gradients", "integrated_gradients_captum", "deeplift", "lrp"]
)
def test_input_times_gradient_methods__linear_toy_equal_x_times_weight(name: str) -> None:
    model = LinearToy(IN_SHAPE, N_CLASSES)
    x, target = _inputs()

    attr = _attribute(name, model, x, target)

    torch.testing.assert_close(attr, x * _class_weights(model, target), atol=1e-5, rtol=1e-4)


def test_integrated_gradients__linear_toy_complete() -> None:
    model = LinearToy(IN_SHAPE, N_CLASSES)
    x, target = _inputs()

    ig_steps = 16
    attr = _attribute("integrated_gradients", model, x, target, ig_steps=ig_steps)

    with torch.no_grad():
        gap = (model(x) - model(torch.zeros_like(x))).gather(1, target[:, None])[:, 0]
    # Float32 rounding only: each attribution is x * W[k] times the quadrature weights' float32 sum, off by
    # ig_steps + 2 roundings (the weights' cast, the products, the additions, the product with x); then
    # both sides are float32 sums of D terms (the attributions, and the logit W[k] . x; the zero image's
    # logit is exactly 0), each off by dot_gamma(D) * S, S = sum |x * W[k]|.
    abs_terms = (x * _class_weights(model, target)).abs().sum(dim=(1, 2, 3))
    bound = (gamma(ig_steps + 2) + 2 * dot_gamma(x[0].numel())) * abs_terms
    assert_within(attr.sum(dim=(1, 2, 3)), gap, bound, "integrated gradients' completeness on LinearToy")


def test_integrated_gradients__conv_toy_nearly_complete() -> None:
    # ConvToy is only piecewise linear, so completeness holds up to the quadrature error.
    model = ConvToy(in_channels=2, n_classes=N_CLASSES)
    x, target = _inputs()

    attr = _attribute("integrated_gradients", model, x, target)

    with torch.no_grad():
        gap = (model(x) - model(torch.zeros_like(x))).gather(1, target[:, None])[:, 0]
    torch.testing.assert_close(attr.sum(dim=(1, 2, 3)), gap, atol=2e-3, rtol=5e-2)


@pytest.mark.parametrize(("n", "internal"), [(5, 10), (5, 7), (5, 3), (1, 4)])
def test_integrated_gradients__equals_captum_on_conv_toy(n: int, internal: int) -> None:
    # internal 7 and 3 cut chunks across steps and inside one step: the index bookkeeping must hold.
    model = ConvToy(in_channels=2, n_classes=N_CLASSES)
    x, target = _inputs(n=n)

    ours = _attribute("integrated_gradients", model, x, target, internal=internal)
    reference = _attribute("integrated_gradients_captum", model, x, target, internal=max(internal, n))

    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-4 * float(reference.abs().max()))


def test_integrated_gradients__conv_toy_complete_within_one_percent() -> None:
    # ReLU kinks limit the quadrature: 16 steps are 5% off on ConvToy, 128 steps well under 1%.
    model = ConvToy(in_channels=2, n_classes=N_CLASSES)
    x, target = _inputs()

    attr = _attribute("integrated_gradients", model, x, target, ig_steps=128, internal=64)

    with torch.no_grad():
        gap = (model(x) - model(torch.zeros_like(x))).gather(1, target[:, None])[:, 0]
    torch.testing.assert_close(attr.sum(dim=(1, 2, 3)), gap, rtol=1e-2, atol=0)


def test_integrated_gradients__forward_rows_bounded_by_internal_batch_size() -> None:
    model = ConvToy(in_channels=2, n_classes=N_CLASSES)
    rows: list[int] = []
    model.conv.register_forward_pre_hook(lambda _, inputs: rows.append(inputs[0].shape[0]))
    x, target = _inputs(n=5)

    _attribute("integrated_gradients", model, x, target, ig_steps=16, internal=12)

    assert max(rows) <= 12
    assert sum(rows) == 5 * 16


def test_gauss_legendre__weights_sum_to_one_and_integrate_cubics_exactly() -> None:
    alphas, weights = gauss_legendre(3)

    assert weights.sum() == pytest.approx(1.0)
    assert ((alphas > 0) & (alphas < 1)).all()
    assert (weights * alphas**5).sum() == pytest.approx(1 / 6)


def test_gradient_shap__linear_toy_expectation_is_x_minus_mean_baseline_times_weight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Only the baseline drawn matters on a linear model; many draws bring its mean close to the mean baseline.
    # Patched where gradient_shap reads it: soxai.saliency.methods only re-exports the constant.
    monkeypatch.setattr(path_integration, "GRADIENT_SHAP_SAMPLES", 4000)
    model = LinearToy(IN_SHAPE, N_CLASSES)
    x, target = _inputs(n=3)

    attr = _attribute("gradient_shap", model, x, target)

    mean_baseline = torch.stack([gradient_shap_baselines(x[i : i + 1]).mean(dim=0) for i in range(3)])
    expected = (x - mean_baseline) * _class_weights(model, target)
    torch.testing.assert_close(attr, expected, atol=0.05, rtol=0.05)


def test_gradient_shap__baselines_are_zero_then_scaled_noise() -> None:
    x, _ = _inputs(n=1)

    baselines = gradient_shap_baselines(x)

    assert baselines.shape == (1 + methods.GRADIENT_SHAP_NOISE_BASELINES, *IN_SHAPE)
    assert torch.equal(baselines[0], torch.zeros(IN_SHAPE))
    assert baselines[1:].std() > 0


@pytest.mark.parametrize("name", ["gradient_shap", "vargrad"])
def test_seeded_methods__deterministic_and_leave_torch_and_numpy_rng_alone(name: str) -> None:
    model = ConvToy(in_channels=2, n_classes=N_CLASSES)
    x, target = _inputs()
    torch.manual_seed(123)
    np.random.seed(123)
    torch_state, numpy_state = torch.random.get_rng_state(), np.random.get_state()

    first = _attribute(name, model, x, target)
    second = _attribute(name, model, x, target)

    torch.testing.assert_close(first, second, atol=0, rtol=0)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], numpy_state[1])


def test_vargrad__linear_toy_is_zero_conv_toy_is_not() -> None:
    x, target = _inputs()
    linear_toy = LinearToy(IN_SHAPE, N_CLASSES)

    linear = _attribute("vargrad", linear_toy, x, target)
    conv = _attribute("vargrad", ConvToy(in_channels=2, n_classes=N_CLASSES), x, target)

    # E[g^2] - E[g]^2 of a constant gradient g = W[k]: zero up to float32 cancellation. captum sums the
    # VARGRAD_SAMPLES gradients and their squares in float32 and divides by the count, so E[g] and E[g^2]
    # are each off by gamma(samples) relative; E[g]^2 doubles the first and adds a rounding: the
    # difference is within 3 * gamma(samples) * g^2, per element (not a bare atol: g^2 reaches ~12 here).
    bound = 3 * gamma(methods.VARGRAD_SAMPLES) * _class_weights(linear_toy, target) ** 2
    assert_within(linear, 0.0, bound, "vargrad of a linear model")
    assert (conv >= 0).all() and conv.sum() > 0


def test_guided_gradcam__equals_guided_backprop_times_gradcam() -> None:
    model = ConvToy(in_channels=2, n_classes=N_CLASSES)
    x, target = _inputs(shape=(2, 6, 5))

    attr = _attribute("guided_gradcam", model, x, target)

    expected = _attribute("guided_backprop", model, x, target) * _attribute("gradcam", model, x, target)
    assert attr.shape == x.shape
    torch.testing.assert_close(attr, expected, atol=1e-7, rtol=1e-5)


def test_occlusion__model_reading_one_block_attributes_only_near_it() -> None:
    # A linear model that reads only pixels [6:8, 10:12] of a 16x16 image: 2x2 windows, stride 1.
    shape = (1, 16, 16)
    weight = torch.zeros(N_CLASSES, *shape)
    weight[:, :, 6:8, 10:12] = 1.0
    model = LinearToy(shape, N_CLASSES, weight=weight)
    x = torch.rand(2, *shape, generator=torch.Generator().manual_seed(0)) + 0.5
    (window, _), (stride, _) = occlusion_window(16, 16)

    attr = _attribute("occlusion", model, x, torch.tensor([0, 2]))

    assert (window, stride) == (2, 1)
    near = torch.zeros(shape, dtype=torch.bool)
    reach = window - 1  # pixels that share a window with the block
    near[:, 6 - reach : 8 + reach, 10 - reach : 12 + reach] = True
    assert (attr[:, near] > 0).all()
    # Away from the block a window zeroes only pixels of weight 0, so both logits are float32 sums of the
    # same four products (exact: the weights are 1) and of exact zeros. They agree bit for bit when the
    # two forwards (batches of different sizes) add the four in the same order; in another order each
    # is within gamma(3) * S of the true sum (three additions of positive terms, S = their sum).
    block_sum = x[:, :, 6:8, 10:12].sum(dim=(1, 2, 3))
    assert_within(attr[:, ~near], 0.0, 2 * gamma(3) * block_sum[:, None], "occlusion away from the block")


@pytest.mark.parametrize("shape", [(2, 16, 16), (1, 32, 32), (3, 24, 40)])
def test_occlusion__linear_toy_equals_mean_window_drop_by_hand(shape: tuple[int, int, int]) -> None:
    # f(x) = W . x, so zeroing a window drops the target logit by sum(W[k] * x) over the window (all
    # channels); each pixel gets the mean drop of the windows that cover it, the same in every channel.
    channels, height, width = shape
    weight = torch.randn(N_CLASSES, *shape, generator=torch.Generator().manual_seed(1))
    model = LinearToy(shape, N_CLASSES, weight=weight)
    x, target = _inputs(n=3, shape=shape)
    (wh, ww), (sh, sw) = occlusion_window(height, width)

    attr = _attribute("occlusion", model, x, target, internal=7).numpy()

    # The reference in float64, from the same float32 weights and inputs (exact in float64).
    contribution = weight.double().numpy()[target.numpy()] * x.double().numpy()  # (n, C, H, W): shares of the logit
    total = np.zeros((len(x), height, width))
    total_abs = np.zeros((len(x), height, width))
    covered = np.zeros((height, width))
    # captum moves the window ceil((side - window) / stride) times, so when the stride does not divide
    # the rest, the last window sticks out of the image and is cut at its edge (24x40: columns 36-39).
    for top in range(0, -(-(height - wh) // sh) * sh + 1, sh):
        for left in range(0, -(-(width - ww) // sw) * sw + 1, sw):
            window = (slice(top, top + wh), slice(left, left + ww))
            drop = contribution[(slice(None), slice(None), *window)].sum(axis=(1, 2, 3))
            total[(slice(None), *window)] += drop[:, None, None]
            total_abs[(slice(None), *window)] += np.abs(drop)[:, None, None]
            covered[window] += 1
    assert (covered > 0).all()
    expected = np.repeat((total / covered)[:, None], channels, axis=1)
    # Each drop captum sees is the difference of two float32 logits, W . x and W . x with the window
    # zeroed, each a dot product of D terms off by up to dot_gamma(D) * S, S = sum |W[k] * x| of the
    # whole image (zeroing only removes terms): the error scales with S (~1800 at 3x24x40), not with the
    # drop. Then captum adds a pixel's `covered` drops in float32 and divides by their count: at most
    # covered + 1 roundings of each (the subtraction, the additions, the division) on the mean |drop|.
    logit_pair = 2 * dot_gamma(channels * height * width) * np.abs(contribution).sum(axis=(1, 2, 3))
    accumulation = gamma(covered + 1) * total_abs / covered
    bound = np.repeat((logit_pair[:, None, None] + accumulation)[:, None], channels, axis=1)
    assert_within(attr, expected, bound, "occlusion maps against the float64 mean window drop")


def _bilinear(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix of bilinear resizing with pixel centres aligned (align_corners=False)."""
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        source = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        low = int(np.floor(source))
        high, frac = min(low + 1, n_in - 1), source - low
        m[i, low] += 1 - frac
        m[i, high] += frac
    return m


@pytest.mark.parametrize("stride", [1, 2])
def test_gradcam__conv_pool_toy_equals_relu_of_class_weighted_feature_maps(stride: int) -> None:
    # No ReLU between conv and pooling: alpha_j = V[k, j] / (h * w) exactly, the map is
    # relu(sum_j alpha_j A_j) at the conv's h x w, then bilinearly resized to the input (stride 2).
    model = ConvPoolToy(in_channels=2, n_classes=N_CLASSES, hidden=4, stride=stride)
    x, target = _inputs(shape=(2, 8, 6))

    attr = _attribute("gradcam", model, x, target).numpy()

    with torch.no_grad():
        feature_maps = model.conv(x).numpy()  # (n, 4, h, w)
    h, w = feature_maps.shape[2:]
    assert (h, w) == (8 // stride, 6 // stride)
    alpha = model.head.weight.detach().numpy()[target.numpy()] / (h * w)  # (n, 4)
    cam = np.maximum(np.einsum("nj,njhw->nhw", alpha, feature_maps), 0)
    expected = np.einsum("ah,nhw,bw->nab", _bilinear(h, 8), cam, _bilinear(w, 6))
    assert attr.shape == (5, 1, 8, 6)
    assert (cam == 0).any() and (cam > 0).any(), "the ReLU should both cut and keep somewhere"
    np.testing.assert_allclose(attr[:, 0], expected, rtol=1e-5, atol=1e-7)


def test_gradcam__conv_toy_equals_its_gated_closed_form() -> None:
    # ConvToy's ReLU gates the gradient: alpha_j = V[k, j] * (share of A_j > 0) / (H * W), A pre-ReLU.
    model = ConvToy(in_channels=2, n_classes=N_CLASSES)
    x, target = _inputs(shape=(2, 6, 5))

    attr = _attribute("gradcam", model, x, target).numpy()

    with torch.no_grad():
        feature_maps = model.conv(x).numpy()
    share_positive = (feature_maps > 0).mean(axis=(2, 3))
    alpha = model.head.weight.detach().numpy()[target.numpy()] * share_positive / (6 * 5)
    expected = np.maximum(np.einsum("nj,njhw->nhw", alpha, feature_maps), 0)
    np.testing.assert_allclose(attr[:, 0], expected, rtol=1e-5, atol=1e-7)


def test_occlusion_window__sized_from_the_image() -> None:
    assert occlusion_window(32, 32) == ((4, 4), (2, 2))
    assert occlusion_window(224, 112) == ((28, 14), (14, 7))
    assert occlusion_window(4, 4) == ((1, 1), (1, 1))


def _named(*layers: tuple[str, torch.nn.Module]) -> torch.nn.Sequential:
    return torch.nn.Sequential(OrderedDict(layers))


def test_lrp__relu_network_equals_input_x_gradient() -> None:
    # captum's epsilon rule on conv, pooling and linear layers with ReLUs passing relevance is gradient x input.
    model = ConvToy(in_channels=2, n_classes=N_CLASSES)
    x, target = _inputs()

    lrp = _attribute("lrp", model, x, target)

    expected = _attribute("input_x_gradient", model, x, target)
    torch.testing.assert_close(lrp, expected, atol=1e-6, rtol=1e-4)


def test_lrp__unsupported_layer_raises_config_error_naming_it() -> None:
    model = _named(
        ("conv", torch.nn.Conv2d(2, 3, 3, padding=1)),
        ("act", torch.nn.GELU()),
        ("flat", torch.nn.Flatten()),
        ("head", torch.nn.Linear(3 * 16, N_CLASSES)),
    )
    x, target = _inputs()

    with pytest.raises(ConfigError, match=r"'act' of type GELU.*choose another"):
        _attribute("lrp", model, x, target)


def test_lrp__keeps_a_user_rule_and_leaves_no_state_on_the_model() -> None:
    from captum.attr._utils.lrp_rules import EpsilonRule

    model = _named(("act", torch.nn.Softplus()), ("flat", torch.nn.Flatten()), ("head", torch.nn.Linear(32, 3)))
    rule = EpsilonRule()
    model.act.rule = rule
    x, target = _inputs(n=7)

    maps = _maps(model, x.numpy(), target.numpy(), method="lrp", batch_size=3)  # three calls

    assert np.isfinite(maps).all()
    assert model.act.rule is rule
    assert not any(hasattr(m, "activations") or (hasattr(m, "rule") and m is not model.act) for m in model.modules())


class _Reuse(torch.nn.Module):
    """conv -> relu -> conv -> the same relu: one module called twice per forward."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(2, 2, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(2, 2, 3, padding=1)
        self.relu = torch.nn.ReLU()
        self.head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(32, N_CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.relu(self.conv2(self.relu(self.conv1(x)))))


class _ReuseConv(_Reuse):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv1(self.relu(self.conv1(x))))


@pytest.mark.parametrize(("name", "model", "culprit"), [("deeplift", _Reuse, "'relu'"), ("lrp", _ReuseConv, "'conv1'")])
def test_reused_module__raises_config_error_naming_it(name: str, model: type, culprit: str) -> None:
    x, target = _inputs()

    with pytest.raises(ConfigError, match=f"{culprit} .*2 calls.*own module instance"):
        _attribute(name, model(), x, target)


@pytest.mark.parametrize("name", ["deeplift", "lrp", "guided_backprop", "deconvolution"])
def test_hooking_methods__inplace_relu_gives_the_same_maps(name: str) -> None:
    # captum 0.9 hooks tensors, not modules, so in-place ReLUs are safe; this pins that down.
    def build(inplace: bool) -> torch.nn.Module:
        torch.manual_seed(0)
        return torch.nn.Sequential(
            torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.ReLU(inplace=inplace), torch.nn.MaxPool2d(2),
            torch.nn.Flatten(), torch.nn.Linear(12, 8), torch.nn.ReLU(inplace=inplace), torch.nn.Linear(8, N_CLASSES),
        )

    x, target = _inputs()

    torch.testing.assert_close(
        _attribute(name, build(True), x, target), _attribute(name, build(False), x, target), atol=0, rtol=0
    )


def test_smoothgrad__linear_toy_mean_equals_gradient() -> None:
    model = LinearToy(IN_SHAPE, N_CLASSES)
    x, target = _inputs()

    attr = _attribute("smoothgrad", model, x, target)

    torch.testing.assert_close(attr, _class_weights(model, target), atol=1e-5, rtol=1e-4)


def test_smoothgrad__deterministic_and_leaves_global_rng_alone() -> None:
    model = ConvToy(in_channels=2, n_classes=N_CLASSES)
    x, target = _inputs()
    torch.manual_seed(123)
    state = torch.random.get_rng_state()

    first = _attribute("smoothgrad", model, x, target)
    second = _attribute("smoothgrad", model, x, target)

    torch.testing.assert_close(first, second, atol=0, rtol=0)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_smoothgrad__differs_from_plain_gradient_on_conv_toy() -> None:
    # Guards against noise that is silently zero: on a ReLU net the noise must change the map.
    model = ConvToy(in_channels=2, n_classes=N_CLASSES)
    x, target = _inputs()

    smooth = _attribute("smoothgrad", model, x, target)
    plain = _attribute("gradient", model, x, target)

    assert not torch.allclose(smooth, plain, atol=1e-4)


def test_gradcam__conv_toy_nonnegative_at_input_size() -> None:
    model = ConvToy(in_channels=2, n_classes=N_CLASSES)
    x, target = _inputs(shape=(2, 6, 5))

    attr = _attribute("gradcam", model, x, target)

    assert attr.shape == (5, 1, 6, 5)
    assert (attr >= 0).all()
    assert attr.sum() > 0


def test_gradcam__downsampling_layer_upsampled_to_input_size() -> None:
    model = torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, kernel_size=3, stride=2, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(3, N_CLASSES),
    )
    x, target = _inputs(shape=(2, 8, 8))

    attr = _attribute("gradcam", model, x, target)

    assert attr.shape == (5, 1, 8, 8)
    assert (attr >= 0).all()


def test_last_conv_layer__model_without_conv_raises() -> None:
    with pytest.raises(ConfigError, match="has none"):
        last_conv_layer(LinearToy(IN_SHAPE, N_CLASSES))


def test_last_conv_layer__conv_toy_gives_its_conv() -> None:
    model = ConvToy()

    assert last_conv_layer(model) is model.conv


@pytest.mark.parametrize("method", sorted(SALIENCY_METHODS))
def test_compute_maps__batched_equals_unbatched(method: str) -> None:
    model = ConvToy(in_channels=2, n_classes=N_CLASSES)
    x, target = _inputs(n=7)

    batched = _maps(model, x.numpy(), target.numpy(), method=method, batch_size=3)
    whole = _maps(model, x.numpy(), target.numpy(), method=method, batch_size=7)

    assert batched.shape == (7, 4, 4)
    assert batched.dtype == np.float32
    np.testing.assert_allclose(batched, whole, atol=1e-5, rtol=0)


def test_iter_maps__yields_batch_starts_and_shapes() -> None:
    model = ConvToy(in_channels=2, n_classes=N_CLASSES)
    x, target = _inputs(n=7)

    batches = list(iter_maps(model, x.numpy(), target.numpy(), method="gradient", **OPTIONS))

    assert [start for start, _ in batches] == [0, 3, 6]
    assert [maps.shape for _, maps in batches] == [(3, 4, 4), (3, 4, 4), (1, 4, 4)]


def test_iter_maps__reads_a_read_only_memmap(tmp_path: Path) -> None:
    model = LinearToy(IN_SHAPE, N_CLASSES)
    x, target = _inputs(n=4)
    path = tmp_path / "images.f32"
    np.memmap(path, dtype=np.float32, mode="w+", shape=tuple(x.shape))[:] = x.numpy()
    images = np.memmap(path, dtype=np.float32, mode="r", shape=tuple(x.shape))

    maps = _maps(model, images, target.numpy(), method="gradient")

    expected = _class_weights(model, target).sum(dim=1).numpy()
    np.testing.assert_allclose(maps, expected, atol=1e-6)


def test_iter_maps__works_inside_inference_mode() -> None:
    model = LinearToy(IN_SHAPE, N_CLASSES)
    x, target = _inputs(n=2)

    with torch.inference_mode():
        maps = _maps(model, x.numpy(), target.numpy(), method="integrated_gradients")

    expected = (x * _class_weights(model, target)).sum(dim=1).numpy()
    np.testing.assert_allclose(maps, expected, atol=1e-5)


def test_iter_maps__unknown_method_raises_at_call() -> None:
    model = LinearToy(IN_SHAPE, N_CLASSES)
    x, target = _inputs(n=2)

    with pytest.raises(ConfigError, match="choose one of"):
        iter_maps(model, x.numpy(), target.numpy(), method="gradcm", **OPTIONS)


@pytest.mark.parametrize(
    ("targets", "match"),
    [(np.array([0, 1, 2]), "shape"), (np.array([0.0, 1.0]), "integer"), (np.array([0, 3]), "3 outputs")],
)
def test_compute_maps__bad_targets_raise(targets: np.ndarray, match: str) -> None:
    model = LinearToy(IN_SHAPE, N_CLASSES)
    x, _ = _inputs(n=2)

    with pytest.raises(DataError, match=match):
        _maps(model, x.numpy(), targets)


def test_compute_maps__no_images_gives_empty_maps() -> None:
    model = LinearToy(IN_SHAPE, N_CLASSES)
    images = np.zeros((0, *IN_SHAPE), dtype=np.float32)

    maps = _maps(model, images, np.zeros(0, dtype=np.int64))

    assert maps.shape == (0, 4, 4)


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("abs_sum", [[3.0, 7.0], [0.5, 0.0]]),
        ("sum", [[-1.0, 1.0], [0.5, 0.0]]),
        ("max_abs", [[2.0, 4.0], [0.5, 0.0]]),
    ],
)
def test_reduce_channels__hand_made_tensor(how: str, expected: list[list[float]]) -> None:
    # One image, two channels, a 2x2 map: channel 0 = [[1, -3], [0.5, 0]], channel 1 = [[-2, 4], [0, 0]].
    attr = torch.tensor([[[[1.0, -3.0], [0.5, 0.0]], [[-2.0, 4.0], [0.0, 0.0]]]])

    reduced = reduce_channels(attr, how)

    torch.testing.assert_close(reduced, torch.tensor([expected]))


def test_reduce_channels__unknown_reduction_raises() -> None:
    with pytest.raises(ConfigError, match="abs_sum"):
        reduce_channels(torch.zeros(1, 2, 2, 2), "mean")


def test_resolve_device__cuda_without_gpu_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    with pytest.raises(ConfigError, match="device=auto"):
        resolve_device("cuda")


def test_resolve_device__auto_without_gpu_is_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    assert resolve_device("auto") == CPU


def test_resolve_device__unknown_name_raises() -> None:
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu")


# smoothgrad and vargrad draw their noise from the device's own generator: CPU and CUDA noise differ by design.
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", sorted(set(SALIENCY_METHODS) - {"smoothgrad", "vargrad"}))
def test_compute_maps__cpu_and_cuda_agree(method: str) -> None:
    x, target = _inputs(n=7)

    on_cpu = _maps(ConvToy(in_channels=2, n_classes=N_CLASSES), x.numpy(), target.numpy(), method=method)
    on_cuda = _maps(
        ConvToy(in_channels=2, n_classes=N_CLASSES),
        x.numpy(),
        target.numpy(),
        method=method,
        device=torch.device("cuda"),
    )

    # cuDNN may run convolutions in TF32, hence a tolerance well above float32 rounding.
    np.testing.assert_allclose(on_cuda, on_cpu, atol=1e-3, rtol=1e-2)


def test_import__methods_module_does_not_import_torch() -> None:
    code = (
        "import sys, soxai.saliency.methods as m; "
        "assert m.SALIENCY_METHODS; "
        "heavy = [name for name in ('torch', 'captum') if name in sys.modules]; "
        "assert not heavy, heavy"
    )

    # Run from the directory that holds the package, so it imports whether or not it is installed.
    repo_root = Path(soxai.__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo_root)

    assert result.returncode == 0, result.stderr
