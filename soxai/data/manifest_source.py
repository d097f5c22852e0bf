"""A user's own images, listed in a CSV or Parquet manifest.

Columns: ``path`` (relative to the manifest's folder), ``label``, ``split``, and optionally
``sample_id``, ``group`` and ``mask_path``. Every problem is reported as a :class:`DataError` that
names the offending rows (lines of a CSV file, 0-based rows of a Parquet file), what was expected,
and how to fix it.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from soxai.data.config import DataConfig
from soxai.data.dataset import TRAIN_SPLIT, Dataset, validate_dataset
from soxai.data.images import describe_error, open_image, unreadable_errors
from soxai.data.manifest_images import ManifestImages, decode_into
from soxai.data.near_names import warn_near_names
from soxai.data.paths import Resolver, is_inside
from soxai.errors import DataError

REQUIRED_COLUMNS = ("path", "label", "split")
OPTIONAL_COLUMNS = ("sample_id", "group", "mask_path")
SHOW = 5

# PIL mode -> the mode soxai reads it as: grey (C=1) or colour (C=3). Alpha is dropped, palettes
# are expanded to their colours; 16-bit and float modes are refused (their scale is not 0..255). Shared with
# the image_folder source.
READ_MODE = {
    "L": "L", "1": "L", "LA": "L", "La": "L",
    "RGB": "RGB", "RGBA": "RGB", "RGBa": "RGB", "RGBX": "RGB", "P": "RGB", "PA": "RGB",
    "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB",
}
_INT_LABEL = re.compile(r"^[+-]?\d+$")
# How a missing value reads once written as text (pandas, spreadsheets); never a class name.
MISSING_LABEL_TEXT = frozenset({"nan", "na", "n/a", "none", "null", "<na>"})


class _Rows:
    """Names rows the way the user sees them in the file: CSV lines, Parquet row numbers."""

    def __init__(self, manifest: Path, is_csv: bool) -> None:
        self.manifest = manifest
        self.is_csv = is_csv

    def where(self, i: int) -> str:
        # Line 1 of a CSV file is the header, so data row i sits on line i + 2.
        return f"line {i + 2}" if self.is_csv else f"row {i}"

    def error(
        self, what: str, idx: Sequence[int], shown: Sequence[object], expected: str, fix: str
    ) -> DataError:
        """A DataError naming up to SHOW of the rows ``idx`` with ``shown`` values, and the count."""
        pairs = zip(idx[:SHOW], shown[:SHOW], strict=False)
        items = ", ".join(f"{self.where(int(i))} ({v})" for i, v in pairs)
        more = f", ... ({len(idx)} rows in all)" if len(idx) > SHOW else ""
        return DataError(f"manifest {self.manifest}: {what}: {items}{more}. Expected {expected}; {fix}")


def _read_table(manifest: Path) -> tuple[pd.DataFrame, bool]:
    if not manifest.is_file():
        raise DataError(
            f"manifest {manifest} does not exist; set data.manifest to a CSV or Parquet file "
            "(a relative path is resolved against the config file's folder)"
        )
    suffix = manifest.suffix.lower()
    try:
        if suffix == ".csv":
            # Everything as text, and only truly empty cells are missing ('NA' may be a file name).
            return pd.read_csv(manifest, dtype=str, keep_default_na=False, na_values=[""]), True
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(manifest), False
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataError(
            f"manifest {manifest} cannot be read as {suffix[1:]}: {exc}; check that it is a valid file"
        ) from None
    raise DataError(
        f"manifest {manifest} has suffix {manifest.suffix!r}; expected .csv or .parquet, "
        "save the manifest in one of those formats"
    )


def _blank(col: pd.Series) -> np.ndarray:
    """True where a cell is missing or only whitespace, shape (n_rows,)."""

    def blank(v: object) -> bool:
        if isinstance(v, str):
            return not v.strip()
        return v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v))

    return np.array([blank(v) for v in col.to_numpy(dtype=object)], dtype=bool).reshape(len(col))


def _parse_labels(col: pd.Series, rows: _Rows) -> tuple[np.ndarray, list[str]]:
    """Label codes (int64, shape (n_rows,)) and class names, from ints 0..K-1 or class names."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        col = col.astype(object)
    if pd.api.types.is_bool_dtype(col.dtype) or pd.api.types.is_integer_dtype(col.dtype):
        ints = col.to_numpy(dtype=np.int64)
    elif pd.api.types.is_float_dtype(col.dtype):
        values = col.to_numpy(dtype=np.float64)
        bad = np.flatnonzero(values != np.round(values))
        if len(bad):
            raise rows.error(
                "labels are not whole numbers", bad, values[bad].tolist(),
                "integer labels 0..K-1 or class names", "fix those labels",
            )
        ints = values.astype(np.int64)
    else:
        text = [str(v).strip() for v in col]
        missing = [i for i, t in enumerate(text) if t.lower() in MISSING_LABEL_TEXT]
        if missing:
            # pandas or a spreadsheet wrote a missing label as text; read as a class name it would be a class
            raise rows.error(
                "labels are missing (written as text)", missing, [repr(text[i]) for i in missing],
                "an int 0..K-1 or a class name in every row", "fill in the labels or drop those rows",
            )
        if not all(_INT_LABEL.match(t) for t in text):
            # Class names: codes follow the sorted names, so the mapping does not depend on row order.
            names = sorted(set(text))
            lookup = {name: code for code, name in enumerate(names)}
            return np.array([lookup[t] for t in text], dtype=np.int64), names
        ints = np.array([int(t) for t in text], dtype=np.int64)
    negative = np.flatnonzero(ints < 0)
    if len(negative):
        raise rows.error(
            "labels are negative", negative, ints[negative].tolist(),
            "integer labels 0..K-1 or class names", "renumber the classes from 0",
        )
    gaps = sorted(set(range(int(ints.max()) + 1)) - set(ints.tolist()))
    if gaps:
        # labels {0, 2} would declare a class 1 with no sample: the model would get an output never trained
        present = sorted(set(ints.tolist()))
        raise DataError(
            f"manifest {rows.manifest}: integer labels must be 0..K-1 without gaps; found {present}, so "
            f"class(es) {gaps} would have no samples. Renumber the classes 0..{len(present) - 1} "
            "(or use class names as labels)"
        )
    return ints, [str(k) for k in range(int(ints.max()) + 1)]


