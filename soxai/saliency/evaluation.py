"""Which saliency method to trust: every registered method scored on one run, side by side.

`evaluate_saliency` explains a seeded sample of evaluation images with the run's baseline model,
once per method of `SALIENCY_METHODS`, and scores the maps with the kernels of
`soxai.saliency.evaluate`: localisation against the ground-truth masks when the data has them
(mass accuracy, rank accuracy, pointing game), faithfulness always (deletion and insertion AUC),
and the cost (seconds, images per second). It is a tool for choosing ``saliency.method``, not a
stage of the pipeline: nothing downstream reads its files.

Outputs, all under ``RUN_DIR/saliency_eval/`` (paths in `eval_paths`, the one place that knows them):
``methods.parquet`` and ``methods.csv`` (one row per method) and ``summary.json`` (what was
measured on what, the best method per metric, the metrics that were possible, chance levels).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd

from soxai.config import Config
from soxai.data.runner import read_images, read_samples
from soxai.errors import ConfigError, StageError
from soxai.progress import progress
from soxai.run_dir import RunDir, read_npy, write_csv, write_json, write_parquet
from soxai.saliency.evaluate import (
    deletion_insertion_auc,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
)
from soxai.stage import upstream

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger("soxai")

POINTING_TOLERANCE_PX = 1
"""Dilation of the masks in the pointing game: a map that points at the edge of the band is a hit."""

DELETION_STEPS = 16
"""Chunks of deletion/insertion: 16 points per curve, 2 x 15 perturbed forwards per sample."""

LOCALISATION_METRICS = ("mass_accuracy", "rank_accuracy", "pointing_game")
"""Metrics that need ground-truth masks."""

METRIC_DIRECTIONS: dict[str, str] = {
    "mass_accuracy": "higher",
    "rank_accuracy": "higher",
    "pointing_game": "higher",
    "deletion_auc": "lower",
    "insertion_auc": "higher",
    "images_per_s": "higher",
}
"""Which way is better, declared once; `summary.json` picks the best method per metric with it."""


class EvalSamples(NamedTuple):
    """The samples `choose_eval_samples` picked.

    Attributes
    ----------
    samples : pandas.DataFrame
        Their rows of ``data/samples.parquet``, sorted by ``sample_id``.
    masks : ndarray of shape (n, height, width), bool, or None
        Their ground-truth masks, None when the run has none.
    n_candidates : int
        Samples of the splits before the choice, those with an empty mask included.
    n_excluded_empty_mask : int
        Samples of the splits left out because their mask is empty.
    """

    samples: pd.DataFrame
    masks: np.ndarray | None
    n_candidates: int
    n_excluded_empty_mask: int


class EvalPaths(NamedTuple):
    """Where `evaluate_saliency` writes (to move into `RunDir` once the evaluation settles)."""

    dir: Path
    table_parquet: Path
    table_csv: Path
    summary: Path


def eval_paths(run: RunDir) -> EvalPaths:
    """The output paths of `evaluate_saliency` in ``run``: ``RUN_DIR/saliency_eval/...``."""
    root = run.root / "saliency_eval"
    return EvalPaths(root, root / "methods.parquet", root / "methods.csv", root / "summary.json")


def evaluate_saliency(
    cfg: Config,
    run: RunDir,
    methods: list[str] | None = None,
    n_samples: int = 300,
    splits: Sequence[str] = ("test",),
    *,
    timing_repeats: int = 1,
) -> pd.DataFrame:
    """Score saliency methods on up to ``n_samples`` images of ``splits`` with the baseline model.

    The images are a seeded choice (``cfg.seed``) among the samples of ``splits``; when some of
    them have a non-empty mask, only those are candidates (the others are counted in
    ``summary.json`` as ``n_excluded_empty_mask``), see `choose_eval_samples`. Each map explains the
    sample's label, with the channel reduction, batch size, integrated-gradients steps and device of
    ``cfg.saliency``.
    ``seconds`` times the maps only (wall clock), after an untimed warm-up on two images per method
    (imports, first-call allocations), so that the first method listed pays nothing extra.

    Parameters
    ----------
    cfg : Config
        The run's config.
    run : RunDir
        A run whose ``data`` and ``model`` stages have completed.
    methods : list of str, optional
        Keys of `SALIENCY_METHODS`; default every method registered at call time. With the
        default, a method that cannot explain this model (Grad-CAM without a Conv2d) is skipped
        and the reason goes to ``summary.json``; a method named explicitly must work.
    n_samples : int, default 300
        Most images scored; fewer when the splits have fewer (eligible) samples.
    splits : sequence of str, default ("test",)
        Splits to draw from, pooled.
    timing_repeats : int, default 1
        Compute the maps this many times and report the fastest: other processes on a shared
        machine only ever add time, so the minimum is the least disturbed measurement.

    Returns
    -------
    pandas.DataFrame
        One row per method: ``method``, ``n``, ``seconds``, ``images_per_s``, ``mass_accuracy``,
        ``rank_accuracy``, ``pointing_game`` (those three only when the run has masks),
        ``deletion_auc``, ``insertion_auc`` (means over samples, NaN ignored) and ``n_zero_maps``
        (maps with no relevance at all; they score as a random guess would).

    Raises
    ------
    ConfigError
        On an unknown method, an empty method list or ``n_samples < 1``.
    StageError
        When the model stage has not run, or a split does not exist or has no samples.
    """
    explicit = methods is not None
    methods = _checked_methods(methods, n_samples, timing_repeats)
    splits = [splits] if isinstance(splits, str) else list(splits)
    table, summary = _evaluate(cfg, run, methods, n_samples, splits, explicit, timing_repeats)
    paths = eval_paths(run)
    write_parquet(paths.table_parquet, table)
    write_csv(paths.table_csv, table)
    write_json(paths.summary, summary)
    return table


def _evaluate(cfg: Config, run: RunDir, methods: list[str], n_samples: int, splits: list[str], explicit: bool,
              timing_repeats: int) -> tuple[pd.DataFrame, dict]:
    """`evaluate_saliency` on checked arguments: its table and summary.json, nothing written."""
    from soxai.device import resolve_device
    from soxai.train.fit import load_baseline

    model_fp = upstream(run, "data", "model")[1]

    chosen, masks, n_candidates, n_excluded = choose_eval_samples(run, splits, n_samples, cfg.seed)
    rows = chosen["row"].to_numpy()
    images = np.asarray(read_images(run)[rows], dtype=np.float32)
    targets = chosen["label"].to_numpy().astype(np.int64)
    device = resolve_device(cfg.saliency.device)
    model = load_baseline(cfg, run)
    scfg = cfg.saliency
    options = {"batch_size": scfg.batch_size, "ig_steps": scfg.ig_steps, "reduce": scfg.reduce, "device": device}
    predict_proba = model_predict_proba(model, device)

    records, skipped = _score_methods(model, images, targets, masks, methods, options, predict_proba, explicit,
                                      timing_repeats)
    if not records:
        raise StageError(f"no saliency method could explain this model; reasons: {skipped}")
    table = pd.DataFrame.from_records(records)

    rng = np.random.default_rng(cfg.seed)
    chance = score_maps(rng.random((len(targets), *images.shape[2:])), masks, images, targets, predict_proba,
                        batch_size=scfg.batch_size)
    measured = [m for m in METRIC_DIRECTIONS if m in table]
    summary = {
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "splits": splits,
        "n_samples_requested": n_samples,
        "n": int(len(targets)),
        "n_candidates": n_candidates,
        "n_excluded_empty_mask": n_excluded,
        "seed": cfg.seed,
        "model_fingerprint": model_fp,
        "device": str(device),
        "timing_repeats": timing_repeats,
        "saliency": {"target": "label", "reduce": scfg.reduce, "batch_size": scfg.batch_size,
                     "ig_steps": scfg.ig_steps},
        **_metrics_summary(run, splits, masks, table, measured),
        "chance": {"description": "the same metrics for uniform random maps", **chance},
        "pointing_tolerance_px": POINTING_TOLERANCE_PX,
        "deletion_steps": DELETION_STEPS,
        "skipped": skipped,
    }
    return table, summary


def _checked_methods(methods: list[str] | None, n_samples: int, timing_repeats: int) -> list[str]:
    """The methods to score (every registered one for None; each once, in order), or a ConfigError."""
    from soxai.saliency.methods import SALIENCY_METHODS

    methods = list(SALIENCY_METHODS) if methods is None else list(dict.fromkeys(methods))  # once each, in order
    if not methods:
        raise ConfigError(f"methods is empty; name at least one of {sorted(SALIENCY_METHODS)} or pass None for all")
    unknown = [m for m in methods if m not in SALIENCY_METHODS]
    if unknown:
        raise ConfigError(f"unknown saliency methods {unknown}; choose from {sorted(SALIENCY_METHODS)}")
    if n_samples < 1:
        raise ConfigError(f"n_samples must be >= 1; got {n_samples}")
    if timing_repeats < 1:
        raise ConfigError(f"timing_repeats must be >= 1; got {timing_repeats}")
    return methods


def _score_methods(model, images: np.ndarray, targets: np.ndarray, masks: np.ndarray | None, methods: list[str],
                   options: dict, predict_proba, explicit: bool, timing_repeats: int) -> tuple[list[dict], dict]:
    """One record per method that can explain ``model`` (timed, scored), and {method: why} of those skipped.

    A method that fails its untimed warm-up with a ConfigError is skipped, unless it was named (``explicit``).
    """
    from soxai.saliency.methods import compute_maps

    records, skipped = [], {}
    with progress("saliency evaluation", len(methods), unit="methods") as advance:
        for method in methods:
            try:
                compute_maps(model, images[:2], targets[:2], method=method, **options)  # warm-up, untimed
            except ConfigError as err:
                if explicit:
                    raise
                log.warning("saliency evaluation: skipping %s: %s", method, err)
                skipped[method] = str(err)
                advance(1)
                continue
            seconds = math.inf
            for _ in range(timing_repeats):
                t0 = time.perf_counter()
                maps = compute_maps(model, images, targets, method=method, **options)
                seconds = min(seconds, time.perf_counter() - t0)
            records.append({
                "method": method,
                "n": len(targets),
                "seconds": seconds,
                "images_per_s": len(targets) / seconds if seconds > 0 else math.inf,
                **score_maps(maps, masks, images, targets, predict_proba, batch_size=options["batch_size"]),
                "n_zero_maps": _n_zero(maps),
            })
            advance(1)
    return records, skipped


def _metrics_summary(run: RunDir, splits: list[str], masks: np.ndarray | None, table: pd.DataFrame,
                     measured: list[str]) -> dict:
    """summary.json's entries on the metrics: which were measured, which not and why, their directions, the best."""
    no_masks_reason = (f"no sample of splits {splits} has a non-empty mask" if run.masks.is_file()
                       else "the run has no ground-truth masks (data/masks.npy)")
    return {
        "has_masks": masks is not None,
        "metrics": measured,
        "metrics_unavailable": {} if masks is not None else dict.fromkeys(LOCALISATION_METRICS, no_masks_reason),
        "directions": {m: METRIC_DIRECTIONS[m] for m in measured},
        "best": _best(table, measured),
    }


