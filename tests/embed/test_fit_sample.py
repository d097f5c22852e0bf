"""embed.fit_sample: a stratified seeded sample, block-wise features.npy, exact k-NN selection, placement."""

from __future__ import annotations

import numpy as np
import pytest

from soxai.embed.neighbors import nearest, smallest_k
from soxai.embed.sample import stratified_sample, wants_sample_fit
from soxai.errors import StageError
from soxai.run_dir import npy_shape, read_npy_rows, write_npy, write_npy_chunks


def test_stratified_sample__each_class_in_proportion_and_seeded():
    labels = np.repeat([0, 1, 2], [6000, 3000, 1000])
    pick = stratified_sample(labels, 1000, seed=3)
    counts = np.bincount(labels[pick], minlength=3)
    assert counts.tolist() == [600, 300, 100]
    assert np.all(np.diff(pick) > 0)  # ascending, no repeats
    assert np.array_equal(pick, stratified_sample(labels, 1000, seed=3))
    assert not np.array_equal(pick, stratified_sample(labels, 1000, seed=4))


def test_stratified_sample__a_rare_class_keeps_a_member():
    labels = np.r_[np.zeros(5000, dtype=int), [7]]
    assert 5000 in stratified_sample(labels, 50, seed=0)  # round(1 * 0.01) = 0, but every class is sampled


def test_wants_sample_fit__only_above_the_threshold_and_never_at_zero():
    assert wants_sample_fit(1001, 1000) and not wants_sample_fit(1000, 1000)
    assert not wants_sample_fit(10**7, 0)


def test_write_npy_chunks__same_bytes_as_write_npy_and_rows_read_back(tmp_path):
    x = np.random.default_rng(0).standard_normal((1000, 7)).astype(np.float32)
    write_npy(tmp_path / "a.npy", x)
    write_npy_chunks(tmp_path / "b.npy", len(x), (x[i : i + 300] for i in range(0, len(x), 300)))
    assert (tmp_path / "a.npy").read_bytes() == (tmp_path / "b.npy").read_bytes()
    assert npy_shape(tmp_path / "b.npy") == (1000, 7)
    assert np.array_equal(read_npy_rows(tmp_path / "b.npy", 250, 700), x[250:700])
    assert np.array_equal(read_npy_rows(tmp_path / "b.npy", 990, 2000), x[990:])


def test_write_npy_chunks__whole_or_nothing_when_a_block_raises(tmp_path):
    path = tmp_path / "features.npy"
    write_npy(path, np.zeros((2, 3), dtype=np.float32))
    before = path.read_bytes()

    def blocks():
        yield np.ones((4, 3), dtype=np.float32)
        raise RuntimeError("block 2 failed")

    with pytest.raises(RuntimeError, match="block 2 failed"):
        write_npy_chunks(path, 8, blocks())
    assert path.read_bytes() == before  # the old file stays, no half-written one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features.npy"]  # no temporary left


def test_write_npy_chunks__too_few_rows_is_an_error_and_writes_nothing(tmp_path):
    with pytest.raises(StageError, match="was to get 10 rows but its blocks held 4"):
        write_npy_chunks(tmp_path / "f.npy", 10, iter([np.ones((4, 3), dtype=np.float32)]))
    assert not any(tmp_path.iterdir())


def test_smallest_k__equals_a_stable_sort_with_ties():
    rng = np.random.default_rng(1)
    d2 = rng.integers(0, 6, size=(300, 40)).astype(np.float64)  # many ties, also at the k-th value
    for k in (1, 5, 40):
        assert np.array_equal(smallest_k(d2, k), np.argsort(d2, axis=1, kind="stable")[:, :k])


def test_nearest__exclude_self_and_float32():
    x = np.random.default_rng(2).standard_normal((200, 4))
    idx, dist = nearest(x, x, 3, exclude_self=True)
    assert not np.any(idx == np.arange(200)[:, None])
    d = np.linalg.norm(x[:, None] - x[None], axis=2)
    np.fill_diagonal(d, np.inf)
    np.testing.assert_allclose(dist, np.sort(d, axis=1)[:, :3], rtol=1e-9)
    idx32, _ = nearest(x.astype(np.float32), x.astype(np.float32), 3, exclude_self=True)
    assert (idx32 == idx).mean() > 0.99  # float32 rounding may swap a near tie, nothing more
