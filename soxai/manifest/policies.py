"""Prune policies (registry) and the random-prune control.

A policy maps the training samples (with their concept) and the flagged concepts to keep/drop
decisions with a reason per dropped sample.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd


def drop_flagged(train: pd.DataFrame, flagged: dict[int, str]) -> tuple[np.ndarray, list[str]]:
    """Drop every member of a flagged concept.

    Parameters
    ----------
    train : DataFrame with a ``concept_id`` column, one row per training sample
    flagged : {concept_id: reason}

    Returns
    -------
    keep : bool array of shape (n,)
    reasons : one string per row ('' for kept samples)
    """
    cids = train["concept_id"].to_numpy()
    keep = ~np.isin(cids, list(flagged))
    reasons = ["" if k else f"member of flagged concept {int(c)}" for k, c in zip(keep, cids, strict=True)]
    return keep, reasons


PRUNE_POLICIES: dict[str, Callable[[pd.DataFrame, dict[int, str]], tuple[np.ndarray, list[str]]]] = {
    "drop_flagged": drop_flagged,
}


def random_control(labels: np.ndarray, keep: np.ndarray, seed: int) -> np.ndarray:
    """Drop, per class, as many samples as ``keep`` drops, chosen at random.

    Parameters
    ----------
    labels : int array of shape (n,)
    keep : bool array of shape (n,), the pruned policy's decision

    Returns
    -------
    keep_control : bool array of shape (n,)
    """
    rng = np.random.default_rng(seed)
    out = np.ones(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n_drop = int((~keep[idx]).sum())
        if n_drop:
            out[rng.choice(idx, size=n_drop, replace=False)] = False
    return out
