"""Kernels: summary statistics over seeds, and detection precision/recall."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# Fewer seeds than this get a mean and no interval. At n=2 the Student-t quantile is 12.7, so the "95% interval"
# is the mean ± 9 times the distance between the two seeds: on an accuracy it reads like [-2.1, 3.9], which says
# only "two seeds". Clipping it to [0, 1] would dress that up as a finding, so there is none to print.
MIN_SEEDS_FOR_INTERVAL = 3


def summarize(values: list[float]) -> dict[str, Any]:
    """Mean over seeds and, from :data:`MIN_SEEDS_FOR_INTERVAL` (3) values on, the Student-t 95% interval.

    Parameters
    ----------
    values : one value per seed (an accuracy, or a paired difference of two variants' accuracies)

    Returns
    -------
    ``{"mean", "ci95", "values", "n"}``: ``ci95`` is ``[lo, hi]``, or ``None`` below 3 values (and for 0 values,
    whose mean is nan). The interval is not clipped to a metric's range: with 3 or more seeds it stays inside
    [0, 1] for an accuracy unless the seeds disagree wildly, and then the reader should see that.
    """
    from scipy import stats

    v = np.asarray(values, dtype=float)
    n = len(v)
    mean = float(v.mean()) if n else float("nan")
    if n < MIN_SEEDS_FOR_INTERVAL:
        return {"mean": mean, "ci95": None, "values": v.tolist(), "n": n}
    half = float(stats.t.ppf(0.975, n - 1) * v.std(ddof=1) / math.sqrt(n))
    return {"mean": mean, "ci95": [mean - half, mean + half], "values": v.tolist(), "n": n}


def interval(summary: dict[str, Any] | None) -> tuple[float, float] | None:
    """``(lo, hi)`` of a summary's 95% interval; ``None`` when it has none (fewer than 3 seeds, or missing)."""
    ci = (summary or {}).get("ci95")
    if ci is None or not all(math.isfinite(x) for x in ci):
        return None
    return float(ci[0]), float(ci[1])


def excludes_zero(summary: dict[str, Any]) -> bool:
    """Whether the 95% interval lies on one side of 0; False without an interval (no claim from under 3 seeds)."""
    ci = interval(summary)
    return ci is not None and (ci[0] > 0 or ci[1] < 0)


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


def format_summary(summary: dict[str, Any] | None, signed: bool = False) -> str:
    """'mean [lo, hi]' with three decimals ('+' on both sides with ``signed``, for differences);
    'mean (n=2, no interval)' below 3 seeds; '–' when missing."""
    if not summary or summary.get("mean") is None or not math.isfinite(summary["mean"]):
        return "–"
    f = "+.3f" if signed else ".3f"
    ci = interval(summary)
    if ci is None:
        return f"{summary['mean']:{f}} (n={summary.get('n', len(summary.get('values', [])))}, no interval)"
    return f"{summary['mean']:{f}} [{ci[0]:{f}}, {ci[1]:{f}}]"


def seeds_phrase(n_seeds: int) -> str:
    """How the numbers beside it were summarised: 'mean [95% CI] over 5 seeds', or below 3 seeds
    'mean over 2 seeds, no interval below 3'."""
    s = "s" if n_seeds != 1 else ""
    if n_seeds >= MIN_SEEDS_FOR_INTERVAL:
        return f"mean [95% CI] over {n_seeds} seed{s}"
    return f"mean over {n_seeds} seed{s}, no interval below {MIN_SEEDS_FOR_INTERVAL}"
