"""A user's image folder, ``root/<split>/<class>/*.png|jpg``, read lazily from the files.

Splits are the folders ``train``, ``val``, ``test`` and ``test_*`` under the root (every split other
than train and val is an evaluation set); other folders are skipped with a warning. Class names are
the class folders' names, sorted, over all splits; a label is the position of its name. Images may
be grey or colour and of any size: each is converted to one mode (``data.color``), resized so its
shorter side is ``data.resize`` and centre-cropped to ``data.crop``; what comes out must be one
square size.

Nothing is decoded up front: :class:`ImageFiles` is an array-like of shape (N, C, H, W) that decodes
the rows it is indexed with, so 224x224 datasets never sit in memory, and later stages read the
same files through ``soxai.data.runner.read_images``.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from soxai.data.config import DataConfig
from soxai.data.dataset import TRAIN_SPLIT, VAL_SPLIT, Dataset
from soxai.data.images import describe_error, is_utf8_name, open_image, read_header, readable_name, unreadable_errors
from soxai.errors import DataError

log = logging.getLogger("soxai")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
GREY_MODES = ("L", "1", "LA", "La")
SHOW = 5


def is_split_name(name: str) -> bool:
    return name in (TRAIN_SPLIT, VAL_SPLIT, "test") or name.startswith("test_")


def output_size(width: int, height: int, resize: int | None, crop: int | None) -> tuple[int, int]:
    """(width, height) of an image of ``width`` x ``height`` after the resize and the crop."""
    if resize is not None:
        scale = resize / min(width, height)
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
    if crop is not None:
        width, height = crop, crop
    return width, height


def load_image(path: Path, mode: str, resize: int | None, crop: int | None) -> np.ndarray:
    """One image as float32 of shape (C, H, W) in [0, 1]: converted to ``mode``, resized, centre-cropped."""
    from PIL import Image

    with open_image(path) as im:
        im = im.convert(mode)
        w, h = im.size
        if resize is not None:
            im = im.resize(output_size(w, h, resize, None), Image.Resampling.BILINEAR)
            w, h = im.size
        if crop is not None:
            if crop > w or crop > h:
                raise DataError(f"{path} is {w}x{h} after resizing, smaller than data.crop={crop}; "
                                f"set data.resize to at least {crop} or lower data.crop")
            left, top = (w - crop) // 2, (h - crop) // 2
            im = im.crop((left, top, left + crop, top + crop))
        arr = np.asarray(im, dtype=np.float32) / 255.0
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


class ImageFiles:
    """Images decoded from files when indexed: an array-like of shape (N, C, H, W), float32 in [0, 1].

    ``images[i]`` gives one image of shape (C, H, W); an int array, a list, a slice or a boolean mask
    gives a stacked ndarray of shape (k, C, H, W). It pickles as its file list (for DataLoader workers).

    Parameters
    ----------
    root : the image folder; ``paths`` are relative to it
    paths : one path per row, in row order
    mode : 'L' (one channel) or 'RGB' (three)
    resize, crop : as ``data.resize`` / ``data.crop``
    size : (height, width) every image has after the transforms
    """

    dtype = np.dtype(np.float32)
    ndim = 4

    def __init__(self, root: str | Path, paths: list[str], mode: str, resize: int | None, crop: int | None,
                 size: tuple[int, int]) -> None:
        self.root = Path(root)
        self.paths = list(paths)
        self.mode, self.resize, self.crop = mode, resize, crop
        self.shape = (len(self.paths), 1 if mode == "L" else 3, int(size[0]), int(size[1]))

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return f"ImageFiles({str(self.root)!r}, n={len(self)}, shape={self.shape})"

    def _load(self, i: int) -> np.ndarray:
        path = self.root / self.paths[i]
        try:
            img = load_image(path, self.mode, self.resize, self.crop)
        except unreadable_errors() as exc:
            # the data stage read its header (and a PNG's chunks), not every pixel: a file damaged since, or a JPEG
            # damaged inside its pixel data, fails only here
            raise DataError(f"image {path} cannot be read ({describe_error(exc)}); replace or remove the file, then "
                            "run again (the data stage reads the folder anew when a file changes)") from None
        if img.shape != self.shape[1:]:
            raise DataError(f"image {path} gives shape {img.shape}, not {self.shape[1:]} like the others; "
                            "the file changed since the data stage: re-run it")
        return img

    def __getitem__(self, item: Any) -> np.ndarray:
        if isinstance(item, tuple):
            head = self[item[0]]
            rest = item[1:]
            return head[rest] if isinstance(item[0], (int, np.integer)) else head[(slice(None), *rest)]
        if isinstance(item, (int, np.integer)):
            return self._load(int(item) % len(self) if item < 0 else int(item))
        idx = np.arange(len(self))[item]
        out = np.empty((len(idx), *self.shape[1:]), dtype=np.float32)
        for j, i in enumerate(idx):
            out[j] = self._load(int(i))
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def describe(self) -> dict[str, Any]:
        """What ``data/info.json`` records to rebuild this view (with the paths of samples.parquet)."""
        return {"kind": "files", "root": str(self.root), "mode": self.mode, "resize": self.resize,
                "crop": self.crop}


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def scan(root: Path) -> tuple[list[tuple[str, str, str]], list[str]]:
    """``[(split, class name, path relative to root)]`` sorted, and the sorted class names.

    Raises
    ------
    DataError
        If the root is missing, has no train folder or no test folder, holds images outside class
        folders, an empty class folder, files that lead outside the root (symlinks), or no images.
    """
    splits, skipped = _split_folders(root)
    records, loose, empty = [], [], []
    for split_dir in splits:
        for entry in sorted(split_dir.iterdir()):
            if entry.name.startswith("."):
                continue
            if entry.is_file() and entry.suffix.lower() in IMAGE_SUFFIXES:
                loose.append(_rel(entry, root))
            elif entry.is_dir():
                found = [(split_dir.name, entry.name, _rel(f, root)) for f in sorted(entry.rglob("*"))
                         if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")]
                records += found
                if not found:
                    empty.append(_rel(entry, root))
    if loose:
        raise DataError(
            f"data.root {root}: images directly in a split folder, outside any class folder: "
            f"{_listed(loose)}; move each into its class folder, root/<split>/<class>/"
        )
    if empty:
        # a class folder without images would silently vanish from the classes (or from that split)
        raise DataError(
            f"data.root {root}: class folder(s) without {'/'.join(IMAGE_SUFFIXES)} images: {_listed(empty)}; "
            "put that class's images in them, or remove the empty folders"
        )
    _check_names(records, root)
    _check_inside(records, root)
    _check_splits(records, root, [p.name for p in splits] + skipped)
    class_names = sorted({name for _, name, _ in records})
    return records, class_names


def _listed(items: list[str]) -> str:
    return f"{', '.join(items[:SHOW])}{f', ... ({len(items)} in all)' if len(items) > SHOW else ''}"


def _split_folders(root: Path) -> tuple[list[Path], list[str]]:
    """The split folders under ``root``, sorted, and the names of the other folders (skipped, with a warning)."""
    if not root.is_dir():
        raise DataError(f"data.root {root} is not a folder; set data.root to the folder holding train/<class>/*.png "
                        "(a relative path is resolved against the working directory)")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    skipped = [p.name for p in folders if not is_split_name(p.name)]
    if skipped:
        log.warning("data.root %s: skipping folders %s (splits are train, val, test and test_*)", root, skipped)
    splits = [p for p in folders if is_split_name(p.name)]
    if not any(p.name == TRAIN_SPLIT for p in splits):
        raise DataError(
            f"data.root {root} has no 'train' folder (found {[p.name for p in splits] + skipped or 'nothing'}); "
            "lay the images out as root/train/<class>/*.png (and root/val, root/test the same way)"
        )
    return splits, skipped


def _check_names(records: list[tuple[str, str, str]], root: Path) -> None:
    """Refuse file or folder names that are not UTF-8 (Python holds their bytes as surrogates, which no table, log
    or report can write: a raw UnicodeEncodeError after the scan before)."""
    bad = [readable_name(rel) for _, _, rel in records if not is_utf8_name(rel)]
    if bad:
        raise DataError(
            f"data.root {root}: file or folder names that are not UTF-8: {_listed(bad)} (the bytes shown as \\x..); "
            "rename them to UTF-8 names (e.g. `convmv -f latin1 -t utf8 -r --notest DIR`)"
        )


def _check_inside(records: list[tuple[str, str, str]], root: Path) -> None:
    """Refuse files that resolve outside ``root`` (a symlinked file, class or split folder pointing out)."""
    from soxai.data.paths import Resolver, is_inside

    resolve = Resolver(root)  # (root / rel).resolve(), each folder once
    resolved = ((rel, resolve(rel)) for _, _, rel in records)
    outside = [f"{rel} -> {path}" for rel, path in resolved if not is_inside(path, root)]
    if outside:
        raise DataError(
            f"data.root {root}: files lead outside the folder through symlinks: {_listed(outside)}; "
            "copy the images into the folder instead of linking to them"
        )


def _check_splits(records: list[tuple[str, str, str]], root: Path, folders: list[str]) -> None:
    """Refuse a folder with no training images, or none to evaluate on (the report compares on test splits)."""
    with_images = sorted({split for split, _, _ in records})
    if TRAIN_SPLIT not in with_images:
        raise DataError(f"data.root {root}: train/ holds no {'/'.join(IMAGE_SUFFIXES)} images in class folders; "
                        "put the training images in root/train/<class>/")
    if not any(s not in (TRAIN_SPLIT, VAL_SPLIT) for s in with_images):
        raise DataError(
            f"data.root {root} has no test split with images (folders found: {folders}; with images: "
            f"{with_images}); the audit needs train/ and test/ (or test_<name>/), val/ is optional: "
            "move part of the labelled images to root/test/<class>/"
        )


def folder_hash(root: str | Path) -> str:
    """A hash of the image files under ``root`` (path, size, modification time): what the data stage read."""
    root = Path(root)
    h = hashlib.sha256()
    if root.is_dir():
        for f in sorted(root.rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                st = f.stat()
                # surrogateescape: a name that is not UTF-8 hashes as its bytes (the data stage then refuses it)
                h.update(f"{_rel(f, root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:16]


def build_image_folder(cfg: DataConfig, base_dir: Path | None = None) -> Dataset:
    """The dataset of an image folder, its images left in the files (see the module docstring).

    Returns
    -------
    Dataset
        ``images`` an :class:`ImageFiles` of shape (N, C, H, W); ``masks`` None; ``samples`` sorted by
        split, class and path, with ``sample_id`` = ``path`` = the path relative to the root,
        ``source`` 'image_folder', ``group`` missing.

    Raises
    ------
    DataError
        Naming the files and the fix: see :func:`scan`; unreadable files, unsupported modes (16-bit,
        float), sizes that differ or are not square after data.resize / data.crop, a crop larger than the image.
    """
    if not cfg.root:
        raise DataError("data.source is 'image_folder' but data.root is not set; set data.root=path/to/folder")
    root = Path(cfg.root).expanduser()
    if not root.is_absolute():
        root = (base_dir if base_dir is not None else Path.cwd()) / root
    root = root.resolve()
    records, class_names = scan(root)
    headers = _read_headers(root, records)
    if cfg.color == "auto":
        mode = "L" if all(m in GREY_MODES for _, m in headers) else "RGB"
    else:
        mode = "L" if cfg.color == "grayscale" else "RGB"
    size = _common_size(cfg, root, records, headers)
    code = {name: i for i, name in enumerate(class_names)}
    samples = pd.DataFrame({
        "sample_id": [rel for _, _, rel in records],
        "split": [split for split, _, _ in records],
        "label": np.array([code[name] for _, name, _ in records], dtype=np.int64),
        "source": "image_folder",
        "row": np.arange(len(records), dtype=np.int64),
        "group": pd.Series([None] * len(records), dtype=object),
        "path": [rel for _, _, rel in records],
    })
    images = ImageFiles(root, samples["path"].tolist(), mode, cfg.resize, cfg.crop, (size[1], size[0]))
    return Dataset(samples=samples, images=images, masks=None, class_names=class_names)


def _read_headers(root: Path, records: list[tuple[str, str, str]]) -> list[tuple[tuple[int, int], str]]:
    """(size (width, height), PIL mode) of every file, without decoding pixels; unreadable or unsupported
    files are refused by name."""
    from soxai.data.manifest_source import READ_MODE

    headers, bad = [], []
    for _, _, rel in records:
        try:
            headers.append(read_header(root / rel))
        except unreadable_errors() as exc:
            headers.append(((0, 0), ""))
            bad.append(f"{rel}: {describe_error(exc)}")
    if bad:
        raise DataError(f"data.root {root}: {len(bad)} file(s) cannot be opened as images: "
                        f"{'; '.join(bad[:SHOW])}; replace or remove them")
    unsupported = [f"{rel} is {mode}" for (_, mode), (_, _, rel) in zip(headers, records, strict=True)
                   if mode not in READ_MODE]
    if unsupported:
        raise DataError(f"data.root {root}: images of an unsupported mode: {', '.join(unsupported[:SHOW])}; "
                        "convert them to 8-bit grey or RGB, e.g. Image.open(p).convert('RGB').save(p)")
    return headers


def _common_size(cfg: DataConfig, root: Path, records: list[tuple[str, str, str]],
                 headers: list[tuple[tuple[int, int], str]]) -> tuple[int, int]:
    """The (width, height) every image has after data.resize / data.crop; refused unless one square size."""
    if cfg.crop is not None:
        small = [f"{rel} ({w}x{h})" for ((w, h), _), (_, _, rel) in zip(headers, records, strict=True)
                 if min(output_size(w, h, cfg.resize, None)) < cfg.crop]
        if small:
            raise DataError(f"data.root {root}: images smaller than data.crop={cfg.crop} after resizing: "
                            f"{', '.join(small[:SHOW])}; lower data.crop or set data.resize >= {cfg.crop}")
    sizes = [output_size(w, h, cfg.resize, cfg.crop) for (w, h), _ in headers]
    common = Counter(sizes).most_common(1)[0][0]
    odd = [f"{rel} gives {s[0]}x{s[1]}" for s, (_, _, rel) in zip(sizes, records, strict=True) if s != common]
    side = min(min(s) for s in sizes)
    if odd or common[0] != common[1]:
        what = (f"images differ in size (most give {common[0]}x{common[1]}, width x height; {', '.join(odd[:SHOW])}"
                f"{f', ... ({len(odd)} in all)' if len(odd) > SHOW else ''})" if odd
                else f"images are {common[0]}x{common[1]}, not square")
        raise DataError(f"data.root {root}: {what}; the model needs one square size: set data.resize={side} and "
                        f"data.crop={side} (or another size)")
    return common


def image_files_of(info: dict[str, Any], samples: pd.DataFrame) -> ImageFiles:
    """The :class:`ImageFiles` the data stage recorded in ``info['storage']``, rows in ``samples['row']`` order."""
    storage = info["storage"]
    paths = samples.sort_values("row")["path"].astype(str).tolist()
    _, h, w = info["image_shape"]
    return ImageFiles(storage["root"], paths, storage["mode"], storage["resize"], storage["crop"], (h, w))
