"""Checks of the baseline once it is trained (or loaded), before anything explains it.

A model with NaN weights gives NaN saliency maps, and the saliency stage would then blame the attribution
method; a model that learned nothing gives maps of noise, which cluster into concepts that flag nothing.
Both are stopped here, where the cause is known.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from soxai.errors import StageError

if TYPE_CHECKING:
    from torch import nn

    from soxai.config import Config

log = logging.getLogger(__name__)

#: how far above chance a baseline must be on validation; see :func:`check_not_at_chance`
CHANCE_MARGIN = 0.05


def check_finite_weights(model: nn.Module, cfg: Config) -> None:
    """Raise StageError if a weight or buffer of the baseline is NaN or infinite, naming the cause and the fix."""
    from soxai.models.registry import nonfinite_tensors

    state = model.state_dict()
    bad = nonfinite_tensors(state)
    if not bad:
        return
    names = f"{', '.join(bad[:5])}{', ...' if len(bad) > 5 else ''}"
    if cfg.model.checkpoint:
        raise StageError(
            f"the baseline loaded from model.checkpoint {cfg.model.checkpoint} has non-finite weights ({len(bad)} of "
            f"{len(state)} tensors: {names}); point model.checkpoint at weights saved before training diverged"
        )
    lr = cfg.train.lr
    if np.isfinite(lr):
        cause = (f"training diverged at train.lr={lr} (optimizer {cfg.train.optimizer}). Set a smaller rate (a tenth "
                 "of yours; the default is train.lr=0.002)")
    else:
        cause = f"train.lr={lr} is not a finite number. Set a finite rate, e.g. the default train.lr=0.002"
    raise StageError(
        f"the baseline's weights are NaN or infinite after training ({len(bad)} of {len(state)} tensors: {names}): "
        f"{cause}, then rerun; the checkpoint was not written"
    )


def check_not_at_chance(metrics: dict[str, dict[str, Any]], labels: np.ndarray, split: str, n_classes: int,
                        allow: bool, checkpoint: str | None = None) -> None:
    """Stop (or, with ``allow``, warn) when the baseline's accuracy on ``split`` is near chance.

    Chance is the better of the two accuracies a model reaches without looking at the image: guessing
    uniformly (1 / n_classes) and always answering the commonest class of the split (its share). A baseline
    within :data:`CHANCE_MARGIN` (0.05) of that learned nothing the explanations could show: its saliency maps
    are noise, concepts cluster the noise and no detector flags anything — an audit that reads "0 flagged"
    when nothing was looked at. The margin is small on purpose: on a small validation split accuracy varies by
    more than 0.05 between seeds, so only a baseline that is at chance, not one that is merely weak, is stopped.

    Parameters
    ----------
    metrics : per split, a dict with ``accuracy``
    labels : int array of shape (n,), the labels of ``split``
    split : the evaluation split to judge by (val where there is one)
    n_classes : classes of the data
    allow : ``train.allow_chance_baseline``: warn and go on instead of stopping
    checkpoint : ``model.checkpoint`` where the baseline was loaded, not trained (the fix differs)
    """
    if split not in metrics or not len(labels):
        return
    accuracy = float(metrics[split]["accuracy"])
    majority = float(np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes).max() / len(labels))
    chance = max(1.0 / n_classes, majority)
    if accuracy > chance + CHANCE_MARGIN:
        return
    basis = (f"1/{n_classes} classes" if chance == 1.0 / n_classes
             else f"always answering the commonest class, {majority:.0%} of {split}")
    message = (
        f"the baseline's {split} accuracy is {accuracy:.3f} on {len(labels)} samples, within {CHANCE_MARGIN} of chance "
        f"({chance:.3f}: {basis}); a model that learned nothing has noise for explanations, so its concepts and "
        "flags would mean nothing"
    )
    if allow:
        log.warning("%s; going on because train.allow_chance_baseline is true", message)
        return
    if checkpoint:
        fix = (f"Check that model.checkpoint {checkpoint} was trained on these classes, numbered as here (class names "
               "sorted), with the same input scaling (data.mean / data.std)")
    else:
        fix = ("Train it to learn the task (more train.epochs, another train.lr, more data; check that the labels "
               "match the images)")
    raise StageError(f"{message}. {fix}, or set train.allow_chance_baseline=true to audit it anyway")
