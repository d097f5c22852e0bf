"""Kernel of the ``reweight`` correction (a retrain variant beside pruning); ``augment`` is soxai.train.augment.

reweight — group-balanced sampling with concept groups, no group labels: within each class every conflict
concept (the bias stage's conflict test: its members are wrong more often than the rest of their class, the
trace a confounder on most of a class leaves) is a group of its own and the rest of the class one more
(:func:`reweight_groups`); every group gets an equal share of the class's draws, and each class keeps its share
of the training set. Only the conflicts tied to a flagged shortcut that most of a class carries are groups
(:func:`tied_conflicts`, since reweight logic 4): with none, reweight trains as the baseline (its samples, its
uniform draws, its last epoch). A class without a conflict is drawn as in the baseline. Until reweight logic 3
every concept was a group: that also drew small concepts the model gets right more often, a mark on a minority
of a class among them, and taught the shortcut harder (a ring at random places in 20% of a Fashion-MNIST class: -0.08 on
the attacked test; -0.32 at another data seed, where the mark was not flagged). Where the audit flagged a
shortcut, the samples its carrier test found carrying it are also never drawn more often than in the baseline
(:func:`spare_carriers`). The weights are sampling probabilities
(``soxai.train.loop.weighted_epoch_order``), not repetitions as in JTT: they are fractional, and an
epoch keeps the baseline's number of steps, so the comparison measures the balance, not more updates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from soxai.data.class_names import class_text

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


def spare_carriers(weights: np.ndarray, carrier: np.ndarray, cap: float) -> np.ndarray:
    """One class's ``weights`` with no carrier above 1: what the carriers above 1 give up goes to the class's
    other samples in proportion to their weights, none above ``cap`` (water-filling). What no one can take —
    every other sample at the cap, or none left (a class whose samples all carry the shortcut) — is left out,
    and the class is drawn a little less than its share.

    Each pass grows the open samples by one common factor; those it would take past the cap are set to the cap
    and closed, and the pass repeats for the rest; a pass that closes none ends it (at most n passes).

    weights : float array (n,) >= 0, one class's; carrier : bool array (n,); returns a new float array (n,)
    """
    w = np.array(weights, dtype=np.float64, copy=True)
    carrier = np.asarray(carrier, dtype=bool)
    over = carrier & (w > 1.0)
    excess = float((w[over] - 1.0).sum())
    w[over] = 1.0
    open_ = ~carrier & (w < cap)
    while excess > 0 and open_.any():
        total = float(w[open_].sum())
        if total <= 0:
            break
        grown = w[open_] * (1.0 + excess / total)
        full = grown >= cap
        idx = np.flatnonzero(open_)
        if not full.any():
            w[idx] = grown
            break
        excess -= float((cap - w[idx[full]]).sum())
        w[idx[full]] = cap
        open_[idx[full]] = False
    return w


REST = -(10**9)  # the group of a class's samples outside its conflict concepts (reweight_groups)


def reweight_groups(labels: np.ndarray, concepts: np.ndarray, conflicts: Any) -> np.ndarray:
    """The groups reweighting balances: each conflict concept of a class (the bias stage's conflict test: its
    members are wrong more often than the rest of their class, soxai.bias.conflicts) is a group of its own, and
    the rest of the class is one group (:data:`REST`). A class without a conflict is one group, drawn as in the
    baseline.

    Balancing every concept drew every small concept more often, whether the model fails it or not: a mark on a
    minority of a class forms small concepts that the model gets right by the mark, and drawing them more often
    taught the shortcut harder. A conflict is a group the baseline fails; that is what group DRO upweights.

    labels, concepts : int arrays (n,); conflicts : iterable of (concept_id, label) pairs. Returns int (n,).
    """
    concepts = np.asarray(concepts, dtype=np.int64)
    named = np.zeros(len(concepts), dtype=bool)
    for cid, label in conflicts:
        named |= (concepts == int(cid)) & (np.asarray(labels) == int(label))
    return np.where(named, concepts, REST)


def tied_conflicts(labels: np.ndarray, concepts: np.ndarray, preds: np.ndarray, conflicts: Any,
                   flagged: Any, carrier: np.ndarray, cls: Callable[[int], str] = class_text
                   ) -> tuple[list[tuple[int, int]], list[dict[str, Any]]]:
    """The conflicts reweighting corrects: those tied to a flagged shortcut that most of a class carries.

    A conflict is the minority a shortcut on most of a class leaves behind (soxai.bias.conflicts), but a hard
    subgroup (shirts that look like coats) passes the same test. The audit tells them apart where it flagged
    the shortcut: a conflict of class k is *tied* when most of class k carries a flagged shortcut (the
    conflict is what lacks it: ColoredMNIST's minority colour) or most of the class its members' errors are
    predicted as does (the conflict carries that class's shortcut: Waterbirds' land birds on water). A
    sample carries a flagged shortcut when it is a member of a flagged concept of its class or the carrier
    test found it carrying one. "Most" is a majority, the conflict test's own premise, not a fitted value.
    A shortcut on a minority of a class (a mark on 10% of it) is corrected by dropping or decorrelating its
    carriers; upweighting its class's conflicts there balanced hard subgroups, and cost accuracy (a moving
    ring: 0.57 against the baseline's 0.61 on the attacked test; a tint on 10% of a cells class: 0.77
    against 0.96 on the clean test, reweight logic 3). An untied conflict stays in the report, drawn as in
    the baseline.

    labels, concepts, preds : int arrays (n,), the training samples' classes, concepts (-1 noise) and the
    baseline's predictions; conflicts : iterable of (concept_id, label); flagged : the flagged concept ids;
    carrier : bool array (n,), the carrier test's carriers.

    Returns
    -------
    tied : the (concept_id, label) pairs reweighting balances
    untied : one correction row per other conflict, {concept_id, label, correction: 'none', n_samples, reason}
        (:func:`settle_untied` adds the weight each is drawn with)
    """
    labels, concepts, preds = np.asarray(labels), np.asarray(concepts, dtype=np.int64), np.asarray(preds)
    carrying = np.isin(concepts, [int(c) for c in flagged]) | np.asarray(carrier, dtype=bool)
    share = {int(k): float(carrying[labels == k].mean()) for k in np.unique(labels)}
    tied: list[tuple[int, int]] = []
    untied: list[dict[str, Any]] = []
    for cid, k in conflicts:
        cid, k = int(cid), int(k)
        member = (concepts == cid) & (labels == k)
        wrong = member & (preds != labels)
        to = int(np.bincount(preds[wrong]).argmax()) if wrong.any() else k
        if share.get(k, 0.0) > 0.5 or share.get(to, 0.0) > 0.5:
            tied.append((cid, k))
            continue
        where = f"{cls(k)} ({share.get(k, 0.0):.0%} of it)" + (
            f" or of {cls(to)}, which its errors are most often predicted as ({share.get(to, 0.0):.0%})"
            if to != k else "")
        untied.append({
            "concept_id": cid, "label": k, "correction": "none", "n_samples": int(member.sum()),
            "reason": (f"{cls(k)}: concept {cid} is a conflict (the baseline is wrong on {int(wrong.sum())} of its "
                       f"{int(member.sum())}), but no flagged shortcut is carried by most of {where}: a hard "
                       "subgroup, or a shortcut no test flagged")})
    return tied, untied


def settle_untied(untied: list[dict[str, Any]], labels: np.ndarray, concepts: np.ndarray,
                  weights: np.ndarray, cls: Callable[[int], str] = class_text) -> list[dict[str, Any]]:
    """The :func:`tied_conflicts` rows with the weight their members are drawn with and a reason that says it: as in
    the baseline, or (an untied conflict in a class with a tied one) with the rest of its class, less often."""
    labels, concepts, weights = np.asarray(labels), np.asarray(concepts), np.asarray(weights, dtype=np.float64)
    out = []
    for row in untied:
        member = (concepts == row["concept_id"]) & (labels == row["label"])
        w = float(np.median(weights[member])) if member.any() else 1.0
        drawn = ("drawn as in the baseline" if abs(w - 1.0) <= 1e-9 else
                 f"drawn with the rest of {cls(row['label'])}, {w:.2f}x as often as in the baseline")
        out.append({**row, "weight": round(w, 6), "reason": f"{row['reason']}; {drawn}"})
    return out


def carrier_mask(carriers: Any, sample_ids: np.ndarray) -> np.ndarray:
    """Which of ``sample_ids`` the carrier test found carrying a flagged shortcut (``carries`` in any row of
    bias/carriers.parquet, ``carriers``; None: no flag, no carrier). bool array (n,)."""
    if carriers is None or len(carriers) == 0:
        return np.zeros(len(sample_ids), dtype=bool)
    found = set(carriers.loc[carriers["carries"].astype(bool), "sample_id"])
    return np.fromiter((s in found for s in sample_ids), dtype=bool, count=len(sample_ids))


def group_balanced_weights(labels: np.ndarray, groups: np.ndarray, max_upweight: float,
                           carriers: np.ndarray | None = None) -> np.ndarray:
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
    carriers : bool array of shape (n,), the samples the carrier test found carrying a flagged shortcut, or
        None: none of them is drawn more often than in the baseline (:func:`spare_carriers`)

    Returns
    -------
    float array of shape (n,)
    """
    labels, groups = np.asarray(labels), np.asarray(groups)
    carrier = np.zeros(len(labels), dtype=bool) if carriers is None else np.asarray(carriers, dtype=bool)
    weights = np.ones(len(labels), dtype=np.float64)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        _, inverse, sizes = np.unique(groups[idx], return_inverse=True, return_counts=True)
        shares = capped_equal_shares(sizes, len(idx), max_upweight)
        weights[idx] = (shares / sizes)[inverse]
        if carrier[idx].any():
            weights[idx] = spare_carriers(weights[idx], carrier[idx], max_upweight)
    return weights


