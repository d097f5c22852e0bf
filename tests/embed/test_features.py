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
