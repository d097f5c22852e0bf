"""The base every bias detector builds on: what it receives, the rows it returns, and the draws it shares.

- :class:`DetectorContext`: what a detector may read (samples, concepts, maps, the model).
- :func:`score_row` and :data:`SCORE_COLUMNS`: the output contract, one row per scored concept.
- :func:`scored_concepts`, :func:`control_pool`, :func:`pick_rows`, :func:`take_images`,
  :func:`left_out_text`: the concept loop, the class-mates' control and the seeded draws that several
  detectors share.

The contract in words, and the registry: soxai.bias.detectors. Detectors import this module, never the
registry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from soxai.bias.layer import LayerAccess
from soxai.data.class_names import class_text

# The columns every detector row starts with, in this order; detector-specific columns follow. ``score``:
# higher = more suspicious, for every detector.
SCORE_COLUMNS: tuple[str, ...] = ("concept_id", "detector", "score", "is_bias", "reason")

# A control needs class-mates: concepts are left out of it only while this many remain.
MIN_CONTROL = 20


@dataclass
class DetectorContext:
    """What detectors may read. Never the ``group`` or ``mask_path`` columns (evaluation only).

    images : array of shape (n_total, C, H, W); rows index it
    train : DataFrame of training samples with columns sample_id, row, label, pred, concept_id, probability (HDBSCAN
        membership of its concept, 0 in the noise)
    concepts : the concepts table (non-noise rows are scored)
    maps : float32 array of shape (n_concepts, H, W), the mean |map| of each concept, in the
        order of ``concepts``' non-noise rows (``map_index`` column)
    predict : function images (n, C, H, W) float32 -> predicted class (n,)
    seed : seeds every random draw, so the same run gives the same flags
    sample_maps : function row numbers (n,) -> the samples' own |saliency| maps (n, H, W)
    layer : access to the channels of ``model.layer`` (read, relevance, patch), for the feature-space test
        (soxai.bias.channels); None where the detectors run without the model
    class_names : the name of each label (the data stage's ``class_names``), for the reasons; empty: codes
    """

    images: np.ndarray
    train: pd.DataFrame
    concepts: pd.DataFrame
    maps: np.ndarray
    predict: Callable[[np.ndarray], np.ndarray]
    seed: int
    sample_maps: Callable[[np.ndarray], np.ndarray]
    layer: LayerAccess | None = None
    class_names: Sequence[str] = ()

    def class_text(self, label: int) -> str:
        """'class round' (the label's name, as ``soxai concepts`` writes it), or 'class 0' where it has none."""
        return class_text(label, self.class_names)

    def labels(self, rows: np.ndarray) -> np.ndarray:
        """The class labels of the training samples at image ``rows`` (n,)."""
        return self.train.set_index("row").loc[rows, "label"].to_numpy()


def score_row(detector: str, concept_id: int, score: float, is_bias: bool, reason: str,
              **extra: Any) -> dict[str, Any]:
    """One detector's verdict on one concept: the :data:`SCORE_COLUMNS`, then ``extra`` in the order given.

    ``score``: higher = more suspicious; ``is_bias``: the detector's flag; ``reason``: what was measured and
    why it is (not) flagged, for a person to check. ``extra``: ``p_value`` where the detector tests
    significance, the region it names (``box``, ``pixels``, ``n_channels``) and its own measurements.
    """
    return {"concept_id": concept_id, "detector": detector, "score": float(score), "is_bias": bool(is_bias),
            "reason": reason, **extra}


def score_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """The rows as one table: the :data:`SCORE_COLUMNS` first, then every other column in first-seen order."""
    columns = list(SCORE_COLUMNS)
    for row in rows:
        columns += [k for k in row if k not in columns]
    return pd.DataFrame(rows, columns=columns)


def check_rows(detector: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` if each keeps the contract (built by :func:`score_row` under the name ``detector``); raises
    TypeError naming the first that does not."""
    for row in rows:
        head = tuple(row)[:len(SCORE_COLUMNS)] if isinstance(row, dict) else ()
        if head != SCORE_COLUMNS or row["detector"] != detector or not isinstance(row["is_bias"], bool) \
                or not isinstance(row["score"], float) or not isinstance(row["reason"], str):
            raise TypeError(
                f"detector {detector!r} returned a row that breaks the detector contract: {row!r}; expected a "
                f"dict starting with {', '.join(SCORE_COLUMNS)} and detector={detector!r}; build each row with "
                "soxai.bias.context.score_row"
            )
    return rows


def scored_concepts(ctx: DetectorContext, only: set[int] | None = None) -> pd.DataFrame:
    """The non-noise concepts to score (all, or those in ``only``)."""
    concepts = ctx.concepts[~ctx.concepts["is_noise"]]
    return concepts if only is None else concepts[concepts["concept_id"].astype(int).isin(only)]


def control_pool(
    ctx: DetectorContext, cid: int, label: int, left_out: frozenset[int] = frozenset()
) -> tuple[pd.DataFrame, list[int]]:
    """The class-``label`` training samples outside concept ``cid`` that serve as its control, and the concepts
    of ``left_out`` actually left out of it (none when fewer than :data:`MIN_CONTROL` samples would remain)."""
    same = ctx.train[(ctx.train["concept_id"] != cid) & (ctx.train["label"] == label)]
    skip = sorted(int(c) for c in left_out if c != cid and c in set(same["concept_id"].astype(int)))
    if not skip:
        return same, []
    kept = same[~same["concept_id"].isin(skip)]
    return (kept, skip) if len(kept) >= MIN_CONTROL else (same, [])


def left_out_text(skipped: list[int], suspected: frozenset[int] = frozenset()) -> str:
    """' (not those of flagged concept 1 or concepts 2, 3)': the concepts a control left out, flagged or suspected."""
    def named(ids: list[int], what: str) -> list[str]:
        return [f"{what}concept{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids))}"] if ids else []

    parts = (named([c for c in skipped if c not in suspected], "flagged ")
             + named([c for c in skipped if c in suspected], ""))
    return f" (not those of {' or '.join(parts)})" if parts else ""


def pick_rows(frame: pd.DataFrame, n: int, rng: np.random.Generator) -> np.ndarray:
    """Up to n image rows of ``frame``, drawn without replacement, sorted (memmap-friendly)."""
    rows = frame["row"].to_numpy()
    return np.sort(rows[rng.choice(len(rows), size=min(n, len(rows)), replace=False)])


def take_images(images: np.ndarray, frame: pd.DataFrame, n: int, rng: np.random.Generator) -> np.ndarray:
    """The images of :func:`pick_rows` as float32 (n, C, H, W)."""
    return np.asarray(images[pick_rows(frame, n, rng)], dtype=np.float32)
