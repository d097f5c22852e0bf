"""An opt-in bias detector: a concept whose mean saliency map is much sharper than its class's other concepts.

A thin mark, a printed tag or a texture puts relevance into a few sharp pixels, so much of its mean map's
Fourier power sits at high spatial frequency; the shapes a class is otherwise recognised by are smooth. The
score is the concept's high-frequency share (:func:`soxai.spectral.frequency.high_frequency_share`) over the
size-weighted mean share of its class's other concepts, minus 1: 0 when it is as sharp as its class, 1 when
twice as sharp. It reads only the mean maps, so it costs milliseconds and needs no model; it is a second
opinion beside an interventional test, never a proof that the model depends on the concept.

It is not registered in :data:`soxai.bias.detectors.BIAS_DETECTORS` (the default bias results stay as they
are); docs/SPECTRAL.md gives the one entry and settings section that make ``bias.detectors=[transplant,
frequency]`` run it. Until then it reads ``cfg.frequency.threshold`` when the config has that section and
:data:`THRESHOLD` otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from soxai.bias.config import BiasConfig
from soxai.bias.context import DetectorContext, score_row, scored_concepts

THRESHOLD = 0.5  # flag a concept at least 1.5 times as sharp as its class's other concepts


def detect_frequency(ctx: DetectorContext, cfg: BiasConfig) -> list[dict[str, Any]]:
    """One row per non-noise concept: score = its high-frequency share / its class's others' - 1."""
    from soxai.spectral.frequency import HIGH_FREQUENCY, concept_frequency_rows

    section = getattr(cfg, "frequency", None)
    threshold = float(getattr(section, "threshold", THRESHOLD))
    concepts = ctx.concepts[~ctx.concepts["is_noise"]]
    maps = ctx.maps[concepts["map_index"].to_numpy(dtype=int)] if len(concepts) else ctx.maps[:0]
    measured = {r["concept_id"]: r for r in concept_frequency_rows(
        maps, concepts["concept_id"].to_numpy(dtype=int), concepts["label"].to_numpy(dtype=int),
        concepts["size"].to_numpy())}
    rows = []
    for _, concept in scored_concepts(ctx).iterrows():
        cid = int(concept["concept_id"])
        m = measured[cid]
        own, rest = m["hf_share"], m["class_hf_share"]
        if not np.isfinite(rest) or rest <= 0:
            rows.append(score_row("frequency", cid, 0.0, False,
                                  f"its class has no other concept to compare its sharpness with (high-frequency "
                                  f"share {own:.3f})", hf_share=own, class_hf_share=rest))
            continue
        score = own / rest - 1.0
        is_bias = bool(score >= threshold)
        verdict = "at or above" if is_bias else "below"
        rows.append(score_row(
            "frequency", cid, score, is_bias,
            f"{own:.1%} of its mean map's power lies at or above {HIGH_FREQUENCY} cycles/pixel against {rest:.1%} for "
            f"the other concepts of {ctx.class_text(concept['label'])}; {score + 1:.2f} times as sharp, {verdict} "
            f"the flag ratio {1 + threshold:.2f}", hf_share=own, class_hf_share=rest))
    return rows
