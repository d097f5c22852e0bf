"""Runner of the bias stage."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from soxai.bias.context import DetectorContext, score_frame, score_row, scored_concepts
from soxai.bias.layer import LayerAccess
from soxai.config import Config
from soxai.data.class_names import read_class_names
from soxai.data.runner import read_images, read_samples
from soxai.run_dir import RunDir, read_npy, read_parquet, write_parquet
from soxai.stage import StageRecord, file_hash, fingerprint, run_stage, upstream


def run_bias(cfg: Config, run: RunDir) -> StageRecord:
    """Score every concept with every configured detector; apply a person's overrides.

    Writes ``bias/scores.parquet``: concept_id, detector, score (higher = more suspicious), is_bias,
    reason (+ detector-specific columns), and ``bias/carriers.parquet``: for each flagged concept, which
    samples of its class carry the shortcut (soxai.bias.carriers; read by the drop_carriers policy).
    """
    from soxai.bias.carriers import carrier_summary, find_carriers
    from soxai.bias.conflicts import conflict_concepts
    from soxai.bias.decide import flagged_concepts, read_overrides
    from soxai.bias.rounds import clean_control_rounds
    from soxai.bias.unclustered import check_unclustered

    bcfg = cfg.bias
    parts = [cfg.section_hash("seed", "bias")]
    if bcfg.overrides:
        parts.append(file_hash(bcfg.overrides) if Path(bcfg.overrides).is_file() else "missing")
    fp = fingerprint("bias", *parts, *upstream(run, "concepts", "model"))

    def body():
        concepts = read_parquet(run.concepts)
        overrides = (
            read_overrides(bcfg.overrides, set(concepts.loc[~concepts["is_noise"], "concept_id"].astype(int)))
            if bcfg.overrides else {}
        )
        ctx = detector_context(cfg, run, concepts)
        detect = _concept_tests(cfg, run, ctx, fp)
        rows = [row for name in bcfg.detectors for row in detect(name)]
        for cid, is_bias in sorted(overrides.items()):
            rows.append(score_row("override", cid, float(is_bias), is_bias,
                                  f"{'dropped' if is_bias else 'kept'} by a person in {bcfg.overrides}"))

        def decide(rows: list[dict]) -> set[int]:
            return set(flagged_concepts(score_frame(rows), bcfg.min_flags)) if rows else set()

        rows = clean_control_rounds(ctx, bcfg, rows, decide, detect)
        scores = score_frame(rows)
        flagged = flagged_concepts(scores, cfg.bias.min_flags) if len(scores) else {}
        carriers = find_carriers(ctx, scores, flagged, bcfg)
        conflicts = conflict_concepts(ctx.train, bcfg.conflicts.max_p_value, ctx.class_names)
        outputs = [write_parquet(run.bias_scores, scores), write_parquet(run.bias_conflicts, conflicts)]
        metrics = {"flagged": sorted(flagged), "n_scored": len(scores),
                   "conflicts": sorted(int(c) for c in conflicts.loc[conflicts["is_conflict"], "concept_id"])}
        if bcfg.unclustered.enabled:
            unclustered, more = check_unclustered(ctx, bcfg)
            carriers = carriers if more is None else pd.concat([carriers, more], ignore_index=True)
            outputs.append(write_parquet(run.bias_unclustered, unclustered))
            metrics["unclustered_flagged"] = [int(k) for k in unclustered.loc[unclustered["is_bias"], "label"]]
        outputs.append(write_parquet(run.bias_carriers, carriers))
        return outputs, {**metrics, "carriers": carrier_summary(carriers)}

    return run_stage(run, "bias", fp, body)


def _concept_tests(cfg: Config, run: RunDir, ctx: DetectorContext, fp: str) -> Callable[..., list[dict[str, Any]]]:
    """``detect(name, **kwargs)``: the rows of detector ``name`` on ``ctx`` (``kwargs``: a clean-control detector's
    ``left_out``, ``only``, ``suspected``).

    On a Dask worker, a detector that takes ``only=`` (``clean_control`` in the registry) tests each concept as a
    task of its own (soxai.parallel.parallel_map): its row for a concept is a pure function of the run, the seed and
    that concept (draws seeded by ``(seed, concept_id + 1)``, p-values corrected over every concept of the run), so
    the rows are the same, in the same order, as one call on every concept.
    """
    from soxai.bias.detectors import BIAS_DETECTORS, run_detector
    from soxai.parallel import on_dask_worker, parallel_map

    def detect(name: str, **kwargs: Any) -> list[dict[str, Any]]:
        if not (BIAS_DETECTORS[name].clean_control and on_dask_worker()):
            return run_detector(name, ctx, cfg.bias, **kwargs)
        _CONTEXT.update(key=(str(run.root), fp), ctx=ctx)  # pieces that run in this process use it as it is
        cids = [int(c) for c in scored_concepts(ctx, kwargs.pop("only", None))["concept_id"]]
        return [row for rows in parallel_map(score_one_concept, cids, cfg, run, fp, name, kwargs) for row in rows]

    return detect


def score_one_concept(cid: int, cfg: Config, run: RunDir, fp: str, name: str, kwargs: dict[str, Any]) -> list[dict]:
    """Detector ``name``'s rows for concept ``cid`` alone (one piece of :func:`_concept_tests`), on the run's
    detector context, built once per process and bias stage (``fp``, the stage's fingerprint)."""
    from soxai.bias.detectors import run_detector

    key = (str(run.root), fp)
    if _CONTEXT.get("key") != key:
        _CONTEXT.clear()  # one context per process: the last stage's
        _CONTEXT.update(key=key, ctx=detector_context(cfg, run))
    return run_detector(name, _CONTEXT["ctx"], cfg.bias, only={cid}, **kwargs)


_CONTEXT: dict[str, Any] = {}


def detector_context(cfg: Config, run: RunDir, concepts: pd.DataFrame | None = None) -> DetectorContext:
    """The :class:`soxai.bias.context.DetectorContext` of a run whose concepts and model stages are done:
    training images, assignments with predictions, concept mean maps, each sample's own map, the baseline."""
    from soxai.saliency.methods import resolve_device
    from soxai.saliency.runner import read_index, read_maps
    from soxai.train.fit import load_baseline
    from soxai.train.loop import predict_logits

    concepts = read_parquet(run.concepts) if concepts is None else concepts
    samples = read_samples(run)[["sample_id", "row"]]
    train = read_parquet(run.assignments).merge(samples, on="sample_id", how="left", validate="one_to_one")
    images = read_images(run)
    device = resolve_device(cfg.train.device)
    model = load_baseline(cfg, run)

    def predict(x: np.ndarray) -> np.ndarray:
        return predict_logits(model, x, np.arange(len(x)), device).argmax(axis=1)

    index = read_index(run)
    index = index[index["split"] == "train"].merge(samples, on="sample_id", validate="one_to_one")
    position = pd.Series(np.arange(len(index)), index=index["row"].to_numpy())
    own_maps = np.abs(read_maps(run, index))

    def sample_maps(rows: np.ndarray) -> np.ndarray:
        return own_maps[position.loc[rows].to_numpy()]

    return DetectorContext(images, train, concepts, read_npy(run.concept_maps, mmap=False), predict, cfg.seed,
                           sample_maps, LayerAccess(model, cfg.model.layer, device),
                           read_class_names(run))
