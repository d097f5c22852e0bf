"""Compile UMAP's numba kernels into numba's on-disk cache once, at install time.

The first embedding after an install compiles pynndescent's and UMAP's kernels: on a 2-core machine that was
about 45 s of the demo's first run (28 s importing umap, 19 s in the first embedding; 6 s in all once the cache
is warm), so the first ``soxai run`` after ``make setup`` took 3 min where every later one took 2. ``make setup``
runs this module after installing, so the compile is paid there and said so. The kernels' machine code does
not depend on the data (numba specialises on the argument types), so the small random vectors embedded here
compile exactly what a run's embedding uses, through the same call (:func:`soxai.embed.features.embed_reduced`):
UMAP's own exact search below :data:`soxai.embed.neighbors.UMAP_SMALL` samples (its distances in soxai's compiled
loop, :func:`soxai.embed.neighbors.small_data_knn`) and soxai's exact search above
(``embed.knn: auto`` up to 120,000 samples). UMAP's nearest-neighbour descent (``knn: approximate``, and ``auto``
above 120,000) is left out: pynndescent compiles part of it in every process whatever the cache holds (40 of its
52 s on a cold cache came back in the next process), so warming it here would buy little. Nothing is written but
numba's cache.

    python -m soxai.embed.warmup
"""

from __future__ import annotations

import time

import numpy as np

from soxai.embed.features import embed_reduced
from soxai.embed.neighbors import UMAP_SMALL


def warm_umap_kernels(seed: int = 0) -> float:
    """Embed small random vectors through UMAP's two exact paths; returns the seconds it took."""
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    for n, knn in ((64, "auto"), (UMAP_SMALL, "exact")):
        vectors = rng.normal(size=(n, 8)).astype(np.float32)
        embed_reduced(vectors, n_neighbors=15, min_dist=0.0, n_components=2, seed=seed, n_epochs=2, knn=knn)
    return time.perf_counter() - start


if __name__ == "__main__":
    seconds = warm_umap_kernels()
    print(f"compiled UMAP's kernels into numba's cache ({seconds:.0f} s, once per install)")
