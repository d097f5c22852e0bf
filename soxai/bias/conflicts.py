"""Kernel: the concepts of a class that the baseline gets wrong far more often than the rest of the class.

A shortcut carried by most of a class (a colour, a background) leaves one trace that no transplant can
show, because the shortcut is the class's typical sample: the class's minority that lacks it. The model
predicts that minority by the shortcut too, so it is wrong on it, and where the explanation vectors follow
the confounder (channel relevance does, soxai.embed.relevance) the minority is a concept of its own. This
test finds such concepts: for each non-noise concept, a one-sided Fisher exact test of its members' error
rate on the training set against the rest of its class's, Bonferroni over the concepts tested; a concept
is a *conflict* when the corrected p-value is at most ``max_p_value``. One test, one threshold.

A conflict is not pruned: dropping the minority would make the shortcut perfect. It is what the
``reweight`` retrain variant upweights where a flagged shortcut is carried by most of its class or of the class
its errors go to (soxai.train.corrections.tied_conflicts). A hard subgroup of a class (shirts that look like
coats) passes the test too: the reason says both readings. The errors are the
baseline's on its own training samples, so a model that fits every training sample leaves nothing to find.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from soxai.data.class_names import class_text

CONFLICT_COLUMNS = ("concept_id", "label", "n", "errors", "error_rate", "rest_n", "rest_errors",
                    "rest_error_rate", "p_value", "p_bonferroni", "is_conflict", "pred_majority", "reason")


def conflict_concepts(assignments: pd.DataFrame, max_p_value: float = 0.01,
                      class_names: Sequence[str] = ()) -> pd.DataFrame:
    """Test every non-noise concept's training error against the rest of its class.

    Parameters
    ----------
    assignments : training samples with columns label, pred (the baseline's prediction) and concept_id
        (-1 = noise, which is never tested but counts in the rest of its class)
    max_p_value : flag a concept when its Bonferroni-corrected p-value is at most this
    class_names : the name of each label, for the reasons (empty: the label codes)

    Returns
    -------
    One row per non-noise concept, in concept order (:data:`CONFLICT_COLUMNS`): its class, size, errors and
    error rate, the same for the rest of its class, the one-sided Fisher p-value and its Bonferroni
    correction, ``is_conflict``, the class its members are most often predicted as, and a reason.
    """
    from scipy.stats import fisher_exact

    missing = {"label", "pred", "concept_id"} - set(assignments.columns)
    if missing:
        raise ValueError(f"conflict_concepts needs the columns label, pred and concept_id; missing {sorted(missing)}")
    labels = assignments["label"].to_numpy(dtype=np.int64)
    preds = assignments["pred"].to_numpy(dtype=np.int64)
    cids = assignments["concept_id"].to_numpy(dtype=np.int64)
    wrong = preds != labels
    tested = sorted(int(c) for c in np.unique(cids) if c >= 0)
    rows = []
    for cid in tested:
        member = cids == cid
        label = int(np.bincount(labels[member]).argmax())
        rest = (labels == label) & ~member
        n, e = int(member.sum()), int(wrong[member].sum())
        rn, re_ = int(rest.sum()), int(wrong[rest].sum())
        p = float(fisher_exact([[e, n - e], [re_, rn - re_]], alternative="greater")[1]) if rn else 1.0
        row = {"concept_id": cid, "label": label, "n": n, "errors": e, "error_rate": e / n, "rest_n": rn,
               "rest_errors": re_, "rest_error_rate": re_ / rn if rn else float("nan"), "p_value": p,
               "p_bonferroni": min(p * len(tested), 1.0), "pred_majority": int(np.bincount(preds[member]).argmax())}
        row["is_conflict"] = row["p_bonferroni"] <= max_p_value
        row["reason"] = _reason(row, len(tested), max_p_value, class_names)
        rows.append(row)
    # is_conflict stays boolean when there is no row (a run whose samples are all noise), so masks keep working
    return pd.DataFrame(rows, columns=list(CONFLICT_COLUMNS)).astype({"is_conflict": bool})


def _reason(r: dict, n_tested: int, max_p_value: float, names: Sequence[str]) -> str:
    head = (f"the baseline is wrong on {r['errors']} of concept {r['concept_id']}'s {r['n']} training samples "
            f"({r['error_rate']:.0%}, most predicted as {class_text(r['pred_majority'], names)}) and on "
            f"{r['rest_errors']} of the other {r['rest_n']} of {class_text(r['label'], names)} "
            f"({r['rest_error_rate']:.0%}); one-sided Fisher "
            f"p={r['p_value']:.1g}, x{n_tested} concepts (Bonferroni) = {r['p_bonferroni']:.1g}")
    if r["is_conflict"]:
        return (head + f" <= {max_p_value:g}: a conflict — the class's majority is predicted by something these "
                "samples lack (a shortcut on most of the class), or they are a hard subgroup; not pruned: the "
                "reweight variant upweights it where a flagged shortcut is carried by most of its class or of the "
                "class its errors go to")
    return head + f" > {max_p_value:g}: no conflict"
