"""The data sources by name, and the entry point that builds and checks a run's dataset.

A source is a function ``(cfg, seed, base_dir) -> Dataset`` registered in :data:`DATA_SOURCES`;
:func:`build_dataset` dispatches on ``cfg.source`` and runs :func:`validate_dataset` on the result.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from soxai.data.config import DataConfig
from soxai.data.dataset import Dataset, validate_dataset
from soxai.errors import DataError


def _build_cells(cfg: DataConfig, seed: int, base_dir: Path | None) -> Dataset:
    from soxai.data.cells import build_cells

    return build_cells(cfg, seed)


def _build_digits(cfg: DataConfig, seed: int, base_dir: Path | None) -> Dataset:
    from soxai.data.digits import build_digits

    return build_digits(cfg, seed)


def _build_mnist(cfg: DataConfig, seed: int, base_dir: Path | None) -> Dataset:
    from soxai.data.mnist import build_mnist

    return build_mnist(cfg, seed)


def _build_manifest(cfg: DataConfig, seed: int, base_dir: Path | None) -> Dataset:
    from soxai.data.manifest_source import build_manifest

    return build_manifest(cfg, base_dir, lazy=True)  # decoded as the data stage writes them (flat memory)


def _build_image_folder(cfg: DataConfig, seed: int, base_dir: Path | None) -> Dataset:
    from soxai.data.image_folder import build_image_folder

    return build_image_folder(cfg, base_dir)


#: name -> builder ``(cfg, seed, base_dir) -> Dataset``; builders import their heavy modules lazily.
DATA_SOURCES: dict[str, Callable[[DataConfig, int, Path | None], Dataset]] = {
    "cells": _build_cells,
    "digits": _build_digits,
    "manifest": _build_manifest,
    "image_folder": _build_image_folder,
    "mnist": _build_mnist,
}


def build_dataset(cfg: DataConfig, seed: int, base_dir: Path | None = None) -> Dataset:
    """Build the dataset that ``cfg`` describes and check it.

    Parameters
    ----------
    cfg : DataConfig
        The data section of the config; ``cfg.source`` picks the builder in :data:`DATA_SOURCES`.
    seed : int
        Seed of the built-in generators and splits (manifests ignore it).
    base_dir : Path, optional
        Folder a relative ``cfg.manifest`` is resolved against (the config file's folder);
        the current directory when None.

    Returns
    -------
    Dataset
        A dataset that passed :func:`validate_dataset`.

    Raises
    ------
    DataError
        When the source is unknown or the data is unusable.
    """
    builder = DATA_SOURCES.get(cfg.source)
    if builder is None:
        raise DataError(
            f"unknown data source {cfg.source!r}; set data.source to one of {', '.join(sorted(DATA_SOURCES))}"
        )
    dataset = builder(cfg, seed, base_dir)
    validate_dataset(dataset)
    return dataset
