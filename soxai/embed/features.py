"""Kernels: explanation vectors from maps, and their low-dimensional embedding."""

from __future__ import annotations

import functools
import warnings
from typing import TYPE_CHECKING

import numpy as np

from soxai.embed.neighbors import UMAP_SMALL, exact_knn, exact_knn_wanted, small_data_knn
from soxai.errors import StageError

if TYPE_CHECKING:
    from soxai.config import Config
    from soxai.embed.config import EmbedConfig


def explanation_features(
    cfg: Config, maps: np.ndarray, *, model=None, images=None, rows=None, device=None, targets=None
) -> np.ndarray:
    """The explanation vector of each map, as the run's config asks: the embed stage's one feature function.

    Concept assignment of new samples (soxai.concepts.assign, the monitor) calls this too, with the
    reference run's config, so that new and reference vectors are made the same way.

    Parameters
    ----------
    cfg : the run's config (``embed.features`` chooses pooled maps, saliency-weighted activations of
        ``model.layer``, both, the relevance of ``model.layer``'s channels, or those with the pooled maps, or
        those and each channel's peak activation (:func:`peak_block`);
        ``embed.pool_size`` and ``embed.normalize`` size and scale them)
    maps : array of shape (n_samples, height, width)
    model, images, rows, device : needed only when ``embed.features`` reads the layer: the explained
        model, the image array (or reader) and the rows of ``images`` the maps belong to
    targets : int array of shape (n_samples,), the class each map explains; needed for channel relevance

    Returns
    -------
    features : float32 array of shape (n_samples, n_features)
    """
    ecfg = cfg.embed
    pooled = pooled_features(maps, ecfg.pool_size, ecfg.normalize)
    if ecfg.features == "pooled":
        return pooled
    if model is None or images is None or rows is None:
        raise ValueError(f"embed.features={ecfg.features!r} needs the model, the images and their rows")
    if ecfg.features in ("channels", "channels+pooled", "channels+peaks+pooled"):
        from soxai.embed.relevance import relevance_and_peaks

        if targets is None:
            raise ValueError(f"embed.features={ecfg.features!r} needs the class each map explains (targets)")
        rel, peaks = relevance_and_peaks(model, cfg.model.layer, images, rows, targets, device)
        rel = scale_rows(rel, ecfg.normalize)
        if ecfg.features == "channels":
            return rel
        return combine_blocks([rel, pooled] if ecfg.features == "channels+pooled" else [rel, peak_block(peaks), pooled])
    acts = activation_features(model, cfg.model.layer, images, rows, maps, ecfg.normalize, device)
    return acts if ecfg.features == "activations" else combine_blocks([pooled, acts])


def pooled_features(maps: np.ndarray, pool_size: int, normalize: str, chunk: int = 4096) -> np.ndarray:
    """Average-pool |map| to a pool_size x pool_size grid and scale each sample.

    Parameters
    ----------
    maps : array of shape (n_samples, height, width); float16 or float32, may be a memmap
    pool_size : side of the pooled grid (capped by the map size)
    normalize : 'l2' | 'l1' | 'max' | 'none' — per-sample scaling, so that two samples that look at
        the same place cluster together whatever the strength of their gradients

    Returns
    -------
    features : float32 array of shape (n_samples, pool_size * pool_size)
    """
    import torch
    import torch.nn.functional as F

    n, h, w = maps.shape
    side = min(pool_size, h, w)
    out = np.empty((n, side * side), dtype=np.float32)
    for start in range(0, n, chunk):
        block = torch.from_numpy(np.abs(np.asarray(maps[start : start + chunk], dtype=np.float32)))
        pooled = F.adaptive_avg_pool2d(block[:, None], side).reshape(len(block), -1).numpy()
        out[start : start + len(block)] = pooled
    return scale_rows(out, normalize)


