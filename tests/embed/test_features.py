import numpy as np
import pytest

from soxai.embed.features import embed_features, pooled_features, scale_rows


def test_pooled_features__pools_abs_and_normalises_rows():
    maps = np.zeros((2, 8, 8), dtype=np.float16)
    maps[0, :4, :4] = -2.0
    maps[1, 4:, 4:] = 5.0
    f = pooled_features(maps, 2, "l2")
    assert f.shape == (2, 4)
    np.testing.assert_allclose(f[0], [1, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(f[1], [0, 0, 0, 1], atol=1e-6)


def test_scale_rows__zero_rows_stay_zero_and_unknown_norm_fails():
    x = np.array([[0.0, 0.0], [3.0, 4.0]], dtype=np.float32)
    # float32 against float64 literals with the default rtol 1e-7: the norms (sqrt(25) = 5, max 4) are exact,
    # so each value is one correctly rounded float32 division, within 2**-24 = 6e-8 relative on any CPU.
    np.testing.assert_allclose(scale_rows(x, "l2"), [[0, 0], [0.6, 0.8]])
    np.testing.assert_allclose(scale_rows(x, "max"), [[0, 0], [0.75, 1.0]])
    with pytest.raises(ValueError, match="unknown normalisation"):
        scale_rows(x, "l3")


def test_embed_features__same_seed_same_embedding_and_blobs_stay_apart():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.1, (100, 16)), rng.normal(3, 0.1, (100, 16))]).astype(np.float32)
    pca_a, emb_a = embed_features(x, 8, 15, 0.0, 2, seed=1)
    _, emb_b = embed_features(x, 8, 15, 0.0, 2, seed=1)
    np.testing.assert_array_equal(emb_a, emb_b)
    assert pca_a.shape == (200, 8) and emb_a.shape == (200, 2)
    gap = np.linalg.norm(emb_a[:100].mean(0) - emb_a[100:].mean(0))
    spread = max(emb_a[:100].std(0).max(), emb_a[100:].std(0).max())
    assert gap > 3 * spread


def test_embed_features__too_few_samples_is_a_clear_error():
    from soxai.errors import StageError

    with pytest.raises(StageError, match="too few"):
        embed_features(np.zeros((3, 4), dtype=np.float32), 2, 15, 0.0, 2, seed=0)


def _bright_dark_model():
    """A 1x1 convolution with two channels: 'bright' (= x) and 'dark' (= 1 - x), then a head."""
    import torch
    from torch import nn

    conv = nn.Conv2d(1, 2, 1)
    with torch.no_grad():
        conv.weight[:] = torch.tensor([1.0, -1.0]).view(2, 1, 1, 1)
        conv.bias[:] = torch.tensor([0.0, 1.0])
    return nn.Sequential(conv, nn.Flatten(), nn.LazyLinear(2))


def test_activation_features__shape_and_respond_to_where_and_what():
    from soxai.embed.features import activation_features, combine_blocks

    images = np.zeros((3, 1, 8, 8), dtype=np.float32)
    images[0, :, :4, :4] = 1.0  # bright top-left
    images[1, :, :4, :4] = 1.0
    images[2, :, 4:, 4:] = 1.0  # bright elsewhere: the top-left is dark
    maps = np.zeros((3, 8, 8), dtype=np.float32)
    maps[0, :4, :4] = 1.0  # looks at the bright patch
    maps[1, 4:, 4:] = 1.0  # same image, looks at the dark corner (where differs)
    maps[2, :4, :4] = 1.0  # same place as sample 0, but sees darkness there (what differs)
    model = _bright_dark_model()
    f = activation_features(model, None, images, np.arange(3), maps, "l2")
    assert f.shape == (3, 2)
    np.testing.assert_allclose(f[0], [1, 0], atol=1e-5)
    np.testing.assert_allclose(f[1], [0, 1], atol=1e-5)
    np.testing.assert_allclose(f[2], [0, 1], atol=1e-5)
    pooled = pooled_features(maps, 2, "l2")
    np.testing.assert_allclose(pooled[0], pooled[2])  # the pooled map alone cannot tell 0 from 2
    both = combine_blocks([pooled, f])
    assert both.shape == (3, 6)
    np.testing.assert_allclose(np.linalg.norm(both[:, :4], axis=1), np.sqrt(0.5), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(both[:, 4:], axis=1), np.sqrt(0.5), atol=1e-6)