def _resolve_paths(
    raw: list[str], idx: np.ndarray, root: Path, rows: _Rows, column: str
) -> list[Path]:
    """Resolve ``raw[i]`` for i in ``idx`` under ``root``; refuse absolute, escaping and missing paths."""
    absolute = [i for i in idx if os.path.isabs(raw[i])]
    if absolute:
        raise rows.error(
            f"{column} values are absolute paths", absolute, [repr(raw[i]) for i in absolute],
            f"paths relative to the manifest's folder {root}",
            "move the files under that folder and write their relative paths",
        )
    resolve = Resolver(root)  # (root / raw).resolve(), each folder resolved once
    resolved = {i: resolve(raw[i]) for i in idx}
    escaping = [i for i in idx if not is_inside(resolved[i], root)]
    if escaping:
        raise rows.error(
            f"{column} values lead outside the manifest's folder", escaping,
            [f"{raw[i]!r} -> {resolved[i]}" for i in escaping],
            f"files inside {root} (no '..' that climbs out, no symlinks that point out)",
            "copy the files under the manifest's folder or move the manifest up",
        )
    missing = [i for i in idx if not resolved[i].is_file()]
    if missing:
        raise rows.error(
            f"files named in column {column!r} do not exist", missing, [repr(raw[i]) for i in missing],
            f"existing files relative to {root}", "fix the paths or drop those rows",
        )
    return [resolved[i] for i in idx]


def _read_headers(
    paths: list[Path], raw: list[str], rows: _Rows, column: str
) -> list[tuple[tuple[int, int], str]]:
    """(size (width, height), mode) of each image, without decoding the pixels."""
    headers, bad, why = [], [], []
    for i, path in enumerate(paths):
        try:
            with open_image(path) as im:
                headers.append((im.size, im.mode))
        except unreadable_errors() as exc:
            headers.append(((0, 0), ""))
            bad.append(i)
            why.append(f"{raw[i]!r}: {describe_error(exc)}")
    if bad:
        raise rows.error(
            f"files named in column {column!r} cannot be opened as images", bad, why,
            "image files PIL can read (PNG, JPEG, TIFF, ...)", "replace or drop the corrupt files",
        )
    return headers


