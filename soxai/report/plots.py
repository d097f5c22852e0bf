"""Figures of the report, returned as base64 PNG strings (the report is one self-contained file)."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import pandas as pd


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def embedding_scatter(emb: pd.DataFrame, concept_ids: np.ndarray, flagged: set[int], max_points: int = 20000) -> str:
    """Scatter of the explanation embedding coloured by concept; flagged concepts ringed in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    idx = np.arange(len(emb)) if len(emb) <= max_points else np.sort(rng.choice(len(emb), max_points, replace=False))
    x, y, c = emb["u0"].to_numpy()[idx], emb["u1"].to_numpy()[idx], concept_ids[idx]
    fig, ax = plt.subplots(figsize=(6.5, 5))
    noise = c < 0
    ax.scatter(x[noise], y[noise], s=3, c="#cccccc", label="noise (-1)")
    cmap = plt.get_cmap("tab20")
    for k in np.unique(c[~noise]):
        m = c == k
        label = f"concept {k}" + (" (flagged)" if k in flagged else "")
        ax.scatter(x[m], y[m], s=4, color=cmap(int(k) % 20), label=label)
        if k in flagged:
            ax.scatter(x[m], y[m], s=14, facecolors="none", edgecolors="red", linewidths=0.4)
        ax.annotate(str(k), (np.median(x[m]), np.median(y[m])), fontsize=9, weight="bold")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title("explanation embedding (UMAP), coloured by concept")
    ax.legend(fontsize=6, markerscale=2, loc="best", ncol=2)
    return _png(fig)


def concept_strip(mean_image: np.ndarray, mean_map: np.ndarray, exemplars: list[np.ndarray]) -> str:
    """Mean map over the mean image, then a few exemplar images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = 1 + len(exemplars)
    fig, axes = plt.subplots(1, n, figsize=(1.3 * n, 1.4))
    axes = np.atleast_1d(axes)
    axes[0].imshow(_gray(mean_image), cmap="gray", vmin=0, vmax=1)
    axes[0].imshow(mean_map, cmap="jet", alpha=0.5)
    axes[0].set_title("mean map", fontsize=7)
    for ax, img in zip(axes[1:], exemplars, strict=True):
        ax.imshow(_gray(img), cmap="gray", vmin=0, vmax=1)
    for ax in axes:
        ax.axis("off")
    return _png(fig)


def comparison_chart(comparison: dict[str, Any]) -> str:
    """Accuracy per variant and evaluation split with 95% intervals (error bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = list(comparison["variants"])
    splits = [s for s in next(iter(comparison["variants"].values())) if s != "val"]
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    width = 0.8 / max(len(variants), 1)
    for i, v in enumerate(variants):
        means = [comparison["variants"][v][s]["accuracy"]["mean"] for s in splits]
        lo = [m - comparison["variants"][v][s]["accuracy"]["ci95"][0] for m, s in zip(means, splits, strict=True)]
        hi = [comparison["variants"][v][s]["accuracy"]["ci95"][1] - m for m, s in zip(means, splits, strict=True)]
        ax.bar(np.arange(len(splits)) + i * width, means, width, yerr=[lo, hi], capsize=3, label=v)
    ax.set_xticks(np.arange(len(splits)) + width * (len(variants) - 1) / 2, splits)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8)
    return _png(fig)


def _gray(img: np.ndarray) -> np.ndarray:
    """(C, H, W) -> (H, W) or (H, W, 3) for imshow."""
    img = np.asarray(img, dtype=np.float32)
    return img[0] if img.shape[0] == 1 else np.clip(np.moveaxis(img, 0, -1), 0, 1)
