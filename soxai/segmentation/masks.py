"""Reading a user's segmentation masks: one PNG per image, one class id per pixel, checked before any use.

The files a manifest's ``mask_path`` column (or a ``masks/`` folder beside an image folder) names are read here.
Every problem names the file and the fix: a path outside the data's folder, a file that is not an image, a colour
image (a mask holds one label per pixel: a grey or palette PNG), a size other than its image's, a label outside
``0..n_classes-1``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from soxai.errors import DataError


def resolve_mask_path(raw: str, root: Path) -> Path:
    """``raw`` resolved against ``root``; it must stay inside ``root`` (no ``..`` or absolute path leaving it)."""
    root = Path(root).resolve()
    path = (root / raw).resolve()
    if not path.is_relative_to(root):
        raise DataError(f"mask {raw!r} resolves to {path}, outside the data's folder {root}; masks must lie in "
                        "that folder (give paths relative to it)")
    return path


def read_label_mask(path: Path, image_shape: tuple[int, int], n_classes: int, name: str | None = None) -> np.ndarray:
    """One mask as a uint8 array of shape ``image_shape`` (H, W) with values in ``0..n_classes-1``.

    Raises
    ------
    DataError
        Naming the file: unreadable, more than one channel, another size than its image, labels out of range.
    """
    from soxai.data.images import describe_error, open_image, unreadable_errors

    name = name or str(path)
    try:
        with open_image(path) as im:
            mode = im.mode
            if mode not in ("L", "P", "I", "I;16", "1"):
                raise DataError(f"mask {name} is a {mode} image; a mask holds one class id per pixel: save it as "
                                "a single-channel (grey or palette) PNG whose pixel values are the class ids")
            values = np.asarray(im)
    except unreadable_errors() as exc:
        raise DataError(f"mask {name} cannot be read as an image ({describe_error(exc)}); fix or replace the file") \
            from None
    if values.shape != tuple(image_shape):
        raise DataError(f"mask {name} is {values.shape[1]}x{values.shape[0]} pixels but its image is "
                        f"{image_shape[1]}x{image_shape[0]}; masks must have their image's size")
    bad = np.unique(values[(values < 0) | (values >= n_classes)])
    if len(bad):
        shown = ", ".join(str(int(v)) for v in bad[:5])
        raise DataError(f"mask {name} has label values {shown} outside 0..{n_classes - 1} ({n_classes} classes); "
                        "fix the mask, or set model.num_classes to the number of classes the masks use")
    return values.astype(np.uint8)


def read_label_masks(raw_paths: list[str], root: Path, image_shape: tuple[int, int], n_classes: int) -> np.ndarray:
    """The masks ``raw_paths`` name (relative to ``root``), stacked: uint8 array of shape (n, H, W)."""
    out = np.zeros((len(raw_paths), *image_shape), dtype=np.uint8)
    for i, raw in enumerate(raw_paths):
        out[i] = read_label_mask(resolve_mask_path(raw, root), image_shape, n_classes, name=raw)
    return out
