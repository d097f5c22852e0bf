"""scikit-learn's bundled handwritten digits (8x8, 1,797 images) with a planted artifact.

Real images that ship offline; no relevance masks are known, so ``masks`` is None.
"""

from __future__ import annotations

import numpy as np

from soxai.data.config import DataConfig
from soxai.data.dataset import Dataset, dataset_from_clean_splits

DIGIT_CLASSES = [str(d) for d in range(10)]
SPLIT_SHARES = {"train": 0.6, "val": 0.1, "test": 0.3}


def load_digit_images(image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """All digits, scaled to [0, 1] and upsampled bilinearly.

    Parameters
    ----------
    image_size : int
        Side of the output images.

    Returns
    -------
    images : ndarray of shape (1797, 1, image_size, image_size), float32
        Values in [0, 1] (the raw values 0..16 divided by 16).
    labels : ndarray of shape (1797,), int64
    """
    import torch
    from sklearn.datasets import load_digits

    bunch = load_digits()
    raw = torch.from_numpy((bunch.images / 16.0).astype(np.float32))[:, None]
    up = torch.nn.functional.interpolate(
        raw, size=(image_size, image_size), mode="bilinear", align_corners=False
    )
    # Bilinear weights are convex, so values stay in [0, 1]; clip only float round-off.
    return up.clamp_(0.0, 1.0).numpy(), bunch.target.astype(np.int64)


def build_digits(cfg: DataConfig, seed: int) -> Dataset:
    """Digits split 60% train / 10% val / 30% test (stratified, seeded) with the artifact planted.

    The artifact follows the built-in rules of
    :func:`soxai.data.dataset.dataset_from_clean_splits`: a share ``artifact.rate`` of the target
    digit's train and val images carry it, test is clean, and 'test_attacked' holds the test images
    of the other digits with the mark pasted.

    Parameters
    ----------
    cfg : DataConfig
        Uses ``image_size``, ``noise`` (std of Gaussian pixel noise, clipped to [0, 1]) and ``artifact``.
    seed : int
        Seeds the split and the artifact placement.

    Returns
    -------
    Dataset
        Images of shape (N, 1, image_size, image_size), ``masks=None``, class names '0'..'9',
        sample ids ``digits-{split}-{i:06d}``.
    """
    from sklearn.model_selection import train_test_split

    images, labels = load_digit_images(cfg.image_size)
    if cfg.noise > 0:
        # Pixel noise makes the digits harder to read, so that a planted shortcut becomes
        # attractive to the model, as it is on real data with a weak signal.
        noise_rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
        images = np.clip(images + noise_rng.normal(0.0, cfg.noise, images.shape), 0.0, 1.0).astype(np.float32)
    index = np.arange(len(labels))
    rest, test = train_test_split(
        index, test_size=SPLIT_SHARES["test"], stratify=labels, random_state=seed
    )
    val_of_rest = SPLIT_SHARES["val"] / (SPLIT_SHARES["train"] + SPLIT_SHARES["val"])
    train, val = train_test_split(
        rest, test_size=val_of_rest, stratify=labels[rest], random_state=seed + 1
    )
    parts = {"train": train, "val": val, "test": test}
    splits = {name: (images[idx], labels[idx], None) for name, idx in parts.items()}
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
    return dataset_from_clean_splits("digits", splits, DIGIT_CLASSES, cfg.artifact, rng)
