"""The in-memory dataset every source produces, and the checks common to all.

The sources (``soxai.data.cells``, ``digits``, ``mnist``, ``manifest_source``, ``image_folder``) build a
:class:`Dataset` from this module; their registry and :func:`soxai.data.sources.build_dataset` sit above
them in :mod:`soxai.data.sources`, so this module imports no source.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from soxai.data.artifacts import paste_artifact
from soxai.data.config import ArtifactConfig
from soxai.errors import DataError

TRAIN_SPLIT = "train"
VAL_SPLIT = "val"
SAMPLE_COLUMNS = ("sample_id", "split", "label", "source", "row", "group")


@dataclass
class Dataset:
    """Images, labels and splits of one run, joined on ``sample_id``.

    Attributes
    ----------
    samples : pandas.DataFrame
        One row per sample, columns ``sample_id`` (str, unique), ``split`` (str; every split other
        than 'train' and 'val' is an evaluation set), ``label`` (int64 in ``0..n_classes-1``),
        ``source`` (str, the data source name), ``row`` (int64, index into ``images``), ``group``
        (str: 'artifact' / 'clean' for built-in sources, the user's group or missing for manifests);
        manifests add ``path`` and, when given, ``mask_path``. ``group`` and masks are for
        evaluation only.
    images : ndarray of shape (n_samples, channels, height, width), float32
        Pixel values in [0, 1]. The image_folder source gives an array-like instead
        (:class:`soxai.data.image_folder.ImageFiles`) that decodes the rows it is indexed with.
    masks : ndarray of shape (n_samples, height, width), bool, or None
        Ground-truth relevance: True where the pixels decide the class. None when unknown.
    class_names : list of str
        Name of each label value, ``class_names[label]``.
    unmarked_rows : int64 ndarray of shape (k,), or None
        Built-in sources: the rows of the training images that carry the planted artifact.
    unmarked : ndarray of shape (k, channels, height, width), float32, or None
        The same images before the artifact was planted (what the oracle trains on). Evaluation
        only, like ``group``: no method may read them.
    """

    samples: pd.DataFrame
    images: np.ndarray
    masks: np.ndarray | None
    class_names: list[str]
    unmarked_rows: np.ndarray | None = None
    unmarked: np.ndarray | None = None

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def splits(self) -> list[str]:
        """Split names in order of first appearance."""
        return list(pd.unique(self.samples["split"]))

    def split_rows(self, split: str) -> np.ndarray:
        """Rows into ``images`` (int64 array of shape (n,)) of the samples in ``split``."""
        return self.samples.loc[self.samples["split"] == split, "row"].to_numpy(dtype=np.int64)

    def split_arrays(self, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(sample_ids, images, labels)`` of one split.

        Returns
        -------
        sample_ids : ndarray of shape (n,), object (str)
        images : ndarray of shape (n, channels, height, width), float32
        labels : ndarray of shape (n,), int64
        """
        sel = self.samples[self.samples["split"] == split]
        rows = sel["row"].to_numpy(dtype=np.int64)
        # Copies: pandas hands out read-only views, which torch.from_numpy warns about.
        return (
            np.array(sel["sample_id"].astype(str), dtype=object),
            self.images[rows],
            np.array(sel["label"], dtype=np.int64),
        )


def _preview(values: list, limit: int = 5) -> str:
    shown = ", ".join(str(v) for v in values[:limit])
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else f" ({len(values)} in all)")


def validate_dataset(ds: Dataset) -> None:
    """Checks every source must pass, whatever it reads.

    Parameters
    ----------
    ds : Dataset
        The dataset to check.

    Raises
    ------
    DataError
        Naming what is wrong and how to fix it: missing columns, rows out of range, array
        shapes, no train samples, fewer than two classes in train, a declared class without
        training samples, no evaluation split other than val, evaluation labels that never occur
        in train, labels outside ``class_names``, NaN/inf pixels, duplicate sample_ids.
    """
    _check_table_and_shapes(ds)
    _check_labels(ds)
    _check_splits(ds)
    _check_pixels(ds)


def _check_table_and_shapes(ds: Dataset) -> None:
    """Columns, rows into the images, the images' and masks' shapes, unique sample ids."""
    samples = ds.samples
    missing = [c for c in SAMPLE_COLUMNS if c not in samples.columns]
    if missing:
        raise DataError(
            f"the samples table lacks columns {missing} (found {list(samples.columns)}); "
            "a data source must provide " + ", ".join(SAMPLE_COLUMNS)
        )
    if ds.images.ndim != 4:
        raise DataError(f"images must have shape (N, C, H, W), got shape {ds.images.shape}")
    n_images = ds.images.shape[0]
    rows = samples["row"].to_numpy()
    if len(rows) and (rows.min() < 0 or rows.max() >= n_images):
        raise DataError(
            f"samples.row must index into {n_images} images, got values {rows.min()}..{rows.max()}"
        )
    if ds.masks is not None and ds.masks.shape != (n_images, *ds.images.shape[2:]):
        raise DataError(
            f"masks must have shape (N, H, W) = {(n_images, *ds.images.shape[2:])}, got {ds.masks.shape}"
        )
    dup = samples["sample_id"][samples["sample_id"].duplicated(keep=False)]
    if len(dup):
        raise DataError(
            f"sample_id must be unique; duplicated: {_preview(sorted(set(dup.astype(str))))}; "
            "give every sample its own sample_id (or leave the column out to use the path)"
        )


