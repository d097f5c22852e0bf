"""Which epoch a reweighted model keeps: its group-balanced accuracy on the validation split, concept groups.

Reweighting (soxai.train.corrections) samples each tied conflict concept of a class as often as the rest of it, so
what it optimises is a group-balanced risk. Its last epoch is not the
best estimate of that objective: the few minority samples it repeats are memorised within a few epochs, after
which the model leans on the shortcut again for everything else (on ColoredMNIST, 3 seeds, the attacked test's
accuracy peaked at 0.64 after 2 of 8 epochs and fell to 0.46 at the 8th; bench/published.py). The held-out
estimate of the same objective picks the epoch instead: the validation samples are explained with the
baseline and assigned to the run's concepts by its saved concept model (as the monitor assigns new data), and
the epoch with the highest mean accuracy over the (class, concept) groups of the validation split is kept.
No group labels are read: the groups are every concept of a class, a finer split than the conflict groups
reweighting trains on (each conflict against the rest of its class), so the kept epoch is the one that serves
all of a class's concepts best on held-out data, not only the conflicts. This is JTT's and group DRO's model
selection (worst-group validation accuracy over the true groups) with the discovered concepts in place of
the labels, and the mean over groups in place of the minimum, the quantity reweighting itself minimises;
it needs no minimum group size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from soxai.concepts.cluster import NOISE


def group_balanced_accuracy(pred: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> float:
    """Mean over the (label, group) pairs present of the accuracy within each; NaN for no samples.

    Parameters
    ----------
    pred, labels, groups : int arrays of shape (n,); ``groups`` the concept of each sample (-1, noise, is a group
        of its class like any other, as in reweighting)
    """
    pred, labels, groups = np.asarray(pred), np.asarray(labels), np.asarray(groups)
    if len(labels) == 0:
        return float("nan")
    pairs, inverse = np.unique(np.stack([labels, groups], axis=1), axis=0, return_inverse=True)
    inverse = inverse.ravel()
    correct = np.bincount(inverse, weights=(pred == labels).astype(np.float64), minlength=len(pairs))
    return float(np.mean(correct / np.bincount(inverse, minlength=len(pairs))))


@dataclass
class ValGroups:
    """The validation split with each sample's concept (``concept_ids``; -1 = none close enough)."""

    rows: np.ndarray
    labels: np.ndarray
    concept_ids: np.ndarray

    def sizes(self) -> dict[str, int]:
        """{'label/concept': count}, for metrics.json."""
        pairs, counts = np.unique(np.stack([self.labels, self.concept_ids], axis=1), axis=0, return_counts=True)
        return {f"{int(k)}/{int(c)}": int(n) for (k, c), n in zip(pairs, counts, strict=True)}


def val_concept_groups(cfg, run) -> ValGroups | None:
    """The validation samples of ``run`` assigned to its concepts; None when the run has no 'val' split."""
    from soxai.concepts.assign import explain_and_assign
    from soxai.data.runner import read_images, read_samples

    samples = read_samples(run)
    val = samples[samples["split"] == "val"]
    if val.empty:
        return None
    rows, labels = val["row"].to_numpy(), val["label"].to_numpy()
    _, assigned = explain_and_assign(cfg, run, read_images(run), rows, labels)
    cids = assigned["concept_id"].fillna(NOISE).to_numpy(dtype=np.int64)
    return ValGroups(rows, labels, cids)


@dataclass
class EpochSelection:
    """A ``val_score`` for :func:`soxai.train.loop.train_model` that keeps every epoch's score.

    After training, :meth:`record` says which epoch was kept and why, for the variant's metrics.json.
    """

    groups: ValGroups
    images: Any
    device: Any
    scores: list[float] = field(default_factory=list)

    def __call__(self, model) -> float:
        from soxai.train.loop import predict_logits

        pred = predict_logits(model, self.images, self.groups.rows, self.device, num_workers=0).argmax(axis=1)
        score = group_balanced_accuracy(pred, self.groups.labels, self.groups.concept_ids)
        self.scores.append(round(score, 6))
        return score

    def record(self) -> dict[str, Any]:
        best = int(np.argmax(self.scores)) if self.scores else -1
        return {"rule": "group-balanced accuracy of the val split over (class, concept) groups",
                "epoch_kept": best + 1, "val_scores": self.scores, "val_groups": self.groups.sizes()}


def selection_for(cfg, val_groups: Callable[[], ValGroups | None], images,
                  device) -> tuple[Callable | None, dict[str, Any]]:
    """The ``val_score`` of a reweighted model and what metrics.json says about it before training.

    ``retrain.reweight_selection``: 'balanced_val' selects the epoch (:class:`EpochSelection`) on the groups
    ``val_groups()`` gives (called only then: it explains the val split); 'last' keeps the last epoch, as the
    other variants do. Without a val split the last epoch is kept, and the record says so.
    """
    if cfg.retrain.reweight_selection == "last":
        return None, {"rule": "last epoch (retrain.reweight_selection=last)"}
    groups = val_groups()
    if groups is None:
        return None, {"rule": "last epoch: the data has no 'val' split to select an epoch on"}
    return EpochSelection(groups, images, device), {}