def scale_rows(x: np.ndarray, normalize: str) -> np.ndarray:
    """Scale each row by its l2 / l1 / max norm (rows that are all zero stay zero)."""
    if normalize == "none":
        return x
    if normalize == "l2":
        norm = np.sqrt((x**2).sum(axis=1, keepdims=True))
    elif normalize == "l1":
        norm = np.abs(x).sum(axis=1, keepdims=True)
    elif normalize == "max":
        norm = np.abs(x).max(axis=1, keepdims=True)
    else:
        raise ValueError(f"unknown normalisation {normalize!r}; use l2, l1, max or none")
    return (x / np.where(norm > 0, norm, 1.0)).astype(np.float32)


LARGE = 10_000


def auto_umap_epochs(n: int) -> int | None:
    """UMAP's layout epochs for ``n`` samples: None (UMAP's default, 500) up to 10,000 samples, 100 above
    (where UMAP's own default would be 200).

    The layout optimisation is most of the stage's time above 10,000 samples: ~0.5 CPU-s per epoch at
    100k on this project's 2-core machine, and ~3 of ~4 s for 16,000 vectors with 100 epochs (bench/peers.py).
    With 100 epochs the planted group was recovered just as well as with 200 at 16k (bench/peers.py) and
    100k (bench/embed_scale.py); see docs/BENCHMARKS.md.
    """
    return None if n <= LARGE else 100


# UMAP kernels that umap-learn compiles without numba's on-disk cache, so every new process compiled them
# again (~4 s of a 16k-vector embedding that then took ~4 s more; bench/peers.py). Their machine code
# does not depend on the data, so caching them changes no result.
_UNCACHED_UMAP_KERNELS = (
    ("umap.umap_", "fast_knn_indices"),
    ("umap.umap_", "smooth_knn_dist"),
    ("umap.umap_", "compute_membership_strengths"),
    ("umap.layouts", "_nb_optimize_layout_euclidean_single_epoch"),
)


@functools.cache
def cache_umap_kernels() -> None:
    """Turn on numba's on-disk cache for :data:`_UNCACHED_UMAP_KERNELS` (once per process).

    A kernel that is missing (another umap-learn version) or cannot be cached (no writable cache
    location; numba then raises RuntimeError) is left as it is: it is compiled as before.
    """
    import importlib

    from numba.core.dispatcher import Dispatcher

    for module, name in _UNCACHED_UMAP_KERNELS:
        kernel = getattr(importlib.import_module(module), name, None)
        if isinstance(kernel, Dispatcher):
            try:
                kernel.enable_caching()
            except RuntimeError:
                pass


def embed_features(
    features: np.ndarray,
    pca_components: int,
    n_neighbors: int,
    min_dist: float,
    n_components: int,
    seed: int,
    method: str = "umap",
    n_epochs: int | str | None = None,
    knn: str = "approximate",
) -> tuple[np.ndarray, np.ndarray]:
    """PCA then UMAP (or, with ``method="spectral"``, SpRAy's spectral embedding of a k-NN graph).

    Parameters
    ----------
    features : array of shape (n_samples, n_features)
    n_neighbors : UMAP's n_neighbors, or the k of the spectral k-NN graph
    min_dist : UMAP only
    method : 'umap' | 'spectral' (soxai.embed.spectral)
    n_epochs : UMAP's layout epochs; None = UMAP's default, 'auto' = :func:`auto_umap_epochs`
    knn : UMAP only: 'auto' | 'exact' | 'approximate' (:func:`exact_knn_wanted`); the embed stage passes
        ``embed.knn`` (default auto), this function's default is UMAP's own search

    Returns
    -------
    pca : float32 array of shape (n_samples, k), k = min(pca_components, n_features, n_samples)
    embedding : float32 array of shape (n_samples, n_components)
    """
    check_embeddable(len(features), n_components)
    _, pca = fit_pca_model(features, pca_components, seed)
    return pca, embed_reduced(pca, n_neighbors, min_dist, n_components, seed, method, n_epochs, knn)


def check_embeddable(n: int, n_components: int) -> None:
    """Raise StageError when ``n`` vectors are too few to embed into ``n_components`` dimensions."""
    if n < n_components + 2:
        raise StageError(
            f"{n} explanation vectors are too few to embed into {n_components} dimensions; "
            "compute saliency for more samples (saliency.splits) or use a larger dataset"
        )