def _check_labels(ds: Dataset) -> None:
    """Labels inside ``class_names``."""
    labels = ds.samples["label"].to_numpy()
    bad = (labels < 0) | (labels >= ds.n_classes)
    if bad.any():
        raise DataError(
            f"labels must lie in 0..{ds.n_classes - 1} ({ds.n_classes} class names), got "
            f"{_preview(sorted(set(labels[bad].tolist())))}; fix the labels or the class names"
        )


def _check_splits(ds: Dataset) -> None:
    """A train split of at least two classes holding every declared class, an evaluation split, and no
    evaluation label unseen in train."""
    samples = ds.samples
    train = samples[samples["split"] == TRAIN_SPLIT]
    found = sorted(set(samples["split"].astype(str)))
    if train.empty:
        raise DataError(
            f"there are no samples in the 'train' split (found splits: {found}); "
            "mark the training samples with split=train"
        )
    train_labels = set(train["label"].tolist())
    if len(train_labels) < 2:
        only = ds.class_names[next(iter(train_labels))]
        raise DataError(
            f"the 'train' split holds only one class ({only!r}); a classifier needs at least two, "
            "add training samples of another class"
        )
    evaluation = samples[samples["split"] != TRAIN_SPLIT]
    unseen = evaluation[~evaluation["label"].isin(train_labels)]
    if len(unseen):
        parts = []
        for split, grp in unseen.groupby("split", sort=True):
            counts = grp["label"].value_counts().sort_index()
            classes = ", ".join(f"{n} of class {ds.class_names[label]!r}" for label, n in counts.items())
            parts.append(f"split {split!r}: {classes}")
        raise DataError(
            f"{len(unseen)} sample(s) outside 'train' have labels that never occur in 'train' "
            f"({'; '.join(parts)}); "
            "add training samples of those classes or drop them from the evaluation splits"
        )
    untrained = [name for label, name in enumerate(ds.class_names) if label not in train_labels]
    if untrained:
        # a declared class the model is never shown: an output that can only be wrong, and per-class results
        # (the manifest's empty-class guard among them) that see a class vanish
        raise DataError(
            f"class(es) {untrained} have no training samples ({ds.n_classes} classes declared: "
            f"{list(ds.class_names)}); add training samples of those classes or number the classes without them"
        )
    if not any(s not in (TRAIN_SPLIT, VAL_SPLIT) for s in found):
        raise DataError(
            f"there is no evaluation split (found splits: {found}); the comparison and the report need a test "
            "split: mark held-out samples with split=test (or test_<name>); val is used for model selection only"
        )


def _check_pixels(ds: Dataset) -> None:
    """Finite pixels in [0, 1], for images held in memory."""
    if not isinstance(ds.images, np.ndarray):
        # Images read lazily from 8-bit files (soxai.data.image_folder) are finite and in [0, 1] by
        # construction; checking here would decode the whole dataset.
        return
    samples, n_images = ds.samples, ds.images.shape[0]
    # Reduce per image so that a large dataset never needs a second full-size boolean array.
    finite = np.array([np.isfinite(img).all() for img in ds.images], dtype=bool).reshape(n_images)
    if not finite.all():
        raise DataError(
            f"images contain NaN or inf pixels: {_preview(_ids_of_rows(samples, ~finite))}; "
            "fix or drop those images"
        )
    in_range = np.array([0 <= im.min() and im.max() <= 1 for im in ds.images], dtype=bool).reshape(n_images)
    if not in_range.all():
        raise DataError(
            f"pixel values must lie in [0, 1]; outside in {_preview(_ids_of_rows(samples, ~in_range))}; "
            "scale the images to [0, 1] (8-bit images: divide by 255)"
        )


def _ids_of_rows(samples: pd.DataFrame, flagged: np.ndarray) -> list[str]:
    """sample_ids of the rows whose image is flagged (``flagged`` of shape (n_images,), bool)."""
    return samples.loc[samples["row"].isin(np.flatnonzero(flagged)), "sample_id"].astype(str).tolist()