def format_table(df: pd.DataFrame) -> str:
    """A markdown table of `evaluate_saliency`'s result (readable in a terminal and in docs).

    Parameters
    ----------
    df : pandas.DataFrame
        As returned by `evaluate_saliency` (or read from ``methods.parquet``); any subset of columns.

    Returns
    -------
    str
        One header line, one separator line and one line per method; NaN shows as "–".
    """
    formats = {"n": "{:.0f}", "n_zero_maps": "{:.0f}", "seconds": "{:.2f}", "images_per_s": "{:,.0f}"}
    arrows = {"higher": " ↑", "lower": " ↓"}
    header = [c + arrows.get(METRIC_DIRECTIONS.get(c, ""), "") for c in df.columns]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if c == "method" else "---:" for c in df.columns) + "|"]
    for row in df.itertuples(index=False):
        cells = []
        for col, value in zip(df.columns, row, strict=True):
            if isinstance(value, str):
                cells.append(value.replace("|", "\\|"))  # a bare | would end the cell
            elif value is None or (isinstance(value, float) and math.isnan(value)):
                cells.append("–")
            else:
                cells.append(formats.get(col, "{:.3f}").format(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def choose_eval_samples(run: RunDir, splits: Sequence[str], n_samples: int, seed: int) -> EvalSamples:
    """The samples `evaluate_saliency` scores: a seeded choice of up to ``n_samples`` of ``splits``.

    When some samples of ``splits`` have a non-empty mask, only those are candidates; when none
    has, the masks are left out (``masks`` is None). The choice depends on the sample ids, the seed
    and ``n_samples`` only, never on row order.

    Raises
    ------
    StageError
        When a split does not exist or the splits have no samples.
    """
    splits = [splits] if isinstance(splits, str) else list(splits)
    samples = read_samples(run)
    missing = sorted(set(splits) - set(samples["split"]))
    if missing:
        raise StageError(
            f"splits {missing} are not in the data; available splits: {sorted(samples['split'].unique())}"
        )
    # Sorted by id, not by file order: the choice must not depend on row order (DESIGN.md).
    pool = samples[samples["split"].isin(splits)].sort_values("sample_id").reset_index(drop=True)
    all_masks = read_npy(run.masks) if run.masks.is_file() else None
    n_excluded = 0
    if all_masks is not None:
        has_mask = np.asarray(all_masks[pool["row"].to_numpy()]).any(axis=(1, 2))
        if has_mask.any():
            n_excluded = int((~has_mask).sum())
            pool = pool[has_mask].reset_index(drop=True)
        else:  # masks for other splits only (a manifest may have them for 'test' alone): score without
            all_masks = None
    if pool.empty:
        raise StageError(f"splits {splits} have no samples; choose splits that do")
    pick = np.random.default_rng(seed).choice(len(pool), size=min(n_samples, len(pool)), replace=False)
    chosen = pool.iloc[np.sort(pick)].reset_index(drop=True)
    masks = None if all_masks is None else np.asarray(all_masks[chosen["row"].to_numpy()], dtype=bool)
    return EvalSamples(chosen, masks, int(len(pool) + n_excluded), n_excluded)


def score_maps(
    maps: np.ndarray,
    masks: np.ndarray | None,
    images: np.ndarray,
    targets: np.ndarray,
    predict_proba: Callable[[np.ndarray], np.ndarray],
    *,
    batch_size: int = 256,
) -> dict[str, float]:
    """Every metric of `evaluate_saliency` for one set of maps, averaged over samples (NaN ignored).

    Parameters
    ----------
    maps : ndarray of shape (n_samples, height, width)
    masks : ndarray of shape (n_samples, height, width), bool, or None
        Ground truth; None leaves out the localisation metrics.
    images : ndarray of shape (n_samples, channels, height, width)
    targets : ndarray of shape (n_samples,), int
        The class each map explains.
    predict_proba : callable
        (n, channels, height, width) float32 -> (n, n_classes) probabilities, e.g. `model_predict_proba`.
    batch_size : int, default 256
        Images per call of ``predict_proba``.

    Returns
    -------
    dict of str to float
        ``mass_accuracy``, ``rank_accuracy``, ``pointing_game`` (with masks), ``deletion_auc``,
        ``insertion_auc``.
    """
    out = {}
    if masks is not None:
        out["mass_accuracy"] = _mean(relevance_mass_accuracy(maps, masks))
        out["rank_accuracy"] = _mean(relevance_rank_accuracy(maps, masks))
        out["pointing_game"] = _mean(pointing_game(maps, masks, tolerance_px=POINTING_TOLERANCE_PX))
    curves = deletion_insertion_auc(predict_proba, images, maps, targets, steps=DELETION_STEPS,
                                    batch_size=max(batch_size, 2 * DELETION_STEPS))
    out["deletion_auc"] = _mean(curves.deletion_auc)
    out["insertion_auc"] = _mean(curves.insertion_auc)
    return out


def _n_zero(maps: np.ndarray) -> int:
    """Maps of shape (n, height, width) with no finite nonzero value."""
    relevance = np.nan_to_num(np.abs(maps), nan=0.0, posinf=0.0).reshape(len(maps), -1)
    return int((relevance.max(axis=1, initial=0) == 0).sum())


def _mean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else math.nan


def _best(table: pd.DataFrame, metrics: list[str]) -> dict[str, dict[str, object]]:
    best = {}
    for metric in metrics:
        values = table[metric].astype(float)
        if values.isna().all():
            continue
        i = values.idxmax() if METRIC_DIRECTIONS[metric] == "higher" else values.idxmin()
        best[metric] = {"method": table.loc[i, "method"], "value": float(values[i]),
                        "direction": METRIC_DIRECTIONS[metric]}
    return best


def model_predict_proba(model: nn.Module, device: torch.device) -> Callable[[np.ndarray], np.ndarray]:
    """Wrap a torch classifier for `deletion_insertion_auc`.

    The model is put in eval mode and moved to ``device`` (in place).

    Returns
    -------
    callable
        ``x`` of shape (n, channels, height, width), float32 -> softmax probabilities of shape
        (n, n_classes), computed without gradients.
    """
    import torch

    model.eval().to(device)

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            logits = model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device))
            return torch.softmax(logits.float(), dim=1).cpu().numpy()

    return predict