def fit_pca_model(features: np.ndarray, pca_components: int, seed: int):
    """The fitted scikit-learn PCA of ``features`` (min(pca_components, n_features, n_samples) axes) and the
    features projected on it: float32 array of shape (n_samples, k)."""
    from sklearn.decomposition import PCA

    k = max(1, min(pca_components, features.shape[1], len(features)))
    model = PCA(n_components=k, random_state=seed)
    return model, model.fit_transform(features).astype(np.float32)


def embed_reduced(
    pca: np.ndarray,
    n_neighbors: int,
    min_dist: float,
    n_components: int,
    seed: int,
    method: str = "umap",
    n_epochs: int | str | None = None,
    knn: str = "approximate",
) -> np.ndarray:
    """UMAP (or the spectral embedding) of PCA-reduced vectors, as :func:`embed_features` makes it.

    pca : float32 array of shape (n_samples, k). Returns float32 array of shape (n_samples, n_components).
    """
    n = len(pca)
    if method == "spectral":
        from soxai.embed.spectral import spectral_embedding

        return spectral_embedding(pca, n_neighbors, n_components, seed)
    if method != "umap":
        raise ValueError(f"unknown embedding method {method!r}; use umap or spectral")
    import umap  # slow import (numba); only here

    from soxai.device import torch_threads

    cache_umap_kernels()
    neighbors = min(n_neighbors, n - 1)
    # torch's thread count given back after the block: UMAP's numba kernels start numba's OpenMP threading layer,
    # which sets the OpenMP runtime that torch shares to all cores, so under OMP_NUM_THREADS=1 every torch
    # computation after an embedding ran on 2 threads and rounded differently from the same computation in a
    # process that had not embedded (a model trained after UMAP differed by 5e-7 after 8 steps, and a run resumed
    # in a new process did not match the first)
    with warnings.catch_warnings(), torch_threads():
        # without a search index UMAP warns that transform() will not work; soxai never calls it
        warnings.filterwarnings("ignore", message=".*precomputed_knn.*", category=UserWarning)
        # below UMAP_SMALL UMAP's own search, exactly, without its pair-by-pair Python loop (small_data_knn)
        precomputed = (*exact_knn(pca, neighbors), None) if exact_knn_wanted(n, knn) else \
            (*small_data_knn(pca, neighbors), None) if n < UMAP_SMALL else (None, None, None)
        reducer = umap.UMAP(
            n_neighbors=neighbors,
            min_dist=min_dist,
            n_components=n_components,
            random_state=seed,  # reproducible on CPU; UMAP is then single-threaded anyway
            n_jobs=1,
            init="spectral" if n > n_components + 1 else "random",
            n_epochs=auto_umap_epochs(n) if n_epochs == "auto" else n_epochs,
            precomputed_knn=precomputed,
        )
        return reducer.fit_transform(pca).astype(np.float32)


def embed_with_config(features: np.ndarray, ecfg: EmbedConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`embed_features` with the settings of an ``embed`` config section (the neighbours and
    dimensions of the chosen ``method``)."""
    spectral = ecfg.method == "spectral"
    return embed_features(
        features, ecfg.pca_components, ecfg.spectral_neighbors if spectral else ecfg.umap_neighbors,
        ecfg.umap_min_dist, ecfg.spectral_components if spectral else ecfg.n_components, seed, ecfg.method,
        ecfg.umap_epochs, ecfg.knn,
    )


def peak_block(peaks: np.ndarray) -> np.ndarray:
    """Each sample's channel peaks (n, channels) standardised across its own channels (mean 0, spread 1; a row
    with no spread gives zeros): which channels fire most in this sample, whatever the channels' scales.

    Per sample, so a new sample's vector needs nothing fitted on the reference run (the monitor's assignment);
    standardising each channel over the training set instead gathered the moving ring's carriers too, but needs
    the training set's statistics at assignment (bench/peak_concepts.py)."""
    peaks = np.asarray(peaks, dtype=np.float64)
    if peaks.size == 0:
        return peaks.astype(np.float32)
    centre = peaks.mean(axis=1, keepdims=True)
    spread = peaks.std(axis=1, keepdims=True)
    # flat up to float32 rounding (the activations' precision): no spread, not rounding noise blown up to unit scale
    flat = spread <= 1e-6 * np.abs(peaks).max(axis=1, keepdims=True)
    out = np.divide(peaks - centre, spread, out=np.zeros_like(peaks), where=~flat)
    out[~np.isfinite(peaks).all(axis=1)] = np.nan  # a broken reading is not hidden as a flat one
    return out.astype(np.float32)