# (split, images, labels, masks or None, group) of one split, in row order
_Part = tuple[str, np.ndarray, np.ndarray, "np.ndarray | None", np.ndarray]


def dataset_from_clean_splits(
    source: str,
    splits: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]],
    class_names: list[str],
    artifact: ArtifactConfig | None,
    rng: np.random.Generator,
) -> Dataset:
    """Plant the artifact into clean train/val/test splits the way every built-in source does.

    In 'train' and 'val', ``round(artifact.rate * n)`` (at least one) of the ``n`` images of
    ``artifact.target_class`` get the mark (group 'artifact'), chosen at random; every other image
    is 'clean'. 'test' stays clean. 'test_attacked' holds the test images of every other class with
    the mark pasted (all 'artifact'). With no artifact nothing is planted and there is no
    'test_attacked'. Masks are never changed by the mark.

    Parameters
    ----------
    source : str
        The source name ('cells', 'digits'); also the prefix of ``sample_id``
        (``f"{source}-{split}-{i:06d}"``).
    splits : dict of str to (images, labels, masks)
        Clean 'train', 'val' and 'test': images of shape (n, channels, height, width) float32,
        labels of shape (n,) int64, masks of shape (n, height, width) bool or None.
    class_names : list of str
        One name per class.
    artifact : ArtifactConfig or None
        The mark to plant.
    rng : numpy.random.Generator
        Picks which images get the mark and, for position 'random', where.

    Returns
    -------
    Dataset
    """
    if artifact is not None and artifact.target_class >= len(class_names):
        raise DataError(
            f"data.artifact.target_class={artifact.target_class} but the {source!r} source has "
            f"{len(class_names)} classes; set data.artifact.target_class to 0..{len(class_names) - 1}"
        )
    has_masks = all(m is not None for _, _, m in splits.values())
    unmarked_rows, unmarked = np.zeros(0, dtype=np.int64), None
    parts: list[_Part] = []
    for split in (TRAIN_SPLIT, VAL_SPLIT, "test"):
        part, chosen = _plant_split(split, *splits[split], artifact, rng)
        if split == TRAIN_SPLIT and chosen is not None:  # train comes first, so its positions are its rows
            unmarked_rows, unmarked = chosen.astype(np.int64), splits[split][0][chosen].astype(np.float32)
        parts.append(part)
    if artifact is not None:
        parts.append(_attacked_split(parts[-1], artifact, rng))
    return Dataset(
        samples=_samples_table(source, parts),
        images=np.concatenate([p[1] for p in parts]).astype(np.float32, copy=False),
        masks=np.concatenate([p[3] for p in parts]).astype(bool, copy=False) if has_masks else None,
        class_names=list(class_names),
        unmarked_rows=unmarked_rows if unmarked is not None else None,
        unmarked=unmarked,
    )


def _plant_split(split: str, images: np.ndarray, labels: np.ndarray, masks: np.ndarray | None,
                 artifact: ArtifactConfig | None, rng: np.random.Generator) -> tuple[_Part, np.ndarray | None]:
    """One clean split with the mark pasted into a share of the target class (not in 'test').

    Returns the split and the positions that got the mark (None when nothing was planted).
    """
    group = np.full(len(labels), "clean", dtype=object)
    if artifact is None or split == "test":
        return (split, images, labels, masks, group), None
    target = np.flatnonzero(labels == artifact.target_class)
    n_marked = min(len(target), max(1, round(artifact.rate * len(target)))) if len(target) else 0
    chosen = np.sort(rng.choice(target, size=n_marked, replace=False))
    images = images.copy()
    images[chosen] = paste_artifact(images[chosen], artifact, rng)
    group[chosen] = "artifact"
    return (split, images, labels, masks, group), chosen


def _attacked_split(test: _Part, artifact: ArtifactConfig, rng: np.random.Generator) -> _Part:
    """'test_attacked': the test images of every class but the target, all with the mark."""
    _, images, labels, masks, _ = test
    other = np.flatnonzero(labels != artifact.target_class)
    return (
        "test_attacked",
        paste_artifact(images[other], artifact, rng),
        labels[other],
        None if masks is None else masks[other],
        np.full(len(other), "artifact", dtype=object),
    )


def _samples_table(source: str, parts: list[_Part]) -> pd.DataFrame:
    """The samples table of the parts in order: ``row`` counts on across the splits."""
    frames = []
    offset = 0
    for split, _, labels, _, group in parts:
        n = len(labels)
        frames.append(pd.DataFrame({
            "sample_id": [f"{source}-{split}-{i:06d}" for i in range(n)],
            "split": split,
            "label": labels.astype(np.int64),
            "source": source,
            "row": np.arange(offset, offset + n, dtype=np.int64),
            "group": group.astype(str),
        }))
        offset += n
    return pd.concat(frames, ignore_index=True)
