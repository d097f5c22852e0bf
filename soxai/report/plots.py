"""Figures of the report, the notebook and ``soxai concepts show``.

``*_figure`` functions return matplotlib figures (the notebook shows them, the CLI saves them);
the functions without that suffix return base64 PNG strings for the one-file HTML report. Image
tiles (an image, its saliency over it) are composed in numpy by ``gallery_tiles``: a report with
60 concept cards stays small and renders in seconds at any number of samples.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import pandas as pd

from soxai.compare.stats import interval

NOISE_COLOR = "#c8c8c8"
FLAG_COLOR = "#c00000"
VARIANT_COLORS = {"baseline": "#7f7f7f", "pruned": "#1f77b4", "random_control": "#ff7f0e", "reweight": "#9467bd",
                  "augment": "#17becf", "jtt": "#8c564b", "oracle": "#2ca02c"}


def _figure(figsize: tuple[float, float]):
    # A bare Figure, not pyplot: no backend or global figure list is touched, so the report renders
    # headless and a notebook's inline backend (which displays Figure objects) stays as it is.
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def figure_png(fig, dpi: int = 100) -> bytes:
    """PNG bytes of a matplotlib figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ---------------------------------------------------------------- embedding


def subsample(concept_ids: np.ndarray, max_points: int, min_per_concept: int = 50, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most about ``max_points`` points, keeping every concept visible.

    Each concept keeps ``min(size, min_per_concept)`` points; the rest of the budget is drawn
    uniformly, so large concepts keep their share and small ones do not vanish.

    Parameters
    ----------
    concept_ids : int array of shape (n_samples,)

    Returns
    -------
    int array of shape (n_kept,), n_kept <= max(max_points, n_concepts * min_per_concept)
    """
    n = len(concept_ids)
    if n <= max_points:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    chosen = np.zeros(n, dtype=bool)
    for cid in np.unique(concept_ids):
        members = np.flatnonzero(concept_ids == cid)
        chosen[rng.choice(members, size=min(len(members), min_per_concept), replace=False)] = True
    rest = np.flatnonzero(~chosen)
    budget = max_points - int(chosen.sum())
    if budget > 0:
        chosen[rng.choice(rest, size=min(budget, len(rest)), replace=False)] = True
    return np.flatnonzero(chosen)


def embedding_figure(
    coords: np.ndarray,
    concept_ids: np.ndarray,
    flagged: set[int] | dict[int, Any],
    max_points: int = 20000,
    max_labels: int = 60,
):
    """Scatter of the explanation embedding coloured by concept; flagged concepts drawn as red crosses.

    Parameters
    ----------
    coords : float array of shape (n_samples, >=2), the first two columns are plotted
    concept_ids : int array of shape (n_samples,), -1 = noise
    flagged : ids of flagged concepts
    max_points : larger embeddings are subsampled (``subsample``) so the plot stays light
    max_labels : at most this many concept ids are written on the plot (flagged ones always)
    """
    import matplotlib
    from matplotlib.lines import Line2D

    flagged = {int(k) for k in flagged}
    idx = subsample(np.asarray(concept_ids), max_points)
    x, y, c = coords[idx, 0], coords[idx, 1], np.asarray(concept_ids)[idx]
    fig = _figure((6.8, 5.2))
    ax = fig.subplots()
    noise = c < 0
    ax.scatter(x[noise], y[noise], s=3, c=NOISE_COLOR, label="noise (-1)", rasterized=True)
    # tab20 without its two reds: red means flagged here
    palette = [c for i, c in enumerate(matplotlib.colormaps["tab20"].colors) if i not in (6, 7)]
    ids = [int(k) for k in np.unique(c[~noise])]
    others = [k for k in ids if k not in flagged][: max(max_labels - len(flagged), 0)]
    labelled = (flagged & set(ids)) | set(others)
    for k in ids:
        m = c == k
        if k in flagged:
            ax.scatter(x[m], y[m], s=16, marker="x", color=FLAG_COLOR, linewidths=0.9, rasterized=True, zorder=3)
        else:
            ax.scatter(x[m], y[m], s=5, color=palette[k % len(palette)], rasterized=True)
        if k in labelled:
            ax.annotate(
                f"{k}" + (" (flagged)" if k in flagged else ""), (float(np.median(x[m])), float(np.median(y[m]))),
                fontsize=8, weight="bold", color=FLAG_COLOR if k in flagged else "black",
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.7},
                zorder=5 if k in flagged else 4,
            )
    handles = [
        Line2D([], [], marker="x", color=FLAG_COLOR, linestyle="none", label="flagged concept"),
        Line2D([], [], marker="o", color=palette[0], linestyle="none", markersize=4, label="other concept"),
        Line2D([], [], marker="o", color=NOISE_COLOR, linestyle="none", markersize=4, label="noise (-1)"),
    ]
    ax.legend(handles=handles, fontsize=8, loc="best")
    ax.set_xticks([])
    ax.set_yticks([])
    shown = f"{len(idx):,} of {len(concept_ids):,} samples" if len(idx) < len(concept_ids) else f"{len(idx):,} samples"
    ax.set_title(f"explanation embedding (UMAP), coloured by concept — {shown}", fontsize=10)
    return fig


def embedding_scatter(
    coords: np.ndarray, concept_ids: np.ndarray, flagged: set[int] | dict[int, Any], max_points: int = 20000
) -> str:
    """``embedding_figure`` as base64 PNG."""
    return _b64(figure_png(embedding_figure(coords, concept_ids, flagged, max_points)))


# ---------------------------------------------------------------- galleries


def _gray(img: np.ndarray) -> np.ndarray:
    """(C, H, W) -> (H, W) or (H, W, 3) for imshow."""
    img = np.asarray(img, dtype=np.float32)
    return img[0] if img.shape[0] == 1 else np.clip(np.moveaxis(img, 0, -1)[..., :3], 0, 1)


def _rgb(img: np.ndarray) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W, 3) float32, grey images repeated to three channels."""
    img = np.clip(np.nan_to_num(np.asarray(img, dtype=np.float32)), 0, 1)
    img = np.repeat(img[:1], 3, axis=0) if img.shape[0] != 3 else img
    return np.moveaxis(img, 0, -1)


def overlay(image: np.ndarray, saliency: np.ndarray, strength: float = 0.8, dim: float = 0.5) -> np.ndarray:
    """The image dimmed to grey with |saliency| (scaled to max 1) as a jet heat map over it.

    Parameters
    ----------
    image : float array of shape (C, H, W) in [0, 1]
    saliency : float array of shape (H, W)
    strength : opacity of the heat map where saliency is highest
    dim : brightness of the image under the heat map (dimmed, so colour reads against white pixels)

    Returns
    -------
    float32 array of shape (H, W, 3) in [0, 1]
    """
    import matplotlib

    grey = _rgb(image).mean(axis=-1, keepdims=True).repeat(3, axis=-1) * dim
    sal = np.abs(np.nan_to_num(np.asarray(saliency, dtype=np.float32)))
    peak = float(sal.max()) if sal.size else 0.0
    sal = sal / peak if peak > 0 else sal
    heat = matplotlib.colormaps["jet"](sal)[..., :3].astype(np.float32)
    # a gamma below 1 keeps moderate relevance visible next to a single hot spot
    weight = strength * np.power(sal, 0.6)[..., None]
    return np.clip((1 - weight) * grey + weight * heat, 0, 1).astype(np.float32)


def gallery_tiles(
    mean_image: np.ndarray,
    mean_map: np.ndarray,
    images: np.ndarray,
    maps: np.ndarray,
    scale: int = 2,
    gap: int = 2,
    box: tuple[int, int, int, int] | None = None,
) -> np.ndarray:
    """Two rows of tiles: top the mean image then each exemplar; bottom their saliency overlays.

    Parameters
    ----------
    mean_image : (C, H, W); mean_map : (H, W)
    images : (n, C, H, W) exemplars; maps : (n, H, W) their saliency maps
    scale : each pixel becomes scale x scale pixels (nearest), so 32 px images stay readable
    box : optional (row0, col0, row1, col1), end exclusive, outlined in red on the mean-map tile
        (the region a detector tested)

    Returns
    -------
    uint8 array of shape (2 * H * scale + 3 * gap, (n + 1) * W * scale + (n + 2) * gap, 3)
    """
    h, w = np.asarray(mean_map).shape
    top = [_rgb(mean_image)] + [_rgb(im) for im in images]
    mean_overlay = overlay(mean_image, mean_map)
    if box is not None:
        r0, c0, r1, c1 = (int(v) for v in box)
        r0, c0, r1, c1 = max(r0, 0), max(c0, 0), min(r1, h), min(c1, w)
        if r1 > r0 and c1 > c0:
            red = np.array([0.9, 0.0, 0.0], dtype=np.float32)
            mean_overlay[r0, c0:c1] = mean_overlay[r1 - 1, c0:c1] = red
            mean_overlay[r0:r1, c0] = mean_overlay[r0:r1, c1 - 1] = red
    bottom = [mean_overlay] + [overlay(im, m) for im, m in zip(images, maps, strict=True)]
    th, tw = h * scale, w * scale
    n = len(top)
    out = np.ones((2 * th + 3 * gap, n * tw + (n + 1) * gap, 3), dtype=np.float32)
    # a thin dark rule separates the concept's mean (first column) from its exemplars
    if n > 1:
        out[:, gap + tw : 2 * gap + tw] = 0.35
    for row, tiles in enumerate((top, bottom)):
        r = gap + row * (th + gap)
        for j, tile in enumerate(tiles):
            col = gap + j * (tw + gap)
            out[r : r + th, col : col + tw] = np.kron(tile, np.ones((scale, scale, 1), dtype=np.float32))
    return np.round(out * 255).astype(np.uint8)


def png_of_array(rgb: np.ndarray, colors: int | None = 256) -> bytes:
    """PNG bytes of a uint8 (H, W, 3) array.

    ``colors``: quantise to a palette of that many colours (noisy images compress 2-3x better and
    look the same at gallery size); None keeps full colour.
    """
    from PIL import Image

    image = Image.fromarray(rgb)
    if colors is not None:
        image = image.quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def png_data_uri(rgb: np.ndarray) -> str:
    """A ``data:image/png;base64,...`` URI of a uint8 (H, W, 3) array, for an <img> in the report."""
    return "data:image/png;base64," + _b64(png_of_array(rgb))


def concept_gallery_figure(
    mean_image: np.ndarray,
    mean_map: np.ndarray,
    images: np.ndarray,
    maps: np.ndarray,
    captions: list[str] | None = None,
    title: str = "",
    box: tuple[int, int, int, int] | None = None,
):
    """The gallery with captions: column 0 the concept's mean image and mean saliency, then exemplars.

    Parameters
    ----------
    mean_image : (C, H, W); mean_map : (H, W); images : (n, C, H, W); maps : (n, H, W)
    captions : one short caption per exemplar (e.g. its sample id and label)
    box : optional (row0, col0, row1, col1) outlined on the mean saliency (the region a detector tested)
    """
    from matplotlib.patches import Rectangle

    n = len(images) + 1
    fig = _figure((1.25 * n, 2.9))
    axes = fig.subplots(2, n, squeeze=False)
    h, w = np.asarray(mean_map).shape
    axes[0, 0].imshow(_rgb(mean_image), interpolation="nearest")
    axes[0, 0].set_title("concept mean", fontsize=7)
    axes[0, 0].set_ylabel("image", fontsize=7)
    axes[1, 0].imshow(overlay(mean_image, mean_map), interpolation="nearest")
    axes[1, 0].set_ylabel("saliency", fontsize=7)
    if box is not None:
        r0, c0, r1, c1 = (float(v) for v in box)
        axes[1, 0].add_patch(Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0, r1 - r0, fill=False, ec=FLAG_COLOR, lw=1.2))
    for j, (img, m) in enumerate(zip(images, maps, strict=True), start=1):
        axes[0, j].imshow(_rgb(img), interpolation="nearest")
        axes[1, j].imshow(overlay(img, m), interpolation="nearest")
        if captions:
            axes[0, j].set_title(captions[j - 1], fontsize=6)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- comparison