def _check_uniform_images(headers: list[tuple[tuple[int, int], str]], raw: list[str], rows: _Rows) -> str:
    """Refuse unsupported or mixed modes and mixed sizes; return the read mode ('L' or 'RGB')."""
    unsupported = [i for i, (_, mode) in enumerate(headers) if mode not in READ_MODE]
    if unsupported:
        raise rows.error(
            "images have an unsupported mode", unsupported,
            [f"{raw[i]!r} is {headers[i][1]}" for i in unsupported],
            "8-bit grey (L) or colour (RGB, RGBA, P) images",
            "convert them to 8-bit, e.g. Image.open(p).convert('L').save(p)",
        )
    read_modes = [READ_MODE[mode] for _, mode in headers]
    common_mode = Counter(read_modes).most_common(1)[0][0]
    other = [i for i, m in enumerate(read_modes) if m != common_mode]
    if other:
        j = other[0]
        k = read_modes.index(common_mode)
        raise rows.error(
            f"images mix grey and colour: {rows.where(k)} ({raw[k]!r}) is {headers[k][1]} like most, "
            f"but {rows.where(j)} ({raw[j]!r}) is {headers[j][1]}; rows that differ from most",
            other, [f"{raw[i]!r} is {headers[i][1]}" for i in other],
            "all images grey (L) or all colour (RGB/RGBA/P)",
            f"convert every image to one mode, e.g. Image.open(p).convert('{common_mode}').save(p)",
        )
    sizes = Counter(size for size, _ in headers)
    common = sizes.most_common(1)[0][0]
    odd = [i for i, (size, _) in enumerate(headers) if size != common]
    if odd:
        j = odd[0]
        w, h = common
        raise rows.error(
            f"images differ in size: most are {w}x{h} (width x height) but {rows.where(j)} "
            f"({raw[j]!r}) is {headers[j][0][0]}x{headers[j][0][1]}; rows that differ",
            odd, [f"{raw[i]!r} is {headers[i][0][0]}x{headers[i][0][1]}" for i in odd],
            "every image the same size", f"resize all images to one size (e.g. {w}x{h}) before listing them",
        )
    return common_mode


def _corrupt(rows: _Rows, bad: list[int], why: list[str]) -> DataError:
    return rows.error("image files are corrupt or truncated", bad, why, "complete image files",
                      "re-export or drop those files")


def _decode(
    paths: list[Path], raw: list[str], mode: str, size: tuple[int, int], rows: _Rows
) -> np.ndarray:
    """Pixels of shape (n, C, H, W) float32 in [0, 1], of the ``size`` (width, height) every header gave."""
    width, height = size
    out = np.empty((len(paths), 1 if mode == "L" else 3, height, width), dtype=np.float32)
    bad, why = decode_into(out, paths, raw, mode)
    if bad:
        raise _corrupt(rows, bad, why)
    return out


def _decode_masks(
    paths: list[Path], idx: np.ndarray, raw: list[str], shape: tuple[int, int], n_rows: int, rows: _Rows
) -> np.ndarray:
    """Masks of shape (n_rows, H, W) bool; rows without a mask stay all False."""
    height, width = shape
    masks = np.zeros((n_rows, height, width), dtype=bool)
    wrong_size, wrong_why, bad, bad_why = [], [], [], []
    for i, path in zip(idx, paths, strict=True):
        try:
            with open_image(path) as im:
                if im.size != (width, height):
                    wrong_size.append(i)
                    wrong_why.append(f"{raw[i]!r} is {im.size[0]}x{im.size[1]}")
                    continue
                arr = np.asarray(im)
                # Nonzero = relevant, on the raw values (palette indices for P masks); alpha is ignored.
                if im.mode in ("LA", "La", "PA", "RGBA", "RGBa"):
                    arr = arr[..., :-1]
        except unreadable_errors() as exc:
            bad.append(i)
            bad_why.append(f"{raw[i]!r}: {describe_error(exc)}")
            continue
        masks[i] = arr.any(axis=-1) if arr.ndim == 3 else arr != 0
    if bad:
        raise rows.error(
            "mask_path files cannot be read as images", bad, bad_why,
            "mask images PIL can read (nonzero = relevant)", "replace or drop the corrupt masks",
        )
    if wrong_size:
        raise rows.error(
            f"masks differ in size from the images ({width}x{height}, width x height)",
            wrong_size,
            wrong_why,
            "each mask the same size as its image",
            f"resize the masks to {width}x{height} (nearest neighbour)",
        )
    return masks


def _images(image_paths: list[Path], raw_paths: list[str], rows: _Rows, lazy: bool):
    """The images once every header was read and checked: decoded here, or (``lazy``) a :class:`ManifestImages`
    the data stage decodes and writes a block at a time."""
    headers = _read_headers(image_paths, raw_paths, rows, "path")
    mode = _check_uniform_images(headers, raw_paths, rows)
    if lazy:
        return ManifestImages(image_paths, raw_paths, mode, headers[0][0], lambda bad, why: _corrupt(rows, bad, why))
    return _decode(image_paths, raw_paths, mode, headers[0][0], rows)


