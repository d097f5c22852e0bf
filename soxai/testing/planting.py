"""Kernels of the published-benchmark generators (soxai.testing.published): per-class draws, a confounder
that agrees with the label at a given rate, the decoy shades, the ring glyph and where it may sit, stamping,
and the seeded random streams that keep a benchmark's objects and test images fixed whatever its agreement.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from soxai.errors import DataError
from soxai.testing.sources import FASHION_CLASSES


def as_uint8(images: np.ndarray, what: str = "images") -> np.ndarray:
    """Source images as uint8 (n, H, W): uint8 as they are, floats in [0, 1] scaled by 255."""
    images = np.asarray(images)
    if images.ndim != 3:
        raise DataError(f"{what} have shape {images.shape}; expected (n, height, width) grey images")
    if images.dtype == np.uint8:
        return images
    if np.issubdtype(images.dtype, np.floating):
        if images.size and (images.min() < 0 or images.max() > 1):
            raise DataError(f"{what} are floats outside [0, 1] (min {images.min():.3g}, max {images.max():.3g}); "
                            "pass uint8 images or floats scaled to [0, 1]")
        return np.round(images * 255).astype(np.uint8)
    raise DataError(f"{what} have dtype {images.dtype}; expected uint8 or floats in [0, 1]")


def draw_per_class(labels: np.ndarray, classes: Sequence[int], counts: Sequence[int],
                   rng: np.random.Generator) -> list[np.ndarray]:
    """Disjoint draws of ``counts[j]`` indices per class, one index array per entry of ``counts``.

    Each array lists the classes in order (its labels are ``np.repeat(range(len(classes)), counts[j])``).
    """
    labels = np.asarray(labels)
    out: list[list[np.ndarray]] = [[] for _ in counts]
    for c in classes:
        idx = rng.permutation(np.flatnonzero(labels == c))
        if sum(counts) > len(idx):
            raise DataError(f"the source has {len(idx)} images of class {c} but {sum(counts)} were asked for "
                            f"({' + '.join(map(str, counts))}); ask for fewer per class")
        start = 0
        for j, n in enumerate(counts):
            out[j].append(idx[start:start + n])
            start += n
    return [np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64) for parts in out]


def confound(labels: np.ndarray, n_values: int, agreement: float, rng: np.random.Generator) -> np.ndarray:
    """A confounder's value per sample: the label's own with probability ``agreement``, else one of the
    other ``n_values - 1`` values uniformly (``agreement = 1 / n_values`` makes it independent of the label).

    Returns an int64 array of shape (n,).
    """
    if not 0.0 <= agreement <= 1.0:
        raise DataError(f"agreement={agreement} is not a probability; choose a value in [0, 1]")
    labels = np.asarray(labels, dtype=np.int64)
    agree = rng.random(len(labels)) < agreement
    other = (labels + rng.integers(1, max(2, n_values), len(labels))) % n_values
    return np.where(agree, labels, other)


def decoy_shades(n_classes: int) -> np.ndarray:
    """The patch shade of each class: Ross et al.'s 255 - 25 * y, with y spread over 0..9 for the classes used."""
    if n_classes < 2:
        raise DataError(f"a decoy needs at least 2 classes, got {n_classes}")
    y = np.round(np.arange(n_classes) * 9 / (n_classes - 1))
    return (255 - 25 * y).astype(np.uint8)


def ring_glyph(size: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """A ring with a dark centre, so it shows on a bright garment as well as on the black background.

    Returns
    -------
    values : uint8 array of shape (size, size): 255 on the ring, 0 inside
    stamped : bool array of shape (size, size): the pixels the glyph sets (the ring and its inside)
    """
    from soxai.data.artifacts import artifact_pattern
    from soxai.data.config import ArtifactConfig

    ring = artifact_pattern(ArtifactConfig(shape="ring", size=size))
    yy, xx = np.mgrid[0:size, 0:size]
    centre = (size - 1) / 2
    stamped = np.hypot(yy - centre, xx - centre) <= size / 2
    return np.where(ring, 255, 0).astype(np.uint8), stamped


def lower_third_rows(height: int, size: int) -> tuple[int, int]:
    """The range [lo, hi] of a glyph's top row that keeps the whole glyph in the image's lower third."""
    lo = -(-2 * height // 3)  # ceil(2H / 3)
    if lo + size > height:
        raise DataError(f"a {size}x{size} glyph does not fit in the lower third of a {height}-row image; "
                        "use a smaller glyph")
    return lo, height - size


def stamp(images: np.ndarray, values: np.ndarray, mask: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """A copy of ``images`` (n, H, W[, C]) with ``values`` (h, w) set where ``mask`` at top-left (ys[i], xs[i])."""
    out = images.copy()
    h, w = values.shape
    for i, (y, x) in enumerate(zip(ys, xs, strict=True)):
        patch = out[i, y:y + h, x:x + w]
        patch[mask] = values[mask] if patch.ndim == 2 else values[mask][:, None]
    return out


def random_streams(seed: int, salt: int, n: int = 3) -> list[np.random.Generator]:
    return [np.random.default_rng(s) for s in np.random.SeedSequence([seed, salt]).spawn(n)]


def concat_parts(parts: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]]):
    """(split, images, labels, groups, truth) parts -> the arrays of a PlantedSet."""
    images = np.concatenate([p[1] for p in parts])
    labels = np.concatenate([p[2] for p in parts]).astype(np.int64)
    splits = np.concatenate([np.full(len(p[2]), p[0], dtype=object) for p in parts])
    groups = np.concatenate([np.asarray(p[3], dtype=object) for p in parts])
    keys = parts[0][4].keys()
    truth = {k: np.concatenate([p[4][k] for p in parts]) for k in keys}
    return images, labels, splits, groups, truth


def fashion_names(classes: Sequence[int]) -> list[str]:
    """Fashion-MNIST's names of source labels (the label itself for one outside 0..9)."""
    return [FASHION_CLASSES[int(c)] if 0 <= int(c) < len(FASHION_CLASSES) else str(c) for c in classes]


def agreement_groups(confounder: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.where(np.asarray(confounder) == np.asarray(labels), "aligned", "conflict").astype(object)