def reweight_record(labels: np.ndarray, groups: np.ndarray, weights: np.ndarray, max_upweight: float,
                    why: str = "", carriers: np.ndarray | None = None,
                    cls: Callable[[int], str] = class_text) -> list[dict[str, Any]]:
    """One correction row per (class, group): how many samples, and how much more or less each is drawn (the
    group's samples outside ``carriers``; its carriers, when it has some, are named with their own weight).

    Returns
    -------
    list of {concept_id, label, correction: 'reweight', n_samples, weight, reason}
    """
    labels, groups, weights = np.asarray(labels), np.asarray(groups), np.asarray(weights)
    carrier = np.zeros(len(labels), dtype=bool) if carriers is None else np.asarray(carriers, dtype=bool)
    out = []
    for c in np.unique(labels):
        in_class = labels == c
        ids, sizes = np.unique(groups[in_class], return_counts=True)
        n_c, n_groups = int(in_class.sum()), len(ids)
        for g, n_g in zip(ids, sizes, strict=True):
            here = in_class & (groups == g)
            plain, carried = here & ~carrier, here & carrier
            w = float(weights[plain][0] if plain.any() else weights[carried][0])
            equal = n_c / (n_groups * n_g)
            name = ("the rest of the class (outside its conflict concepts)" if g == REST else "noise" if g < 0
                    else f"concept {int(g)}")
            reason = (f"{cls(int(c))}: {name} holds {int(n_g)} of {n_c} samples, one of {n_groups} groups; each "
                      f"drawn {w:.2f}x as often as in the baseline")
            if equal > max_upweight + 1e-9 or w >= max_upweight - 1e-9:
                reason += (f" (capped at {max_upweight:g}x; an equal share would be {equal:.1f}x"
                           + (", and the carriers' draws were added" if equal <= max_upweight + 1e-9 else "") + ")")
            if carried.any():
                reason += (f"; {int(carried.sum())} of them carry a flagged shortcut (the carrier test) and are "
                           f"drawn {float(weights[carried].max()):.2f}x, never more often than in the baseline")
            out.append({"concept_id": None if g == REST else int(g), "label": int(c), "correction": "reweight",
                        "n_samples": int(n_g),
                        "weight": round(w, 6), "reason": reason + why})
    return out
