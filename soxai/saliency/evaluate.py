"""Kernels that score saliency maps: against ground-truth masks, and by perturbing the model's input.

Localisation (needs a mask of the pixels that carry the class evidence):

- `relevance_mass_accuracy`: share of the relevance that lies inside the mask;
- `relevance_rank_accuracy`: share of the top-K pixels that lie inside the mask, K = mask size;
- `pointing_game`: whether the most relevant pixel lies in the (slightly dilated) mask.

These three follow Arras et al. 2022, "CLEVR-XAI: a benchmark dataset for the ground truth
evaluation of neural network explanations" (mass and rank accuracy), and Zhang et al. 2018
(pointing game). Relevance is ``|map|``: the channel reduction of the saliency stage already
decides about the sign, and a strongly negative pixel is as much "looked at" as a positive one.

Faithfulness (needs only the model): `deletion_insertion_auc` removes (adds) pixels in order of
relevance and follows the probability of the explained class (Petsiuk et al. 2018, RISE).

Conventions shared by every kernel, so that no method profits from a degenerate map:

- a sample whose mask is empty has no answer: its score is NaN, and an `EmptyMaskWarning` says how
  many there were;
- ties are broken at random, in expectation: a map that is all zeros (Grad-CAM's, when the
  ReLU removes everything) or constant scores what a random guess scores (the mask's share of
  the image), not 0, not 1, and not whatever pixel happens to come first;
- values that are not finite count as no relevance (0).

Everything here is numpy; nothing imports torch. Scores are float64 arrays of shape (n_samples,).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from soxai.errors import ConfigError, DataError

TIE_BREAK_SEED = 0
"""Seed of the fixed pixel permutation that orders pixels of equal relevance in deletion/insertion."""


class EmptyMaskWarning(UserWarning):
    """Some samples have an empty ground-truth mask; their localisation scores are NaN."""


class DeletionInsertion(NamedTuple):
    """Result of `deletion_insertion_auc`.

    Attributes
    ----------
    deletion_auc : ndarray of shape (n_samples,), float64
        Area under the deletion curve in [0, 1]; lower is better.
    insertion_auc : ndarray of shape (n_samples,), float64
        Area under the insertion curve in [0, 1]; higher is better.
    deletion_curve : ndarray of shape (n_samples, steps + 1), float64
        Probability of the target class after deleting 0, 1, ..., ``steps`` chunks.
    insertion_curve : ndarray of shape (n_samples, steps + 1), float64
        Probability of the target class after inserting 0, 1, ..., ``steps`` chunks.
    """

    deletion_auc: np.ndarray
    insertion_auc: np.ndarray
    deletion_curve: np.ndarray
    insertion_curve: np.ndarray


def relevance_mass_accuracy(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Share of the relevance ``|map|`` that falls inside the mask, per sample.

    Parameters
    ----------
    maps : ndarray of shape (n_samples, height, width)
        Saliency maps; only ``|map|`` is used.
    masks : ndarray of shape (n_samples, height, width), bool
        Ground-truth relevance (nonzero = relevant).

    Returns
    -------
    ndarray of shape (n_samples,), float64
        In [0, 1]; 1.0 when all relevance is inside the mask. A map with no relevance at all scores
        the mask's share of the image (the score of a uniform map). NaN where the mask is empty.
    """
    relevance, masks = _relevance_and_masks(maps, masks)
    size = masks.sum(axis=1)
    total = relevance.sum(axis=1)
    inside = np.where(masks, relevance, 0.0).sum(axis=1)
    chance = size / masks.shape[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(total > 0, inside / np.where(total > 0, total, 1.0), chance)
    return _exclude_empty(score, size, "relevance_mass_accuracy")


def relevance_rank_accuracy(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Of the K most relevant pixels (K = the mask's size), the share inside the mask, per sample.

    Pixels tied with the K-th most relevant one share the remaining places in proportion, which is
    the expected score under a random tie-break.

    Parameters
    ----------
    maps : ndarray of shape (n_samples, height, width)
        Saliency maps; pixels are ranked by ``|map|``.
    masks : ndarray of shape (n_samples, height, width), bool
        Ground-truth relevance (nonzero = relevant).

    Returns
    -------
    ndarray of shape (n_samples,), float64
        In [0, 1]; 1.0 when the top-K pixels are exactly the mask. NaN where the mask is empty.
    """
    relevance, masks = _relevance_and_masks(maps, masks)
    size = masks.sum(axis=1)
    n_pixels = masks.shape[1]
    ordered = -np.sort(-relevance, axis=1)
    # The K-th largest relevance of each sample (K >= 1; empty masks are replaced by NaN below).
    kth = ordered[np.arange(len(size)), np.clip(size - 1, 0, n_pixels - 1)][:, None]
    above = relevance > kth
    tied = relevance == kth
    hits_above = (above & masks).sum(axis=1)
    n_tied = tied.sum(axis=1)
    places = size - above.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        hits_tied = places * (tied & masks).sum(axis=1) / np.maximum(n_tied, 1)
        score = (hits_above + hits_tied) / size
    return _exclude_empty(score, size, "relevance_rank_accuracy")


def pointing_game(maps: np.ndarray, masks: np.ndarray, tolerance_px: int = 1) -> np.ndarray:
    """Whether the most relevant pixel lies within ``tolerance_px`` pixels of the mask, per sample.

    The mask is dilated by a disc of radius ``tolerance_px`` (Euclidean distance; 0 = no dilation).
    When several pixels share the maximum, the score is the share of them that hit, which is the
    expected hit under a random choice among them.

    Parameters
    ----------
    maps : ndarray of shape (n_samples, height, width)
        Saliency maps; the maximum of ``|map|`` is the pointed pixel.
    masks : ndarray of shape (n_samples, height, width), bool
        Ground-truth relevance (nonzero = relevant).
    tolerance_px : int, default 1
        Radius in pixels of the dilation of the mask.

    Returns
    -------
    ndarray of shape (n_samples,), float64
        1.0 for a hit, 0.0 for a miss (a fraction only on ties). NaN where the mask is empty.
    """
    if int(tolerance_px) != tolerance_px or tolerance_px < 0:
        raise ConfigError(f"tolerance_px must be a whole number of pixels >= 0; got {tolerance_px!r}")
    relevance, flat_masks = _relevance_and_masks(maps, masks)
    size = flat_masks.sum(axis=1)
    hit_zone = _dilate(flat_masks.reshape(np.shape(maps)), int(tolerance_px)).reshape(flat_masks.shape)
    top = relevance == relevance.max(axis=1, keepdims=True)
    score = (top & hit_zone).sum(axis=1) / top.sum(axis=1)
    return _exclude_empty(score.astype(np.float64), size, "pointing_game")


def deletion_insertion_auc(
    predict_proba: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    maps: np.ndarray,
    targets: np.ndarray,
    steps: int = 16,
    baseline: float | np.ndarray = 0.0,
    *,
    batch_size: int = 256,
) -> DeletionInsertion:
    """Deletion and insertion curves and their areas, per sample.

    Pixels are ranked by ``|map|`` (ties in a fixed random order, see `TIE_BREAK_SEED`) and split
    into ``steps`` chunks of equal size (within one pixel). Deletion replaces the first 0, 1, ...,
    ``steps`` chunks of the image by ``baseline`` (every channel of a pixel at once); insertion
    starts from the baseline image and puts the same chunks back. After each step the probability
    of the target class is recorded. A faithful map makes the probability fall fast under deletion
    and rise fast under insertion.

    The area is the trapezoid rule over the fraction of pixels changed, from 0 to 1, so both areas
    lie in [0, 1] whatever ``steps`` is.

    Memory stays bounded: perturbed images are built and classified ``batch_size`` at a time over
    all (sample, step) pairs, and pixels are ranked only for the samples of the current batch.
    The unperturbed image and the full baseline image, common to both curves, are classified once.

    Parameters
    ----------
    predict_proba : callable
        Maps a float32 array of shape (n, channels, height, width) to class probabilities of shape
        (n, n_classes).
    images : ndarray of shape (n_samples, channels, height, width)
        The explained images (a memory map works: only the rows of a batch are read).
    maps : ndarray of shape (n_samples, height, width)
        Their saliency maps.
    targets : ndarray of shape (n_samples,), int
        The class each map explains.
    steps : int, default 16
        Number of chunks; the curves have ``steps + 1`` points.
    baseline : float or ndarray broadcastable to (channels, height, width), default 0.0
        Value of a deleted pixel.
    batch_size : int, default 256
        Images per call of ``predict_proba``.

    Returns
    -------
    DeletionInsertion
        Areas of shape (n_samples,) and curves of shape (n_samples, steps + 1), float64.
    """
    maps, targets, steps, fill = _checked_curve_inputs(images, maps, targets, steps, baseline, batch_size)
    n, _, height, width = np.shape(images)
    n_pixels = height * width
    # Pixels changed after step k: the first cuts[k] of the ranking. array_split's rule: equal chunks,
    # the first ones one pixel larger when n_pixels is not a multiple of steps.
    cuts = np.concatenate([[0], np.cumsum([len(c) for c in np.array_split(np.arange(n_pixels), steps)])])
    tie_break = np.random.default_rng(TIE_BREAK_SEED).permutation(n_pixels)

    classify = _classifier(predict_proba, targets)

    def proba(x: np.ndarray, target: np.ndarray) -> np.ndarray:
        return classify(x)[np.arange(len(x)), target]

    deletion = np.empty((n, steps + 1))
    insertion = np.empty((n, steps + 1))
    # The endpoints: step 0 of deletion and the last step of insertion are the image itself; the
    # last step of deletion and step 0 of insertion are the baseline image, the same for every sample.
    if n:
        base_p = classify(fill[None])[0]
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            full = proba(np.asarray(images[start:stop], dtype=np.float32), targets[start:stop])
            deletion[start:stop, 0] = insertion[start:stop, steps] = full
        deletion[:, steps] = insertion[:, 0] = base_p[targets]

    # The interior points: 2 * (steps - 1) perturbed images per sample, as one flat list of jobs.
    _interior_points(proba, images, maps, targets, fill, cuts, tie_break, batch_size, deletion, insertion)
    return DeletionInsertion(_auc(deletion), _auc(insertion), deletion, insertion)


def _interior_points(proba: Callable[[np.ndarray, np.ndarray], np.ndarray], images: np.ndarray, maps: np.ndarray,
                     targets: np.ndarray, fill: np.ndarray, cuts: np.ndarray, tie_break: np.ndarray, batch_size: int,
                     deletion: np.ndarray, insertion: np.ndarray) -> None:
    """Fill steps 1 .. steps-1 of the curves ``deletion`` and ``insertion`` (n, steps + 1) in place.

    The 2 * (steps - 1) perturbed images of every sample are one flat list of jobs, classified ``batch_size``
    at a time; pixels are ranked only for the samples of the current batch.
    """
    n, steps = deletion.shape[0], deletion.shape[1] - 1
    height, width = maps.shape[1:]
    per_sample = 2 * (steps - 1)
    n_jobs = n * per_sample
    for start in range(0, n_jobs, batch_size):
        job = np.arange(start, min(start + batch_size, n_jobs))
        sample = job // per_sample
        within = job % per_sample
        is_insertion = within >= steps - 1
        k = within % (steps - 1) + 1
        rows, local = np.unique(sample, return_inverse=True)
        rank = _pixel_rank(maps[rows], tie_break)  # (len(rows), n_pixels)
        changed = (rank[local] < cuts[k][:, None]).reshape(len(job), 1, height, width)
        original = np.asarray(images[rows], dtype=np.float32)[local]
        # Deletion puts the baseline where pixels changed; insertion puts the image there.
        x = np.where(changed != is_insertion[:, None, None, None], fill[None], original)
        p = proba(x, targets[sample])
        deletion[sample[~is_insertion], k[~is_insertion]] = p[~is_insertion]
        insertion[sample[is_insertion], k[is_insertion]] = p[is_insertion]


def _checked_curve_inputs(images: np.ndarray, maps: np.ndarray, targets: np.ndarray, steps: int,
                          baseline: float | np.ndarray, batch_size: int):
    """`deletion_insertion_auc`'s arguments checked: ``(maps, targets, steps, fill)`` as arrays, or an error.

    fill : float32 array of shape (channels, height, width), the baseline image
    """
    shape = tuple(np.shape(images))
    if len(shape) != 4:
        raise DataError(f"images must have shape (n_samples, channels, height, width); got shape {shape}")
    n, channels, height, width = shape
    maps = np.asarray(maps)
    if maps.shape != (n, height, width):
        raise DataError(f"maps must have shape (n_samples, height, width) = {(n, height, width)}; got {maps.shape}")
    targets = np.asarray(targets)
    if targets.shape != (n,) or (n and not np.issubdtype(targets.dtype, np.integer)):
        raise DataError(
            f"targets must be integer class indices of shape ({n},), one per image; "
            f"got dtype {targets.dtype} and shape {targets.shape}"
        )
    n_pixels = height * width
    if int(steps) != steps or not 1 <= steps <= n_pixels:
        raise ConfigError(f"steps must be a whole number from 1 to the number of pixels ({n_pixels}); got {steps!r}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1; got {batch_size}")
    steps = int(steps)
    try:
        fill = np.broadcast_to(np.asarray(baseline, dtype=np.float32), (channels, height, width))
    except ValueError as err:
        raise ConfigError(
            f"baseline must be a number or an array broadcastable to (channels, height, width) = "
            f"{(channels, height, width)}; got shape {np.shape(baseline)}"
        ) from err
    return maps, targets, steps, fill


def _classifier(predict_proba: Callable[[np.ndarray], np.ndarray], targets: np.ndarray):
    """``predict_proba`` as float64 probabilities, with its output's shape checked against ``targets``."""
    n = len(targets)

    def classify(x: np.ndarray) -> np.ndarray:
        p = np.asarray(predict_proba(np.ascontiguousarray(x, dtype=np.float32)))
        if p.ndim != 2 or p.shape[0] != len(x):
            raise DataError(
                f"predict_proba must return probabilities of shape (n, n_classes) = ({len(x)}, n_classes) "
                f"for {len(x)} images; got shape {p.shape}"
            )
        if n and (targets.min() < 0 or targets.max() >= p.shape[1]):
            raise DataError(
                f"targets range over [{int(targets.min())}, {int(targets.max())}] but predict_proba gives "
                f"{p.shape[1]} classes; fix the targets or the model's number of classes"
            )
        return p.astype(np.float64)

    return classify


def _auc(curve: np.ndarray) -> np.ndarray:
    """Trapezoid area of curves sampled at 0, 1/steps, ..., 1: shape (n, steps + 1) -> (n,)."""
    steps = curve.shape[1] - 1
    return (curve.sum(axis=1) - (curve[:, 0] + curve[:, -1]) / 2) / steps


def _pixel_rank(maps: np.ndarray, tie_break: np.ndarray) -> np.ndarray:
    """Rank of each pixel by decreasing ``|map|`` (0 = most relevant), ties by ``tie_break``.

    maps : (n, height, width) -> ranks (n, height * width), int64.
    """
    relevance = _finite_abs(maps).reshape(len(maps), -1)
    order = np.lexsort((np.broadcast_to(tie_break, relevance.shape), -relevance), axis=-1)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(order.shape[1])[None].repeat(len(order), axis=0), axis=1)
    return rank


def _finite_abs(maps: np.ndarray) -> np.ndarray:
    relevance = np.abs(np.asarray(maps, dtype=np.float64))
    relevance[~np.isfinite(relevance)] = 0.0
    return relevance


def _relevance_and_masks(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate shapes; return ``|maps|`` and masks flattened to (n_samples, height * width)."""
    maps = np.asarray(maps)
    masks = np.asarray(masks)
    if maps.ndim != 3:
        raise DataError(f"maps must have shape (n_samples, height, width); got shape {maps.shape}")
    if masks.shape != maps.shape:
        raise DataError(
            f"masks must have the shape of the maps, (n_samples, height, width) = {maps.shape}; "
            f"got {masks.shape}; pass the masks of the same samples, in the same order"
        )
    n = len(maps)
    return _finite_abs(maps).reshape(n, -1), (masks != 0).reshape(n, -1)


def _exclude_empty(score: np.ndarray, size: np.ndarray, kernel: str) -> np.ndarray:
    score = np.asarray(score, dtype=np.float64)
    empty = size == 0
    if empty.any():
        score = np.where(empty, np.nan, score)
        warnings.warn(
            f"{kernel}: {int(empty.sum())} of {len(size)} samples have an empty mask; their score is NaN "
            f"(excluded); drop them, or use np.nanmean to average the others",
            EmptyMaskWarning,
            stacklevel=3,
        )
    return score


def _dilate(masks: np.ndarray, radius: int) -> np.ndarray:
    """Dilate each mask of shape (n, height, width) by a disc of ``radius`` pixels."""
    if radius == 0:
        return masks
    from scipy.ndimage import binary_dilation

    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disc = (yy**2 + xx**2) <= radius**2
    # A leading axis of size 1: samples are dilated independently, never into each other.
    return binary_dilation(masks, structure=disc[None])
