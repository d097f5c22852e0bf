"""Frequency content of concepts: the radially averaged Fourier power spectrum of each concept's mean
saliency map, and the share of its power at high spatial frequency.

A thin mark, a printed tag or a texture puts relevance into a few sharp pixels: much of its power sits at
high frequency. A shape the model reads as a whole (a nucleus, a cell outline) is smooth: low frequency.
Each concept is compared with the other concepts of its class, so what counts is that one concept of a
class is much sharper than the way the class is otherwise read.
"""

from __future__ import annotations

import numpy as np

# spatial frequencies at or above this many cycles per pixel count as high (Nyquist is 0.5)
HIGH_FREQUENCY = 0.25
N_BINS = 16  # radial bins from 0 to Nyquist


def radial_power_spectrum(image: np.ndarray, n_bins: int = N_BINS) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum of one 2-D map, the mean removed first (the DC term is the map's total
    relevance, not its shape).

    Parameters
    ----------
    image : array of shape (height, width)
    n_bins : radial bins of equal width from 0 to 0.5 cycles per pixel (frequencies beyond Nyquist along the
        diagonal fall into the last bin)

    Returns
    -------
    centres : float64 array of shape (n_bins,), each bin's centre in cycles per pixel
    power : float64 array of shape (n_bins,), the mean |FFT|^2 over the frequencies of each bin (0 where a bin
        holds none)
    """
    x = np.asarray(image, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"a radial spectrum needs one 2-D map, got shape {x.shape}")
    power = np.abs(np.fft.fft2(x - x.mean())) ** 2
    radius = _radius(x.shape)
    edges = np.linspace(0.0, 0.5, n_bins + 1)
    which = np.clip(np.digitize(radius, edges[1:-1]), 0, n_bins - 1)
    total = np.bincount(which.ravel(), weights=power.ravel(), minlength=n_bins)
    count = np.bincount(which.ravel(), minlength=n_bins)
    return (edges[:-1] + edges[1:]) / 2, np.divide(total, count, out=np.zeros(n_bins), where=count > 0)


def high_frequency_share(image: np.ndarray, cutoff: float = HIGH_FREQUENCY) -> float:
    """Share of a map's power (mean removed) at radial frequency >= ``cutoff`` cycles per pixel; 0 for a flat map.

    Summed over every frequency, not over bins, so the share does not depend on the binning.
    """
    x = np.asarray(image, dtype=np.float64)
    power = np.abs(np.fft.fft2(x - x.mean())) ** 2
    total = power.sum()
    if total <= 0:
        return 0.0
    return float(power[_radius(x.shape) >= cutoff].sum() / total)


def concept_frequency_rows(maps: np.ndarray, concept_ids: np.ndarray, labels: np.ndarray, sizes: np.ndarray,
                           n_bins: int = N_BINS) -> list[dict]:
    """One row per concept: its spectrum and high-frequency share, and those of the rest of its class.

    Parameters
    ----------
    maps : array of shape (n_concepts, height, width), each concept's mean |saliency| map
    concept_ids, labels, sizes : int arrays of shape (n_concepts,): id, class and member count of each map
    n_bins : radial bins (see :func:`radial_power_spectrum`)

    Returns
    -------
    dicts with concept_id, label, hf_share, class_hf_share (the size-weighted mean share of the class's other
    concepts; NaN where the class has no other), hf_excess (hf_share - class_hf_share), frequency (bin
    centres), power (the concept's radial spectrum) and class_power (the others' size-weighted mean spectrum;
    empty where there are none)
    """
    maps = np.asarray(maps, dtype=np.float64)
    sizes = np.asarray(sizes, dtype=np.float64)
    spectra = [radial_power_spectrum(m, n_bins) for m in maps]
    shares = np.array([high_frequency_share(m) for m in maps])
    rows = []
    for i, (cid, label) in enumerate(zip(concept_ids, labels, strict=True)):
        others = [j for j in range(len(maps)) if j != i and labels[j] == label]
        if others:
            # each other concept's own share and spectrum, weighted by its size: averaging their maps first
            # would blur them (a class of many concepts would look smoother than each of them is)
            class_share = float(np.average(shares[others], weights=sizes[others]))
            class_power = np.average([spectra[j][1] for j in others], axis=0, weights=sizes[others]).tolist()
        else:
            class_share, class_power = float("nan"), []
        rows.append({"concept_id": int(cid), "label": int(label), "hf_share": float(shares[i]),
                     "class_hf_share": class_share, "hf_excess": float(shares[i]) - class_share,
                     "frequency": spectra[i][0].tolist(), "power": spectra[i][1].tolist(),
                     "class_power": class_power})
    return rows


def _radius(shape: tuple[int, int]) -> np.ndarray:
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.fftfreq(shape[1])[None, :]
    return np.sqrt(fy**2 + fx**2)
