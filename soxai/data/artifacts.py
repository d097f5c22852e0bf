"""Planting a small mark (the artifact) into images: the shortcut that soxai must find.

The mark is a fixed binary pattern painted in one grey value on every channel, placed in a corner
with a small margin (square, cross, ring, stripe, texture), a line along the whole top or bottom
edge (border), or a blend of the whole image towards one grey value (tint).
:func:`artifact_boxes` gives where each mark goes, :func:`artifact_pattern` which pixels of that box
are painted, and :func:`paste_artifact` paints them into a copy.
"""

from __future__ import annotations

import numpy as np

from soxai.data.config import ArtifactConfig
from soxai.errors import DataError

CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")


def artifact_pattern(spec: ArtifactConfig) -> np.ndarray:
    """The painted pixels of the mark, cropped to the mark itself.

    Parameters
    ----------
    spec : ArtifactConfig
        The artifact's shape and size.

    Returns
    -------
    pattern : ndarray of shape (h, w), bool
        ``(size, size)`` for square, cross and ring; ``(thickness, size)`` for the horizontal stripe
        (thickness ``max(1, round(size / 3))``), so that the box always hugs the painted pixels.
    """
    s = spec.size
    # Line thickness grows with the mark so that a large cross or ring stays visible after resizing.
    thick = max(1, round(s / 5))
    if spec.shape == "square":
        return np.ones((s, s), dtype=bool)
    if spec.shape == "cross":
        pattern = np.zeros((s, s), dtype=bool)
        c0 = (s - thick) // 2
        pattern[c0 : c0 + thick, :] = True
        pattern[:, c0 : c0 + thick] = True
        return pattern
    if spec.shape == "ring":
        yy, xx = np.mgrid[0:s, 0:s]
        centre = (s - 1) / 2
        dist = np.hypot(yy - centre, xx - centre)
        return (dist <= s / 2) & (dist >= s / 2 - thick)
    if spec.shape == "stripe":
        return np.ones((max(1, round(s / 3)), s), dtype=bool)
    if spec.shape == "texture":
        # a checkerboard: a texture, not a blob, so it differs from the square in what, not only where
        yy, xx = np.mgrid[0:s, 0:s]
        return (yy + xx) % 2 == 0
    if spec.shape in ("border", "tint"):
        raise DataError(f"the {spec.shape!r} artifact spans the image; its pattern depends on the image size "
                        "(use artifact_boxes and paste_artifact)")
    raise DataError(
        f"unknown artifact shape {spec.shape!r}; expected one of square, cross, ring, stripe, texture, border, tint"
    )


def _margin(height: int, width: int) -> int:
    # Keep the mark off the border (where padding and resizing smear it) but inside the corner.
    return 1 if min(height, width) < 16 else 2


def artifact_boxes(
    n_images: int, height: int, width: int, spec: ArtifactConfig, rng: np.random.Generator
) -> np.ndarray:
    """Where the mark lands in each of ``n_images`` images.

    ``rng`` is used only for ``position='random'`` (one corner per image, drawn with a single
    ``rng.integers`` call), so a generator in the same state as the one passed to
    :func:`paste_artifact` reproduces its boxes.

    Parameters
    ----------
    n_images : int
        Number of images.
    height, width : int
        Image size in pixels.
    spec : ArtifactConfig
        The artifact.
    rng : numpy.random.Generator
        Draws the corners when the position is 'random'.

    Returns
    -------
    boxes : ndarray of shape (n_images, 4), int64
        ``(y0, x0, y1, x1)`` per image, end-exclusive, tight around the painted pixels.

    Raises
    ------
    DataError
        When the mark plus its margin does not fit into the image.
    """
    if spec.shape in ("border", "tint"):
        thick = height if spec.shape == "tint" else max(1, spec.size // 3)
        if spec.position == "random":
            bottom = rng.integers(0, len(CORNERS), size=n_images) >= 2
        else:
            bottom = np.full(n_images, spec.position.startswith("bottom"))
        y0 = np.where(bottom, height - thick, 0)
        return np.stack([y0, np.zeros(n_images), y0 + thick, np.full(n_images, width)], axis=1).astype(np.int64)
    ph, pw = artifact_pattern(spec).shape
    margin = _margin(height, width)
    if ph + 2 * margin > height or pw + 2 * margin > width:
        raise DataError(
            f"an artifact of size {spec.size} does not fit into {height}x{width} images "
            f"(a {margin}-pixel margin on each side); "
            f"set data.artifact.size <= {min(height, width) - 2 * margin}"
        )
    if spec.position == "random":
        corners = rng.integers(0, len(CORNERS), size=n_images)
    else:
        corners = np.full(n_images, CORNERS.index(spec.position))
    bottom = np.isin(corners, (2, 3))
    right = np.isin(corners, (1, 3))
    y0 = np.where(bottom, height - margin - ph, margin)
    x0 = np.where(right, width - margin - pw, margin)
    return np.stack([y0, x0, y0 + ph, x0 + pw], axis=1).astype(np.int64)


def paste_artifact(
    images: np.ndarray, spec: ArtifactConfig, rng: np.random.Generator, *, boxes: np.ndarray | None = None
) -> np.ndarray:
    """Paint the mark into a copy of a batch of images.

    Parameters
    ----------
    images : ndarray of shape (n_images, channels, height, width)
        Images in [0, 1]; left unchanged.
    spec : ArtifactConfig
        The mark: its shape, size, grey value (``intensity``, the same on every channel) and position.
    rng : numpy.random.Generator
        Draws the corner of each image when the position is 'random' (see :func:`artifact_boxes`).
    boxes : ndarray of shape (n_images, 4), optional
        Boxes from :func:`artifact_boxes` to paint into instead of drawing new ones.

    Returns
    -------
    marked : ndarray of shape (n_images, channels, height, width)
        A copy of ``images`` (same dtype) with the mark painted in.
    """
    if images.ndim != 4:
        raise DataError(f"paste_artifact expects images of shape (N, C, H, W), got shape {images.shape}")
    n, _, height, width = images.shape
    if boxes is None:
        boxes = artifact_boxes(n, height, width, spec, rng)
    marked = images.copy()
    value = np.asarray(spec.intensity, dtype=images.dtype)
    if spec.shape == "tint":
        marked[:] = (1 - spec.strength) * marked + spec.strength * value
        return marked
    pattern = None if spec.shape == "border" else artifact_pattern(spec)
    # Few distinct corners, so paint one corner group at a time with a broadcast where().
    for box in np.unique(boxes, axis=0):
        y0, x0, y1, x1 = (int(v) for v in box)
        idx = np.flatnonzero((boxes == box).all(axis=1))
        region = marked[idx, :, y0:y1, x0:x1]
        marked[idx, :, y0:y1, x0:x1] = value if pattern is None else np.where(pattern, value, region)
    return marked