def test_activation_features__layer_without_feature_maps__raises_with_fix():
    from soxai.embed.features import activation_features
    from soxai.errors import ConfigError

    with pytest.raises(ConfigError, match="not feature maps"):
        activation_features(_bright_dark_model(), "1", np.zeros((1, 1, 8, 8), np.float32), np.arange(1),
                            np.ones((1, 8, 8), np.float32), "l2")


def test_peak_block__empty_nearly_flat_and_broken_rows():
    from soxai.embed.features import peak_block

    assert peak_block(np.zeros((0, 4), np.float32)).shape == (0, 4)
    # flat up to float32 rounding: no spread, not noise blown up to unit scale
    np.testing.assert_array_equal(peak_block(np.array([[1e-8, 1e-8 + 1e-15, 1e-8]], np.float32)), 0.0)
    out = peak_block(np.array([[1.0, np.nan, 2.0], [1.0, 2.0, 3.0]], np.float32))
    assert np.isnan(out[0]).all() and np.isfinite(out[1]).all()


def test_peak_block__standardised_per_sample_and_flat_rows_give_zeros():
    from soxai.embed.features import peak_block

    peaks = np.array([[1.0, 2.0, 3.0], [10.0, 20.0, 30.0], [5.0, 5.0, 5.0]], np.float32)
    out = peak_block(peaks)
    np.testing.assert_allclose(out[0], out[1], rtol=1e-6)  # the channels' scale does not matter, their order does
    np.testing.assert_allclose(out[0].mean(), 0.0, atol=1e-6)
    np.testing.assert_allclose(out[0].std(), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(out[2], 0.0)


def test_explanation_features__channels_peaks_pooled__three_equal_blocks_same_for_new_samples():
    import torch

    from soxai.concepts.assign import new_sample_features
    from soxai.config import load_config
    from soxai.embed.features import combine_blocks, explanation_features, peak_block
    from soxai.embed.relevance import relevance_and_peaks
    from soxai.testing.toy import ConvPoolToy

    torch.manual_seed(0)
    model = ConvPoolToy(in_channels=1, n_classes=3, hidden=4)
    rng = np.random.default_rng(0)
    images = rng.normal(size=(5, 1, 8, 8)).astype(np.float32)
    maps = np.abs(rng.normal(size=(5, 8, 8))).astype(np.float32)
    rows, targets = np.array([4, 0, 2, 1, 3]), np.array([0, 1, 2, 0, 1])
    cfg = load_config(None, ["embed.features=channels+peaks+pooled", "model.layer=conv", "embed.pool_size=4"])
    kwargs = dict(model=model, images=images, rows=rows, targets=targets)
    out = explanation_features(cfg, maps, **kwargs)
    rel, peaks = relevance_and_peaks(model, "conv", images, rows, targets)
    expected = combine_blocks([scale_rows(rel, "l2"), peak_block(peaks), pooled_features(maps, 4, "l2")])
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert out.shape == (5, 4 + 4 + 16)
    np.testing.assert_allclose(np.linalg.norm(out[:, 4:8], axis=1), 1 / np.sqrt(3), rtol=1e-5)
    # nothing is fitted on the samples at hand: a subset's vectors are the whole set's rows (the monitor's new
    # samples are made alone, the embed stage's in chunks)
    part = new_sample_features(cfg, maps[:2], model=model, images=images, rows=rows[:2], targets=targets[:2])
    np.testing.assert_allclose(part, out[:2], rtol=1e-5, atol=1e-7)