def check_manifest(cfg: DataConfig, base_dir: Path | None = None) -> None:
    """:func:`build_manifest`'s checks of the table and of its ``path`` column, without opening an image (nor
    ``mask_path``): a command refuses a bad manifest in a second, before Prefect or its run directory. DataError."""
    _checked_table(cfg, base_dir, warn=False)


def _checked_table(cfg: DataConfig, base_dir: Path | None, warn: bool) -> tuple:
    if not cfg.manifest:
        raise DataError("data.source is 'manifest' but data.manifest is not set; set data.manifest=path/to/samples.csv")
    manifest = Path(cfg.manifest).expanduser()
    if not manifest.is_absolute():
        manifest = (base_dir if base_dir is not None else Path.cwd()) / manifest
    table, is_csv = _read_table(manifest)
    rows = _Rows(manifest, is_csv)
    table = _check_columns_and_cells(table, manifest, rows)
    labels, class_names = _parse_labels(table["label"], rows)
    splits = [str(v).strip() for v in table["split"]]
    if TRAIN_SPLIT not in splits:
        raise DataError(f"manifest {manifest} has no rows with split 'train' (found splits {sorted(set(splits))}); "
                        "mark the training images with split=train (every split other than train and val is an "
                        "evaluation set)")
    if warn:
        warn_near_names(manifest, class_names, splits)
    raw_paths = [str(v) for v in table["path"]]
    sample_ids = _sample_ids(table, raw_paths, rows)
    image_paths = _resolve_paths(raw_paths, np.arange(len(table)), manifest.parent.resolve(), rows, "path")
    return manifest, table, rows, labels, class_names, splits, raw_paths, sample_ids, image_paths


def build_manifest(cfg: DataConfig, base_dir: Path | None = None, lazy: bool = False) -> Dataset:
    """Read the images a user's manifest lists.

    Images are read with PIL and scaled by 1/255: mode L (and 1, LA) gives one channel; RGB, and RGBA / P / other
    colour modes converted to RGB (alpha dropped, palette expanded), give three. Grey and colour may not be mixed,
    nor image sizes. 16-bit and float images are refused. Labels are ints 0..K-1 (class names '0'..'K-1') or
    strings (class names sorted, codes by that order). ``sample_id`` defaults to the path as written. A
    ``mask_path`` image marks relevant pixels with any nonzero value (palette indices for P images, alpha ignored)
    and must match its image's size; rows without a mask_path get an all-False mask (check
    ``samples['mask_path'].notna()``). Every split other than 'train' and 'val' is an evaluation set; 'train' must
    hold samples.

    Parameters
    ----------
    cfg : DataConfig
        ``cfg.manifest`` is the CSV (``.csv``) or Parquet (``.parquet``, ``.pq``) file.
    base_dir : Path, optional
        Folder a relative ``cfg.manifest`` is resolved against; the current directory when None.
    lazy : bool
        True: images a :class:`ManifestImages`, decoded when read (the data stage writes them block by block).

    Returns
    -------
    Dataset
        Images of shape (N, C, H, W) float32 in [0, 1]; masks of shape (N, H, W) bool when the manifest has a
        non-empty ``mask_path`` column, else None; ``samples`` in manifest row order with ``path`` (and
        ``mask_path``) as written, ``source`` 'manifest', ``group`` the user's column or missing.

    Raises
    ------
    DataError
        From :func:`soxai.data.dataset.validate_dataset`, and naming the rows (up to five, and the count), what
        was expected and the fix: missing file or columns, empty or missing labels / splits / paths, absolute
        paths or paths that lead outside the manifest's folder, missing or unreadable images, unsupported or
        mixed modes, mixed sizes, masks of the wrong size, duplicate sample ids, no 'train' split.
    """
    manifest, table, rows, labels, class_names, splits, raw_paths, sample_ids, image_paths = \
        _checked_table(cfg, base_dir, warn=True)
    images = _images(image_paths, raw_paths, rows, lazy)
    masks, mask_col = _read_masks(table, manifest.parent.resolve(), images.shape[2:], rows)
    samples = pd.DataFrame({
        "sample_id": sample_ids, "split": splits, "label": labels, "source": "manifest",
        "row": np.arange(len(table), dtype=np.int64),
        "group": pd.Series(_optional_text(table, "group"), dtype=object), "path": raw_paths,
    })
    if mask_col is not None:
        samples["mask_path"] = pd.Series(mask_col, dtype=object)
    dataset = Dataset(samples=samples, images=images, masks=masks, class_names=class_names)
    validate_dataset(dataset)
    return dataset


