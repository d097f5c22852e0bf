"""UMAP below 4,096 samples: its own exact search against soxai's replica of it (neighbors.small_data_knn).

Below ``UMAP_SMALL`` samples UMAP computes every pairwise distance through scikit-learn's ``pairwise_distances`` with
a numba function as the metric, called from Python once per pair. soxai computes the same matrix in one compiled
loop and hands UMAP the neighbours it would have found. For each size, clustered 32-dimensional vectors (the embed
stage's PCA width) are embedded both ways, alternated; the medians of the wall times, their ratio, and whether the
two embeddings are equal bit for bit are printed as a markdown table.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 .venv/bin/python bench/umap_small.py [--sizes 500 2100 4000] [--reps 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def umap_alone(x: np.ndarray, seed: int) -> np.ndarray:
    """The embedding UMAP gives with its own search, with the embed stage's settings."""
    import umap

    from soxai.device import torch_threads
    from soxai.embed.features import auto_umap_epochs

    with torch_threads():
        return umap.UMAP(n_neighbors=15, min_dist=0.0, n_components=2, random_state=seed, n_jobs=1, init="spectral",
                         n_epochs=auto_umap_epochs(len(x))).fit_transform(x).astype(np.float32)


def main() -> None:
    from soxai.embed.features import embed_reduced

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[500, 2100, 4000])
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    embed_reduced(rng.normal(size=(64, 32)).astype(np.float32), 15, 0.0, 2, 0, n_epochs=2)  # compile / load kernels
    print("| samples | UMAP's own search: s | soxai: s | soxai / UMAP | same embedding |")
    print("|---:|---:|---:|---:|---|")
    for n in args.sizes:
        centres = rng.normal(0, 3, (8, 32))
        x = (centres[rng.integers(0, 8, n)] + rng.normal(size=(n, 32))).astype(np.float32)
        own, ours, same = [], [], True
        for _ in range(args.reps):
            t = time.perf_counter()
            a = umap_alone(x, 0)
            own.append(time.perf_counter() - t)
            t = time.perf_counter()
            b = embed_reduced(x, 15, 0.0, 2, 0, n_epochs="auto", knn="auto")
            ours.append(time.perf_counter() - t)
            same &= bool(np.array_equal(a, b))
        o, s = statistics.median(own), statistics.median(ours)
        print(f"| {n:,} | {o:.2f} | {s:.2f} | {s / o:.2f} | {'yes' if same else 'no'} |", flush=True)


if __name__ == "__main__":
    main()