COMPARISON_METRICS = (("accuracy", "accuracy"), ("worst_group_accuracy", "worst-group accuracy"))


def comparison_figure(comparison: dict[str, Any], include_val: bool = False):
    """Accuracy and worst-group accuracy per variant and evaluation split, bars with 95% intervals (none for
    a summary without one: under 3 seeds; the panel title says which).

    Parameters
    ----------
    comparison : ``compare/comparison.json`` (variants -> split -> metric -> {mean, ci95, values})
    include_val : also plot the validation split (it chose nothing here, but it is not a test set)
    """
    variants = list(comparison["variants"])
    splits = [s for s in next(iter(comparison["variants"].values())) if include_val or s != "val"]
    metrics = [(k, name) for k, name in COMPARISON_METRICS
               if any(k in comparison["variants"][v].get(s, {}) for v in variants for s in splits)]
    # wider panels for more bars, so that each bar keeps room for its value
    fig = _figure((max(4.4, 1.0 + 0.45 * len(variants) * len(splits)) * len(metrics), 3.4))
    axes = fig.subplots(1, len(metrics), squeeze=False)
    width = 0.8 / max(len(variants), 1)
    for ax, (key, name) in zip(axes[0], metrics, strict=True):
        with_ci = without_ci = False
        for i, v in enumerate(variants):
            cells = [comparison["variants"][v].get(s, {}).get(key) for s in splits]
            means = np.array([c["mean"] if c else np.nan for c in cells])
            # no whisker where there is no interval (under 3 seeds: soxai.compare.stats.summarize)
            cis = [interval(c) for c in cells]
            lo = np.array([c["mean"] - ci[0] if ci else 0.0 for c, ci in zip(cells, cis, strict=True)])
            hi = np.array([ci[1] - c["mean"] if ci else 0.0 for c, ci in zip(cells, cis, strict=True)])
            with_ci |= any(ci is not None for ci in cis)
            without_ci |= any(c and ci is None for c, ci in zip(cells, cis, strict=True))
            pos = np.arange(len(splits)) + (i - (len(variants) - 1) / 2) * width
            ax.bar(pos, means, width, yerr=[lo, hi], capsize=3, label=v.replace("_", " "),
                   color=VARIANT_COLORS.get(v, f"C{i}"), error_kw={"elinewidth": 1})
            for p, m, top in zip(pos, means, means + hi, strict=True):
                if np.isfinite(m):
                    ax.text(p, min(top, 1.0) + 0.01, f"{m:.2f}", ha="center", va="bottom", fontsize=6)
        ax.set_xticks(np.arange(len(splits)), splits, fontsize=8)
        ax.set_ylim(0, 1.1)
        how = "mean, 95% CI over seeds" if with_ci and not without_ci else \
            "mean; no interval below 3 seeds" if not with_ci else "mean, 95% CI where 3 or more seeds"
        ax.set_title(f"{name} ({how})", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(fontsize=7, loc="upper left", ncol=min(len(variants), 4), frameon=False,
                      bbox_to_anchor=(0, -0.12))
    fig.tight_layout()
    return fig


def comparison_chart(comparison: dict[str, Any]) -> str:
    """``comparison_figure`` as base64 PNG."""
    return _b64(figure_png(comparison_figure(comparison)))


def detector_scores_figure(scores: pd.DataFrame, flagged: set[int] | dict[int, Any]):
    """Every detector's score per concept (higher = more suspicious); flagged concepts in red.

    Parameters
    ----------
    scores : ``bias/scores.parquet`` (concept_id, detector, score, is_bias, reason)
    """
    flagged = {int(k) for k in flagged}
    detectors = [d for d in scores["detector"].unique() if d != "override"] or list(scores["detector"].unique())
    fig = _figure((6.8, 1.2 + 1.6 * len(detectors)))
    axes = fig.subplots(len(detectors), 1, squeeze=False)
    for ax, det in zip(axes[:, 0], detectors, strict=True):
        rows = scores[scores["detector"] == det].sort_values("concept_id")
        ids = rows["concept_id"].astype(int).to_numpy()
        colors = [FLAG_COLOR if i in flagged else "#7f7f7f" for i in ids]
        ax.bar(np.arange(len(ids)), rows["score"].to_numpy(dtype=float), color=colors)
        ax.set_xticks(np.arange(len(ids)), [str(i) for i in ids], fontsize=7)
        ax.axhline(0, color="black", lw=0.5)
        ax.set_ylabel("score", fontsize=8)
        ax.set_title(f"detector {det}: score per concept (red = flagged)", fontsize=9)
    axes[-1, 0].set_xlabel("concept id", fontsize=8)
    fig.tight_layout()
    return fig
