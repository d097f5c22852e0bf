"""A sparse linear surrogate of the model over concepts: each class's logit as a short weighted sum of how
much a sample's explanation resembles each concept.

The concept features of a sample are its **concept shares**: among the ``k`` reference samples nearest to
its explanation vector (in the concept model's PCA space, :class:`soxai.concepts.assign.ConceptModel`), the
share that belongs to each concept (noise neighbours count for none). A share lies in [0, 1]; a sample deep
inside concept 3 has share 1 for it. The explanation is always that of the model's own prediction, so the
features are a function of the input alone and the surrogate can be applied to any image.

Each class's logit (minus the mean logit over classes, which softmax ignores) is fitted on the training
samples by L1-regularised least squares (the lasso), keeping the largest model on the regularisation path
with at most ``max_terms`` non-zero weights. Fidelity is measured on the evaluation splits: agreement of the
surrogate's argmax with the model's prediction, and R^2 of its logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from soxai.data.class_names import class_text

MAX_TERMS = 10  # a person reads at most this many terms per class
N_NEIGHBORS = 10  # reference samples whose concepts make a sample's shares (the concept model's own vote size)
TRUSTWORTHY = 0.7  # agreement below this on the test split: the surrogate is written but not trusted


def concept_shares(points: np.ndarray, reference: np.ndarray, reference_concepts: np.ndarray,
                   concept_ids: np.ndarray, k: int = N_NEIGHBORS, self_rows: np.ndarray | None = None,
                   chunk: int = 2048) -> np.ndarray:
    """Share of each concept among the ``k`` nearest reference samples of each point.

    Parameters
    ----------
    points : array of shape (n, d), explanation vectors projected by the concept model
    reference : array of shape (n_ref, d), the reference samples (the concept model's ``points_``)
    reference_concepts : int array of shape (n_ref,), their concepts (-1 = noise)
    concept_ids : int array of shape (n_concepts,), the concepts to report, in column order
    k : neighbours per point
    self_rows : int array of shape (n,): the row of ``reference`` each point is itself (a reference sample is
        not its own neighbour); None for points outside the reference
    chunk : points compared with the reference at a time (memory: chunk x n_ref floats)

    Returns
    -------
    float64 array of shape (n, n_concepts), each row summing to at most 1 (noise neighbours count for none)
    """
    points = np.asarray(points, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    reference_concepts = np.asarray(reference_concepts)
    out = np.zeros((len(points), len(concept_ids)))
    k = min(k, len(reference) - int(self_rows is not None))
    if len(points) == 0 or k < 1:
        return out
    sq = (reference**2).sum(axis=1)
    for lo in range(0, len(points), chunk):
        q = points[lo : lo + chunk]
        d2 = (q**2).sum(axis=1)[:, None] - 2 * q @ reference.T + sq[None, :]
        if self_rows is not None:
            d2[np.arange(len(q)), np.asarray(self_rows)[lo : lo + len(q)]] = np.inf
        # the k nearest as a set (their order does not matter for a share): a partition, not a sort
        near = reference_concepts[np.argpartition(d2, k - 1, axis=1)[:, :k]]
        for j, c in enumerate(concept_ids):
            out[lo : lo + len(q), j] = (near == c).mean(axis=1)
    return out


def centred_logits(logits: np.ndarray) -> np.ndarray:
    """Logits minus their mean over classes: the part softmax and argmax see."""
    logits = np.asarray(logits, dtype=np.float64)
    return logits - logits.mean(axis=1, keepdims=True)


def fit_sparse_linear(x: np.ndarray, y: np.ndarray, max_terms: int = MAX_TERMS, n_alphas: int = 60
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Per output column, the lasso fit with the most non-zero weights not above ``max_terms``.

    Parameters
    ----------
    x : array of shape (n_samples, n_features)
    y : array of shape (n_samples, n_outputs), e.g. centred logits
    max_terms : most non-zero weights per output
    n_alphas : points on each regularisation path (coordinate descent, cyclic: deterministic)

    Returns
    -------
    weights : float64 array of shape (n_outputs, n_features)
    intercept : float64 array of shape (n_outputs,)
    """
    from sklearn.linear_model import lasso_path

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    weights = np.zeros((y.shape[1], x.shape[1]))
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    xc = x - x_mean
    if x.shape[1] and np.ptp(x, axis=0).max() > 0:
        for c in range(y.shape[1]):
            _, coefs, _ = lasso_path(xc, y[:, c] - y_mean[c], alphas=n_alphas, eps=1e-3, max_iter=5000)
            fits = np.flatnonzero((coefs != 0).sum(axis=0) <= max_terms)
            weights[c] = coefs[:, fits.max()]
    return weights, y_mean - weights @ x_mean


def fidelity(surrogate_logits: np.ndarray, model_logits: np.ndarray) -> dict[str, float]:
    """Agreement of the argmaxes and R^2 of the surrogate's centred logits against the model's.

    R^2 = 1 - SS_res / SS_tot over every (sample, class) entry, each class about its own mean; NaN for no samples.
    """
    s, m = centred_logits(surrogate_logits), centred_logits(model_logits)
    if len(m) == 0:
        return {"n": 0, "agreement": float("nan"), "r2": float("nan")}
    total = ((m - m.mean(axis=0)) ** 2).sum()
    r2 = 1.0 - ((s - m) ** 2).sum() / total if total > 0 else float("nan")
    return {"n": int(len(m)), "agreement": float((s.argmax(axis=1) == m.argmax(axis=1)).mean()), "r2": float(r2)}


def formula_lines(weights: np.ndarray, intercept: np.ndarray, concept_ids: np.ndarray,
                  names: dict[int, str] | None = None, digits: int = 2, class_names: Sequence[str] = ()) -> list[str]:
    """Each class's surrogate as text, largest weights first:
    ``class 0 ≈ 0.71·[concept 3: nucleus ring] + 0.40·[concept 5] − 1.20``.

    ``names``: a short description per concept id, put after its number where given; ``class_names``: the name of
    each class (``class round ≈ ...``), the label code where there is none.
    """
    names = names or {}
    lines = []
    for c, (w, b) in enumerate(zip(weights, intercept, strict=True)):
        order = [j for j in np.argsort(-np.abs(w), kind="stable") if w[j] != 0]
        terms = []
        for j in order:
            cid = int(concept_ids[j])
            label = f"concept {cid}: {names[cid]}" if names.get(cid) else f"concept {cid}"
            terms.append((w[j], f"{abs(w[j]):.{digits}f}·[{label}]"))
        text = ""
        for i, (value, term) in enumerate(terms):
            text += (("−" if value < 0 else "") if i == 0 else (" − " if value < 0 else " + ")) + term
        text += (" − " if b < 0 else " + ") + f"{abs(b):.{digits}f}" if text else f"{b:.{digits}f}"
        lines.append(f"{class_text(c, class_names)} ≈ {text}")
    return lines


def surrogate_entry(x_train: np.ndarray, logits_train: np.ndarray, evaluation: dict[str, tuple[np.ndarray,
                    np.ndarray]], concept_ids: np.ndarray, max_terms: int = MAX_TERMS,
                    class_names: Sequence[str] = ()) -> dict:
    """Fit the surrogate of one model and measure it: what ``surrogate.json`` holds per model.

    Parameters
    ----------
    x_train : array of shape (n_train, n_concepts), the training samples' concept shares
    logits_train : array of shape (n_train, n_classes), the model's logits on them
    evaluation : split -> (concept shares, model logits) of that split's samples
    concept_ids : int array of shape (n_concepts,), the concept of each column
    class_names : the name of each class, for the formula's text (empty: the label codes)

    Returns
    -------
    dict with intercept (per class), weights (per class: {concept id: weight} of the non-zero ones), n_terms,
    formula (one line per class), fidelity ({split: {n, agreement, r2}}, the training set under "train")
    """
    weights, intercept = fit_sparse_linear(x_train, centred_logits(logits_train), max_terms)
    scores = {"train": fidelity(x_train @ weights.T + intercept, logits_train)}
    for split, (x, logits) in evaluation.items():
        scores[split] = fidelity(x @ weights.T + intercept, logits)
    return {
        "intercept": intercept.tolist(),
        "weights": [{str(int(concept_ids[j])): float(w[j]) for j in np.flatnonzero(w)} for w in weights],
        "n_terms": [int((w != 0).sum()) for w in weights],
        "formula": formula_lines(weights, intercept, concept_ids, class_names=class_names),
        "fidelity": scores,
    }


def trust_split(splits: list[str]) -> str | None:
    """The split whose agreement decides whether a surrogate is trusted: ``test`` where there is one, else the
    first evaluation split other than ``val``, else ``val``."""
    if "test" in splits:
        return "test"
    rest = [s for s in splits if s != "val"]
    return rest[0] if rest else (splits[0] if splits else None)


def is_trustworthy(entry: dict, split: str | None) -> bool:
    """Whether a surrogate's agreement on ``split`` reaches :data:`TRUSTWORTHY`."""
    if split is None or split not in entry["fidelity"]:
        return False
    agreement = entry["fidelity"][split]["agreement"]
    return bool(np.isfinite(agreement) and agreement >= TRUSTWORTHY)

