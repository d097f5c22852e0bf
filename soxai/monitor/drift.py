"""Kernels: the concept mix of new samples against a reference run, and whether it moved."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from soxai.concepts.cluster import NOISE


def wilson_interval(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of the proportion k/n ((0, 1) when n is 0)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def share_difference(k_new: int, n_new: int, k_ref: int, n_ref: int) -> dict[str, float]:
    """Difference of two shares (new minus reference) with Newcombe's 95% interval and Fisher's p-value.

    Returns {new_share, ref_share, diff, ci95: [lo, hi], p_value} (two-sided exact test).
    """
    from scipy.stats import fisher_exact

    p1, p0 = (k_new / n_new if n_new else 0.0), (k_ref / n_ref if n_ref else 0.0)
    l1, u1 = wilson_interval(k_new, n_new)
    l0, u0 = wilson_interval(k_ref, n_ref)
    d = p1 - p0
    lo = d - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2)
    hi = d + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)
    p = float(fisher_exact([[k_new, n_new - k_new], [k_ref, n_ref - k_ref]])[1]) if n_new and n_ref else 1.0
    return {"new_share": p1, "ref_share": p0, "diff": d, "ci95": [lo, hi], "p_value": p}


def concept_mix(ref_ids: np.ndarray, new_ids: np.ndarray, flagged: dict[int, str], concepts: pd.DataFrame,
                alpha: float) -> pd.DataFrame:
    """One row per concept (noise included): counts and shares in the reference and in the new data.

    Parameters
    ----------
    ref_ids, new_ids : int arrays of concept ids (-1 = noise) of the reference and the new samples
    flagged : {concept_id: reason} of the reference run
    concepts : the reference run's concepts table (concept_id, label)
    alpha : level at which a change of share counts as drift

    Returns
    -------
    DataFrame: concept_id, label, flagged, reason, ref_n, ref_share, new_n, new_share, diff, ci_lo, ci_hi,
    p_value, drift ('up' / 'down' / ''), sorted flagged first, then by id, noise last.
    """
    n_ref, n_new = len(ref_ids), len(new_ids)
    label = dict(zip(concepts["concept_id"].astype(int), concepts["label"].astype(int), strict=True))
    rows = []
    for cid in sorted(set(np.unique(ref_ids)) | set(np.unique(new_ids)) | set(label)):
        k_ref, k_new = int((ref_ids == cid).sum()), int((new_ids == cid).sum())
        diff = share_difference(k_new, n_new, k_ref, n_ref)
        moved = diff["p_value"] < alpha
        rows.append({
            "concept_id": int(cid), "label": label.get(int(cid), -1), "flagged": int(cid) in flagged,
            "reason": flagged.get(int(cid), ""), "ref_n": k_ref, "ref_share": diff["ref_share"], "new_n": k_new,
            "new_share": diff["new_share"], "diff": diff["diff"], "ci_lo": diff["ci95"][0],
            "ci_hi": diff["ci95"][1], "p_value": diff["p_value"],
            "drift": ("up" if diff["diff"] > 0 else "down") if moved else "",
        })
    table = pd.DataFrame(rows)
    order = np.lexsort((table["concept_id"].to_numpy(), table["concept_id"].to_numpy() == NOISE,
                        ~table["flagged"].to_numpy()))
    return table.iloc[order].reset_index(drop=True)


def mix_test(mix: pd.DataFrame) -> dict[str, float]:
    """Did the concept mix as a whole move? Total variation distance and a chi-square test on the counts."""
    from scipy.stats import chi2_contingency

    counts = mix[["ref_n", "new_n"]].to_numpy().T
    counts = counts[:, counts.sum(axis=0) > 0]
    tvd = float(0.5 * np.abs(mix["new_share"] - mix["ref_share"]).sum())
    if counts.shape[1] < 2 or (counts.sum(axis=1) == 0).any():
        return {"total_variation": tvd, "chi2": 0.0, "p_value": 1.0}
    chi2, p, _, _ = chi2_contingency(counts)
    return {"total_variation": tvd, "chi2": float(chi2), "p_value": float(p)}
