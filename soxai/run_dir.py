"""The run directory: the only code that knows where artifacts live, and how they are written.

Every write goes to a temporary file in the same folder and is moved into place with
``os.replace``, so a reader never sees a half-written file and a crash leaves only debris
named ``.*.tmp`` that the next write overwrites.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSION = 1

_UMASK = os.umask(0)
os.umask(_UMASK)

STAGES = ("data", "model", "saliency", "embed", "concepts", "spectral", "bias", "manifest", "train", "compare",
          "report")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; artifacts are shared like any file
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(path: Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def write_text(path: Path, text: str) -> Path:
    return write_bytes(path, text.encode())


def write_json(path: Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def read_json(path: Path) -> Any:
    """The JSON file at ``path``; a damaged one (not JSON, not UTF-8) raises DamagedFileError naming it and the fix
    (a raw JSONDecodeError before)."""
    from soxai.errors import DamagedFileError

    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DamagedFileError(
            f"{path} cannot be read as JSON ({exc}); it is damaged or was replaced: if it is a run's file, "
            "`soxai run --run-dir RUN` recomputes the stage that wrote it"
        ) from None


def write_npy(path: Path, array: np.ndarray) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(array), allow_pickle=False)
    return path


def read_npy(path: Path, mmap: bool = True) -> np.ndarray:
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)


def write_npy_chunks(path: Path, n_rows: int, chunks: Iterable[np.ndarray]) -> Path:
    """Write the row blocks ``chunks`` one after another as one ``.npy`` array of ``n_rows`` rows, atomically.

    The file is the one :func:`write_npy` writes for their concatenation, byte for byte, but only one block is
    in memory at a time, and the blocks go through plain file writes (pages written through a memory map stay
    in the process's RSS while it is open). The first block gives the row shape and dtype; every block must
    match it. Fewer or more rows than ``n_rows``, or a block that raises, leave no file (nor the old one
    replaced).
    """
    from soxai.errors import StageError

    written = 0
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        head = None
        for block in chunks:
            block = np.ascontiguousarray(block)
            if head is None:
                head = (block.dtype, block.shape[1:])
                np.lib.format.write_array_header_1_0(fh, {
                    "descr": np.lib.format.dtype_to_descr(block.dtype), "fortran_order": False,
                    "shape": (n_rows, *block.shape[1:])})
            elif (block.dtype, block.shape[1:]) != head:
                raise StageError(f"a block of {path.name} has rows {block.dtype}{block.shape[1:]}, the first "
                                 f"{head[0]}{head[1]}; every block must have the same row shape and dtype")
            written += len(block)
            if written > n_rows:
                break
            fh.write(block.data)  # the array's own buffer: tobytes() would copy each block
        if written != n_rows or head is None:
            raise StageError(f"{path.name} was to get {n_rows} rows but its blocks held {written}")
    return path


def read_npy_rows(path: Path, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of the ``.npy`` array at ``path``, read from the file (not memory-mapped, so
    reading a large array block by block keeps the process's memory flat). Returns a new array."""
    with open(path, "rb") as fh:
        shape, fortran, dtype = _npy_header(fh)
        if fortran:
            raise ValueError(f"{path} is stored in Fortran order; rows cannot be read from it in blocks")
        start, stop = max(0, start), min(stop, shape[0])
        row = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        fh.seek(fh.tell() + start * row)
        count = max(0, stop - start) * (row // dtype.itemsize)
        return np.fromfile(fh, dtype=dtype, count=count).reshape(max(0, stop - start), *shape[1:])


def npy_shape(path: Path) -> tuple[int, ...]:
    """Shape of the ``.npy`` array at ``path``, from its header."""
    with open(path, "rb") as fh:
        return tuple(_npy_header(fh)[0])


def _npy_header(fh) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of an open ``.npy`` file; leaves it at the first byte of the data."""
    version = np.lib.format.read_magic(fh)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return read(fh)


def write_parquet(path: Path, df: Any) -> Path:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return write_bytes(path, buf.getvalue())


def write_csv(path: Path, df: Any) -> Path:
    return write_text(path, df.to_csv(index=False))


def read_parquet(path: Path) -> Any:
    import pandas as pd

    return pd.read_parquet(path)


class RunDir:
    """Paths of every artifact of one run. Create with ``RunDir(path)``; nothing is written yet."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    def existing(self) -> RunDir:
        """This run directory, or a StageError where its path is missing or is not a folder (for the commands that
        read a run: they said what to run on it, which does not help with a mistyped path)."""
        from soxai.errors import StageError

        if self.root.exists() and not self.root.is_dir():
            raise StageError(f"{self.root} is a file, not a run directory; pass the folder `soxai run` printed")
        if not self.root.is_dir():
            raise StageError(f"run directory {self.root} does not exist; pass the folder `soxai run` printed")
        return self

    # run level
    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    @property
    def env_json(self) -> Path:
        return self.root / "env.json"

    def stage_json(self, stage: str) -> Path:
        return self.root / stage / "stage.json"

    # data
    @property
    def samples(self) -> Path:
        return self.root / "data" / "samples.parquet"

    @property
    def images(self) -> Path:
        return self.root / "data" / "images.npy"

    @property
    def masks(self) -> Path:
        return self.root / "data" / "masks.npy"

    @property
    def label_masks(self) -> Path:
        """task: segmentation: the class of every pixel, (N, H, W) uint8 (soxai.segmentation.data)."""
        return self.root / "data" / "label_masks.npy"

    @property
    def unmarked(self) -> Path:
        """Built-in sources: the marked training images before marking (the oracle's data)."""
        return self.root / "data" / "unmarked.npy"

    @property
    def unmarked_rows(self) -> Path:
        return self.root / "data" / "unmarked_rows.npy"

    @property
    def data_info(self) -> Path:
        return self.root / "data" / "info.json"

    # model
    @property
    def baseline_model(self) -> Path:
        return self.root / "model" / "baseline.safetensors"

    @property
    def baseline_metrics(self) -> Path:
        return self.root / "model" / "baseline.json"

    # saliency
    @property
    def saliency_index(self) -> Path:
        return self.root / "saliency" / "index.parquet"

    def saliency_shard(self, i: int) -> Path:
        return self.root / "saliency" / f"shard-{i:05d}.npy"

    def saliency_predictions(self, i: int) -> Path:
        """A shard task's predictions for its shard's images (int64, one per map): the stage folds them into
        the index instead of predicting every image again, then deletes them."""
        return self.root / "saliency" / f"pred-{i:05d}.npy"

    # embed
    @property
    def features(self) -> Path:
        return self.root / "embed" / "features.npy"

    @property
    def embedding(self) -> Path:
        return self.root / "embed" / "embedding.parquet"

    # concepts
    @property
    def assignments(self) -> Path:
        return self.root / "concepts" / "assignments.parquet"

    @property
    def concepts(self) -> Path:
        return self.root / "concepts" / "concepts.parquet"

    @property
    def concept_maps(self) -> Path:
        return self.root / "concepts" / "mean_maps.npy"

    @property
    def concept_model(self) -> Path:
        """Folder of the concept model that assigns new samples (soxai.concepts.assign)."""
        return self.root / "concepts" / "model"

    # spectral (soxai.spectral: the network as a whole, the frequency content of concepts, the surrogate)
    @property
    def spectral_layers(self) -> Path:
        return self.root / "spectral" / "layers.parquet"

    @property
    def spectral_frequency(self) -> Path:
        return self.root / "spectral" / "frequency.parquet"

    @property
    def spectral_shares(self) -> Path:
        """Per sample: the share of each concept among its explanation's nearest reference samples."""
        return self.root / "spectral" / "concept_shares.parquet"

    @property
    def spectral_surrogate(self) -> Path:
        return self.root / "spectral" / "surrogate.json"

    @property
    def spectral_network(self) -> Path:
        """The Lipschitz bound and the layers the spectral computation skipped."""
        return self.root / "spectral" / "network.json"

    # bias
    @property
    def bias_scores(self) -> Path:
        return self.root / "bias" / "scores.parquet"

    @property
    def bias_carriers(self) -> Path:
        """Per sample of a flagged concept's class: does it carry the shortcut (soxai.bias.carriers)."""
        return self.root / "bias" / "carriers.parquet"

    @property
    def bias_conflicts(self) -> Path:
        """Per concept: the baseline's training error against the rest of its class (soxai.bias.conflicts)."""
        return self.root / "bias" / "conflicts.parquet"

    @property
    def bias_unclustered(self) -> Path:
        """Per class: its unclustered samples tested as one group (soxai.bias.unclustered)."""
        return self.root / "bias" / "unclustered.parquet"

    # manifest
    @property
    def pruned_parquet(self) -> Path:
        return self.root / "manifest" / "pruned.parquet"

    @property
    def pruned_csv(self) -> Path:
        return self.root / "manifest" / "pruned.csv"

    @property
    def manifest_json(self) -> Path:
        return self.root / "manifest" / "manifest.json"

    def policy_manifest(self, policy: str) -> Path:
        """One prune policy's decisions (train samples only); pruned.parquet is the configured policy's."""
        return self.root / "manifest" / "policies" / f"{policy}.parquet"

    # train / compare / report
    def variant_dir(self, variant: str, seed: int) -> Path:
        return self.root / "train" / variant / f"seed{seed}"

    def variant_model(self, variant: str, seed: int) -> Path:
        return self.variant_dir(variant, seed) / "model.safetensors"

    def variant_metrics(self, variant: str, seed: int) -> Path:
        return self.variant_dir(variant, seed) / "metrics.json"

    def variant_manifest(self, variant: str, seed: int) -> Path:
        return self.variant_dir(variant, seed) / "train_ids.parquet"

    @property
    def comparison(self) -> Path:
        return self.root / "compare" / "comparison.json"

    @property
    def report_html(self) -> Path:
        return self.root / "report" / "report.html"

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    # monitor (a run of new data checked against a reference run's concepts)
    @property
    def monitor_assignments(self) -> Path:
        return self.root / "monitor" / "assignments.parquet"

    @property
    def monitor_drift(self) -> Path:
        return self.root / "monitor" / "drift.parquet"

    @property
    def monitor_exclude_parquet(self) -> Path:
        return self.root / "monitor" / "exclude.parquet"

    @property
    def monitor_exclude_csv(self) -> Path:
        return self.root / "monitor" / "exclude.csv"

    @property
    def monitor_json(self) -> Path:
        return self.root / "monitor" / "monitor.json"

    def relative(self, path: Path) -> str:
        return str(Path(path).resolve().relative_to(self.root))

    def exists(self) -> bool:
        return self.config.is_file()


# ---------------------------------------------------------------- files written from outside a stage

RUN_FILES = ("config.yaml", "run.json", "env.json", "run.lock")  # the run's own files beside the stage folders


def run_root_of(path: str | Path) -> Path | None:
    """The run directory that ``path`` lies in (the nearest folder above it with config.yaml and run.json)."""
    for folder in Path(path).resolve().parents:
        if (folder / "config.yaml").is_file() and (folder / "run.json").is_file():
            return folder
    return None


def owner_of(path: str | Path) -> str | None:
    """What owns ``path`` inside a run directory — 'the data stage', 'the run (run.json)' — or None.

    A stage owns its folder (``data/``, ``train/``..., or any folder with a ``stage.json``: a monitor run's
    ``monitor/``) and every file any ``stage.json`` lists as an output.
    """
    path = Path(path).resolve()
    root = run_root_of(path)
    if root is None:
        return None
    rel = path.relative_to(root)
    if str(rel) in RUN_FILES:
        return f"the run ({rel})"
    top = rel.parts[0]
    if top in STAGES or (root / top / "stage.json").is_file():
        return f"the {top} stage"
    for stage_json in root.glob("*/stage.json"):
        try:
            rec = read_json(stage_json)
        except (OSError, ValueError):
            continue
        if str(rel) in set(rec.get("outputs", [])) | set(rec.get("files") or {}):
            return f"the {stage_json.parent.name} stage"
    return None


def check_output_path(out: str | Path, option: str = "--out", example: str | None = None) -> Path:
    """Validate a file path a command writes outside any stage (an export); return it resolved.

    Refuses, each with a one-line error naming the path and the fix: a file of a run directory (a stage's or
    the run's own: soxai never overwrites those from outside the stage), an existing directory, and a place
    that cannot be written (a parent that is a file, a folder without write permission). ``example`` is the
    file name the fixes suggest (default: the name given).
    """
    from soxai.errors import ConfigError

    path = Path(out).expanduser().resolve()  # a symlink is judged by the file it would overwrite
    owner = owner_of(path)
    if owner is not None:
        root = run_root_of(path)
        raise ConfigError(f"refusing to write {path}: it belongs to {owner} of run {root}, and nothing outside a "
                          f"stage may overwrite a run's files; choose another {option}, e.g. "
                          f"{root / 'exports' / (example or path.name)}")
    if path.is_dir():
        raise ConfigError(f"{option} {path} is an existing directory; give a file path, "
                          f"e.g. {path / (example or 'pruned.csv')}")
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise ConfigError(f"cannot write {path}: {folder} is a file, not a folder; choose another {option}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write {path}: no permission to write in {folder}; choose a folder you can "
                          f"write to for {option}")
    return path
