"""Frequency content of concept maps: sharp marks are high frequency, smooth shapes low."""

import numpy as np
import pytest

from soxai.spectral.frequency import concept_frequency_rows, high_frequency_share, radial_power_spectrum


def _blob(size: int = 32, sigma: float = 5.0) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size] - size / 2
    return np.exp(-(yy**2 + xx**2) / (2 * sigma**2))


def _checkerboard(size: int = 32) -> np.ndarray:
    return (np.indices((size, size)).sum(axis=0) % 2).astype(float)


def test_high_frequency_share__checkerboard_is_high_and_smooth_blob_is_low():
    assert high_frequency_share(_checkerboard()) > 0.99
    assert high_frequency_share(_blob()) < 0.01
    assert high_frequency_share(np.full((8, 8), 3.0)) == 0.0


def test_radial_power_spectrum__bins_hold_the_mean_power_of_their_frequencies():
    image = np.random.default_rng(0).normal(size=(16, 16))
    centres, power = radial_power_spectrum(image, n_bins=8)
    assert centres.shape == power.shape == (8,)
    assert np.all(np.diff(centres) > 0) and centres[-1] < 0.5
    full = np.abs(np.fft.fft2(image - image.mean())) ** 2
    radius = np.hypot(*np.meshgrid(np.fft.fftfreq(16), np.fft.fftfreq(16), indexing="ij"))
    first = radius < 0.5 / 8
    assert power[0] == pytest.approx(full[first].mean())


def test_radial_power_spectrum__not_a_2d_map__raises():
    with pytest.raises(ValueError, match="2-D"):
        radial_power_spectrum(np.zeros((2, 4, 4)))


def test_concept_frequency_rows__a_sharp_concept_exceeds_its_class_and_a_lone_class_has_none():
    corner = _blob(sigma=6.0)
    corner[1:4, 1:4] += 2.0  # a small square mark on the smooth shape
    maps = np.stack([_blob(), corner, _blob(sigma=4.0), _blob()])
    rows = concept_frequency_rows(maps, np.array([0, 1, 2, 3]), np.array([0, 0, 0, 1]), np.array([10, 5, 10, 7]))
    by_id = {r["concept_id"]: r for r in rows}
    assert by_id[1]["hf_excess"] > 0 > by_id[0]["hf_excess"]
    assert by_id[1]["class_hf_share"] == pytest.approx((by_id[0]["hf_share"] + by_id[2]["hf_share"]) / 2)
    assert np.isnan(by_id[3]["class_hf_share"]) and by_id[3]["class_power"] == []
    assert len(by_id[1]["power"]) == len(by_id[1]["class_power"]) == len(by_id[1]["frequency"])
