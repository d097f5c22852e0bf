"""Kernels: summary statistics over seeds, and detection precision/recall."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def summarize(values: list[float]) -> dict[str, Any]:
    """Mean and Student-t 95% interval of ``values`` (one per seed)."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    n = len(v)
    mean = float(v.mean()) if n else float("nan")
    if n < 2:
        return {"mean": mean, "ci95": [mean, mean], "values": v.tolist(), "n": n}
    half = float(stats.t.ppf(0.975, n - 1) * v.std(ddof=1) / math.sqrt(n))
    return {"mean": mean, "ci95": [mean - half, mean + half], "values": v.tolist(), "n": n}


def excludes_zero(summary: dict[str, Any]) -> bool:
    lo, hi = summary["ci95"]
    return bool(lo > 0 or hi < 0)


def detection_scores(dropped: np.ndarray, planted: np.ndarray) -> dict[str, Any]:
    """Precision and recall of the dropped samples against the planted (known) artifact group.

    dropped, planted : bool arrays of shape (n_train,)
    """
    tp = int((dropped & planted).sum())
    n_drop, n_plant = int(dropped.sum()), int(planted.sum())
    return {
        "n_dropped": n_drop,
        "n_planted": n_plant,
        "true_positives": tp,
        "precision": tp / n_drop if n_drop else float("nan"),
        "recall": tp / n_plant if n_plant else float("nan"),
    }


def format_summary(summary: dict[str, Any] | None) -> str:
    """'mean [lo, hi]' with three decimals, '–' when missing."""
    if not summary:
        return "–"
    lo, hi = summary["ci95"]
    return f"{summary['mean']:.3f} [{lo:.3f}, {hi:.3f}]"
