"""The pruned training set as a ``torch.utils.data.Dataset``, for a user's own training code.

    from torch.utils.data import DataLoader
    from soxai.manifest.dataset import PrunedManifestDataset
    loader = DataLoader(PrunedManifestDataset("runs/demo-..."), batch_size=64, shuffle=True)

Images come from the run's ``data/images.npy`` (the images every stage saw, already decoded and
resized, for built-in and manifest sources alike), memory-mapped and read one row per item, or for
an image folder from its files (decoded, resized and cropped as the run did), so the dataset costs
next to no memory at any size and works in DataLoader worker processes.
This module imports torch; ``import soxai.manifest`` does not.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from soxai.errors import DataError, StageError
from soxai.run_dir import RunDir, read_parquet


class PrunedManifestDataset(Dataset):
    """The samples of a run's pruned manifest (``manifest/pruned.parquet``) as (image, label) pairs.

    Parameters
    ----------
    run_dir : a run directory that has a pruned manifest (``soxai explain`` or ``soxai run`` made it)
    split : the split to serve ("train", "val", "test", ...); None serves every split
    keep_only : serve only the samples the manifest keeps (the pruned set); False serves all of them
    transform : optional callable applied to each image tensor (e.g. an augmentation)

    Items are ``(image, label)``: a float32 tensor of shape (C, H, W) and an int.

    Attributes
    ----------
    sample_ids : list of str, the sample id of each item, in item order
    labels : int64 array of shape (n_items,)
    class_names : list of str, the class name of each label (when the run recorded them)
    """

    def __init__(
        self,
        run_dir: str | Path,
        split: str | None = "train",
        keep_only: bool = True,
        transform: Callable[[torch.Tensor], Any] | None = None,
    ) -> None:
        run = RunDir(run_dir)
        if not run.pruned_parquet.is_file():
            raise StageError(
                f"{run.root} has no pruned manifest ({run.pruned_parquet}); run `soxai explain CONFIG --run-dir "
                f"{run.root}` (or `soxai run`) first, or pass the folder `soxai run` printed"
            )
        frame = read_parquet(run.pruned_parquet)
        if split is not None:
            splits = sorted(frame["split"].unique())
            if split not in splits:
                raise DataError(f"the manifest of {run.root.name} has no split {split!r}; its splits are {splits}, "
                                "or pass split=None for all of them")
            frame = frame[frame["split"] == split]
        if keep_only:
            frame = frame[frame["keep"].astype(bool)]
        if "row" not in frame or not (run.images.is_file() or _reads_files(run)):
            raise StageError(
                f"{run.root} lacks the stored images (data/images.npy and the manifest's row column); "
                "re-run its data stage with `soxai run --run-dir RUN_DIR`"
            )
        self.run = run
        self.split = split
        self.keep_only = keep_only
        self.transform = transform
        self.sample_ids: list[str] = frame["sample_id"].astype(str).tolist()
        self.labels: np.ndarray = frame["label"].to_numpy(dtype=np.int64)
        self._rows = frame["row"].to_numpy(dtype=np.int64)
        self.class_names: list[str] = _class_names(run)
        self._images: np.ndarray | None = None  # opened on first use, in each worker process

    def __len__(self) -> int:
        return len(self.sample_ids)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        if self._images is None:
            from soxai.data.runner import read_images

            self._images = read_images(self.run)
        image = torch.from_numpy(np.array(self._images[self._rows[index]], dtype=np.float32))
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])

    def __getstate__(self) -> dict[str, Any]:
        # a memory map must not be pickled into worker processes (it would copy the whole array)
        state = self.__dict__.copy()
        state["_images"] = None
        return state

    def __repr__(self) -> str:
        which = "kept" if self.keep_only else "all"
        return f"PrunedManifestDataset({str(self.run.root)!r}, split={self.split!r}: {len(self)} {which} samples)"


def _reads_files(run: RunDir) -> bool:
    """True when the run's images stay in a user's image folder (data.source=image_folder)."""
    import json

    return run.data_info.is_file() and json.loads(run.data_info.read_text()).get("storage", {}).get("kind") == "files"


def _class_names(run: RunDir) -> list[str]:
    from soxai.data.class_names import read_class_names

    return list(read_class_names(run))