def weighted_activations(activations: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """Sum each channel's feature map weighted by the sample's |saliency| resized to its resolution.

    The vector says *what* the model looked at (which channels fire where the relevance lies), not
    only *where*: two samples that look at the same place but see different things part ways.

    Parameters
    ----------
    activations : array of shape (n_samples, channels, h, w), a layer's feature maps
    maps : array of shape (n_samples, H, W), the saliency maps (area-resized to (h, w))

    Returns
    -------
    features : float32 array of shape (n_samples, channels), not normalised
    """
    import torch
    import torch.nn.functional as F

    acts = torch.as_tensor(np.asarray(activations, dtype=np.float32))
    weight = torch.from_numpy(np.abs(np.asarray(maps, dtype=np.float32)))[:, None]
    h, w = acts.shape[2:]
    # area resize keeps the saliency's mass where it was; then each map sums to 1 (how strong the
    # gradients are is left to the normalisation of the vector)
    weight = F.adaptive_avg_pool2d(weight, (h, w))
    total = weight.sum(dim=(2, 3), keepdim=True)
    weight = weight / torch.where(total > 0, total, torch.ones_like(total))
    return (acts * weight).sum(dim=(2, 3)).numpy().astype(np.float32)


def activation_features(
    model,
    layer: str | None,
    images: np.ndarray,
    rows: np.ndarray,
    maps: np.ndarray,
    normalize: str,
    device=None,
    batch_size: int = 256,
) -> np.ndarray:
    """Saliency-weighted activations of ``layer`` (``model.layer``; None = the last Conv2d).

    Parameters
    ----------
    model : a torch module producing feature maps at ``layer``
    images : array of shape (n_total, C, H, W); ``rows`` (n,) index it
    maps : array of shape (n, H, W), the saliency of each of those samples, in the same order
    normalize : per-sample scaling, as for :func:`pooled_features`

    Returns
    -------
    features : float32 array of shape (n, channels of the layer)
    """
    import torch

    from soxai.errors import ConfigError
    from soxai.models.layers import resolve_layer

    module = resolve_layer(model, layer)
    device = device or torch.device("cpu")
    captured: list = []
    handle = module.register_forward_hook(lambda _m, _i, out: captured.append(out))
    parts = []
    try:
        model.to(device).eval()
        with torch.no_grad():
            for start in range(0, len(rows), batch_size):
                captured.clear()
                xb = torch.from_numpy(np.asarray(images[rows[start : start + batch_size]], dtype=np.float32))
                model(xb.to(device))
                out = captured[0]
                if not isinstance(out, torch.Tensor) or out.ndim != 4:
                    raise ConfigError(
                        f"model.layer={layer!r} outputs {getattr(out, 'shape', type(out).__name__)}, not feature "
                        "maps (n, channels, height, width); pick a convolutional layer or block"
                    )
                parts.append(weighted_activations(out.float().cpu().numpy(), maps[start : start + batch_size]))
    finally:
        handle.remove()
    if not parts:
        return np.zeros((0, 0), dtype=np.float32)
    return scale_rows(np.concatenate(parts), normalize)


def combine_blocks(blocks: list[np.ndarray]) -> np.ndarray:
    """Concatenate feature blocks so that neither dominates: each row of each block scaled to l2 norm
    ``1 / sqrt(len(blocks))`` (rows end with norm 1 whatever the blocks' widths).

    blocks : arrays of shape (n, d_i). Returns float32 (n, sum d_i).
    """
    weight = 1.0 / np.sqrt(len(blocks))
    return np.concatenate([scale_rows(np.asarray(b, dtype=np.float32), "l2") * weight for b in blocks], axis=1)
