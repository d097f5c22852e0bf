"""Opt-in mixed precision: maps agree with float32 in ranking (bfloat16 on CPU, float16 on CUDA)."""

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from soxai.config import Config
from soxai.models.registry import build_model
from soxai.saliency.methods import compute_maps

METHODS = ["gradient", "input_x_gradient", "integrated_gradients", "gradcam"]


def _setup():
    model = build_model(Config().model, in_channels=1, n_classes=3, image_size=32, seed=0)
    rng = np.random.default_rng(0)
    images = rng.random((24, 1, 32, 32), dtype=np.float32)
    targets = rng.integers(0, 3, size=24)
    return model, images, targets


def _rank_agreement(device: torch.device, method: str) -> float:
    model, images, targets = _setup()
    options = dict(method=method, batch_size=8, ig_steps=8, reduce="abs_sum", device=device)
    full = compute_maps(model, images, targets, **options)
    mixed = compute_maps(model, images, targets, **options, mixed_precision=True)
    assert mixed.dtype == np.float32 and mixed.shape == full.shape and np.isfinite(mixed).all()
    assert not np.array_equal(full, mixed), "autocast had no effect"
    return float(np.median([spearmanr(a.ravel(), b.ravel()).statistic for a, b in zip(full, mixed, strict=True)]))


@pytest.mark.parametrize("method", METHODS)
def test_mixed_precision_cpu_bfloat16_ranks_like_float32(method):
    assert _rank_agreement(torch.device("cpu"), method) >= 0.9


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", METHODS)
def test_mixed_precision_cuda_float16_ranks_like_float32(method):
    assert _rank_agreement(torch.device("cuda"), method) >= 0.95
