"""Kernel of the ``reweight`` correction (a retrain variant beside pruning); ``augment`` is soxai.train.augment.

reweight — group-balanced sampling with the discovered concepts as the groups, no group labels: within
each class every concept (noise one more group) gets an equal share of the class's draws, and each class
keeps its share of the training set. A concept-minority (the few samples of a class whose explanation
differs from the majority's, which a confounder on most of a class leaves as its only trace) is drawn
more often, a shortcut-majority less. It needs no flag. The weights are sampling probabilities
(``soxai.train.loop.weighted_epoch_order``), not repetitions as in JTT: they are fractional, and an
epoch keeps the baseline's number of steps, so the comparison measures the balance, not more updates.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# ---------------------------------------------------------------- reweight


def capped_equal_shares(sizes: np.ndarray, total: float, cap: float) -> np.ndarray:
    """Split ``total`` equally between groups, no group above ``cap`` times its size.

    Groups whose equal share would exceed the cap get exactly ``cap * size``; what they leave is split
    equally between the others (water-filling), so the shares still add up to ``total``.

    Parameters
    ----------
    sizes : int array of shape (n_groups,), every size >= 1
    total : the sum of the shares (the class's sample count: the class keeps its share)
    cap : the largest share per sample of a group (>= 1, so a solution exists)

    Returns
    -------
    float array of shape (n_groups,), the total weight of each group
    """
    sizes = np.asarray(sizes, dtype=np.float64)
    shares = np.zeros(len(sizes))
    open_ = np.ones(len(sizes), dtype=bool)
    remaining = float(total)
    while open_.any():
        share = remaining / int(open_.sum())
        over = open_ & (share > cap * sizes)
        if not over.any():
            shares[open_] = share
            break
        shares[over] = cap * sizes[over]
        remaining -= float(shares[over].sum())
        open_ &= ~over
    return shares


def group_balanced_weights(labels: np.ndarray, groups: np.ndarray, max_upweight: float) -> np.ndarray:
    """Per-sample sampling weights: every group of a class gets an equal share of the class's draws.

    Within class c (n_c samples, G groups), a group of n_g samples gets the total weight n_c / G, so each
    of its samples weighs n_c / (G n_g); no sample weighs more than ``max_upweight`` (the rest of a capped
    group's share goes to the class's other groups: ``capped_equal_shares``). Each class's weights add
    up to n_c: classes keep their original share, and the mean weight is 1 (the baseline's).

    Parameters
    ----------
    labels : int array of shape (n,)
    groups : int array of shape (n,), the concept of each sample (-1, noise, is a group like any other)
    max_upweight : the cap, >= 1

    Returns
    -------
    float array of shape (n,)
    """
    labels, groups = np.asarray(labels), np.asarray(groups)
    weights = np.ones(len(labels), dtype=np.float64)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        _, inverse, sizes = np.unique(groups[idx], return_inverse=True, return_counts=True)
        shares = capped_equal_shares(sizes, len(idx), max_upweight)
        weights[idx] = (shares / sizes)[inverse]
    return weights


def reweight_record(labels: np.ndarray, groups: np.ndarray, weights: np.ndarray, max_upweight: float,
                    why: str = "") -> list[dict[str, Any]]:
    """One correction row per (class, group): how many samples, and how much more or less each is drawn.

    Returns
    -------
    list of {concept_id, label, correction: 'reweight', n_samples, weight, reason}
    """
    labels, groups, weights = np.asarray(labels), np.asarray(groups), np.asarray(weights)
    out = []
    for c in np.unique(labels):
        in_class = labels == c
        ids, sizes = np.unique(groups[in_class], return_counts=True)
        n_c, n_groups = int(in_class.sum()), len(ids)
        for g, n_g in zip(ids, sizes, strict=True):
            w = float(weights[in_class & (groups == g)][0])
            equal = n_c / (n_groups * n_g)
            name = "noise" if g < 0 else f"concept {int(g)}"
            reason = (f"class {int(c)}: {name} holds {int(n_g)} of {n_c} samples, one of {n_groups} groups; each "
                      f"drawn {w:.2f}x as often as in the baseline")
            if equal > max_upweight + 1e-9:
                reason += f" (capped at {max_upweight:g}x; an equal share would be {equal:.1f}x)"
            out.append({"concept_id": int(g), "label": int(c), "correction": "reweight", "n_samples": int(n_g),
                        "weight": round(w, 6), "reason": reason + why})
    return out