def _check_columns_and_cells(table: pd.DataFrame, manifest: Path, rows: _Rows) -> pd.DataFrame:
    """The table with stripped column names and a fresh index; refuses missing columns, no rows, empty cells."""
    table.columns = [str(c).strip() for c in table.columns]
    missing_cols = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing_cols:
        raise DataError(
            f"manifest {manifest} lacks the columns {missing_cols}; found {list(table.columns)}. "
            f"Expected columns {', '.join(REQUIRED_COLUMNS)} (optional: {', '.join(OPTIONAL_COLUMNS)}); "
            "rename or add them"
        )
    if table.empty:
        raise DataError(f"manifest {manifest} has no rows; list at least the training images")
    table = table.reset_index(drop=True)
    for column, expected in (
        ("path", "an image path relative to the manifest's folder"),
        ("label", "a label (an int 0..K-1 or a class name)"),
        ("split", "a split name such as train, val or test"),
    ):
        empty = np.flatnonzero(_blank(table[column]))
        if len(empty):
            raise rows.error(
                f"{column} is empty", empty, ["empty"] * len(empty), f"every row to have {expected}",
                f"fill in {column} or drop those rows",
            )
    return table


def _sample_ids(table: pd.DataFrame, raw_paths: list[str], rows: _Rows) -> list[str]:
    """The sample_id column, the path where it is blank or missing; refuses repeats."""
    if "sample_id" in table.columns:
        blank = _blank(table["sample_id"])
        sample_ids = [raw_paths[i] if blank[i] else str(v).strip() for i, v in enumerate(table["sample_id"])]
    else:
        sample_ids = list(raw_paths)
    first_row: dict[str, int] = {}
    dup = []
    for i, sid in enumerate(sample_ids):
        if sid in first_row:
            dup.append(i)
        else:
            first_row[sid] = i
    if dup:
        raise rows.error(
            "sample_id values repeat an earlier row", dup,
            [f"{sample_ids[i]!r}, first on {rows.where(first_row[sample_ids[i]])}" for i in dup],
            "one unique sample_id per row (the path when sample_id is left out)",
            "give those rows their own sample_id or drop the duplicates",
        )
    return sample_ids


def _read_masks(
    table: pd.DataFrame, root: Path, shape: tuple[int, int], rows: _Rows
) -> tuple[np.ndarray | None, list[str | None] | None]:
    """Masks of shape (n_rows, H, W) bool (None when no row has one) and the mask_path column as written
    (None when the manifest has no such column)."""
    if "mask_path" not in table.columns:
        return None, None
    has_mask = ~_blank(table["mask_path"])
    mask_col = [str(v) if has_mask[i] else None for i, v in enumerate(table["mask_path"])]
    if not has_mask.any():
        return None, mask_col
    mask_idx = np.flatnonzero(has_mask)
    raw_masks = [m if m is not None else "" for m in mask_col]
    mask_paths = _resolve_paths(raw_masks, mask_idx, root, rows, "mask_path")
    return _decode_masks(mask_paths, mask_idx, raw_masks, shape, len(table), rows), mask_col


def _optional_text(table: pd.DataFrame, column: str) -> list[str | None]:
    """An optional column as text, None where blank or where the manifest has no such column."""
    if column not in table.columns:
        return [None] * len(table)
    blank = _blank(table[column])
    return [None if blank[i] else str(v) for i, v in enumerate(table[column])]


def manifest_hash(manifest: str | Path) -> str:
    """A hash of the manifest file's bytes and of every file it names (path, size, modification time).

    What the data stage read: a changed image or mask invalidates the stage even when the manifest is
    unchanged. Nothing is validated here (a path that leaves the folder or is missing is hashed as
    missing; :func:`build_manifest` then reports it); an unreadable manifest hashes its bytes only.
    """
    import hashlib

    from soxai.stage import file_hash

    manifest = Path(manifest)
    if not manifest.is_file():
        return "missing"  # build_manifest names the problem and the fix
    h = hashlib.sha256(file_hash(manifest).encode())
    try:
        table, _ = _read_table(manifest)
    except DataError:
        return h.hexdigest()[:16]
    root = manifest.parent.resolve()
    resolve = Resolver(root)
    table.columns = [str(c).strip() for c in table.columns]
    for column in ("path", "mask_path"):
        if column not in table.columns:
            continue
        for raw in table[column].to_numpy(dtype=object):
            if not isinstance(raw, str) or not raw.strip():
                h.update(b"-\n")
                continue
            path = resolve(raw)
            try:
                st = path.stat() if is_inside(path, root) else None
            except OSError:
                st = None
            h.update(f"{raw}\0{st.st_size if st else -1}\0{st.st_mtime_ns if st else -1}\n".encode())
    return h.hexdigest()[:16]
