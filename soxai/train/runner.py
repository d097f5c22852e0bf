"""Runners of the ``model`` stage (the baseline) and the ``train`` stage (retrained variants)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from soxai.config import Config
from soxai.data.runner import eval_splits, groups_of, read_images, read_info, read_samples
from soxai.errors import StageError
from soxai.manifest.policies import random_control
from soxai.progress import progress
from soxai.run_dir import RunDir, read_json, read_parquet, write_json, write_parquet
from soxai.stage import StageRecord, file_hash, fingerprint, run_stage, upstream
from soxai.train.baselines import jtt_upsample, oracle_images

log = logging.getLogger("soxai")


def make_model(cfg: Config, info: dict[str, Any], seed: int):
    """The configured architecture for this data, with the data's input normalisation (if any) in front."""
    from soxai.models.registry import add_input_normalization, build_model

    c, h, _ = info["image_shape"]
    model = build_model(cfg.model, c, info["n_classes"], h, seed)
    norm = info.get("normalize") or {}
    return add_input_normalization(model, norm.get("mean"), norm.get("std"))


def load_baseline(cfg: Config, run: RunDir):
    from soxai.models.registry import load_checkpoint

    model = make_model(cfg, read_info(run), cfg.seed)
    load_checkpoint(run.baseline_model, model)
    return model.eval()


def evaluate_splits(
    model, images: np.ndarray, samples: pd.DataFrame, device, splits: list[str], num_workers: int = 0
) -> dict:
    """Metrics of ``model`` on each split: accuracy, per-class and worst-group accuracy."""
    from soxai.train.loop import accuracy_metrics, predict_logits

    out = {}
    for split in splits:
        frame = samples[samples["split"] == split]
        pred = predict_logits(model, images, frame["row"].to_numpy(), device, num_workers=num_workers).argmax(axis=1)
        out[split] = accuracy_metrics(pred, frame["label"].to_numpy(), groups_of(frame))
    return out


def _fit(cfg: Config, run: RunDir, rows: np.ndarray, labels: np.ndarray, seed: int, what: str,
         images: np.ndarray | None = None, epochs: int | None = None, sample_weights: np.ndarray | None = None,
         extra: np.ndarray | None = None):
    """Train a fresh model on ``rows`` of the run's images (or of ``images``, the oracle's own).

    ``extra``: images that follow the run's (row ``len(images) + j`` reads ``extra[j]``: augment's pasted
    images); ``sample_weights``: per row, for weighted sampling (reweight).
    """
    from soxai.saliency.methods import resolve_device
    from soxai.train.corrections import ImagesWithExtra
    from soxai.train.loop import train_model

    device = resolve_device(cfg.train.device)
    model = make_model(cfg, read_info(run), seed)
    tcfg = cfg.train if epochs is None else cfg.train.model_copy(update={"epochs": epochs})
    source = read_images(run)
    val = None
    if tcfg.patience is not None:
        samples = read_samples(run)
        frame = samples[samples["split"] == "val"]
        val = (frame["row"].to_numpy(), frame["label"].to_numpy())
    if images is not None:  # the oracle's own training images: its val images go after them
        if val is not None:
            val_rows = np.arange(len(images), len(images) + len(val[0]))
            images = np.concatenate([images, np.asarray(source[val[0]], dtype=np.float32)])
            val = (val_rows, val[1])
        source = images
    elif extra is not None and len(extra):
        source = ImagesWithExtra(source, extra)
    with progress(f"train {what}", tcfg.epochs, unit="epochs") as advance:
        train_model(model, source, rows, labels, tcfg, seed, device, on_epoch=lambda e, loss: advance(1), val=val,
                    sample_weights=sample_weights)
    return model, device


def run_model(cfg: Config, run: RunDir) -> StageRecord:
    """Train the baseline model on the whole training split and evaluate it on every split.

    With ``model.checkpoint`` set the baseline is the user's model: the checkpoint is loaded into the
    configured architecture (``weights_only=True``) and evaluated, not trained; its hash is part of
    the fingerprint, so a new file re-runs everything downstream.
    """
    from soxai.models.registry import load_checkpoint, save_checkpoint
    from soxai.saliency.methods import resolve_device

    parts = [cfg.section_hash("seed", "model", "train")]
    if cfg.model.checkpoint:
        parts.append(file_hash(cfg.model.checkpoint) if Path(cfg.model.checkpoint).is_file() else "missing")
    fp = fingerprint("model", *parts, *upstream(run, "data"))

    def body():
        samples = read_samples(run)
        train = samples[samples["split"] == "train"]
        meta: dict[str, Any] = {"seed": cfg.seed, "arch": cfg.model.factory or cfg.model.name}
        if cfg.model.checkpoint:
            model, device = make_model(cfg, read_info(run), cfg.seed), resolve_device(cfg.train.device)
            load_checkpoint(Path(cfg.model.checkpoint), model)
            meta["checkpoint"] = str(cfg.model.checkpoint)
        else:
            model, device = _fit(cfg, run, train["row"].to_numpy(), train["label"].to_numpy(), cfg.seed, "baseline")
        metrics = evaluate_splits(model, read_images(run), samples, device, ["train", *eval_splits(samples)],
                                  cfg.train.num_workers)
        out = [save_checkpoint(run.baseline_model, model, meta)]
        out.append(write_json(run.baseline_metrics, metrics))
        return out, {split: round(m["accuracy"], 4) for split, m in metrics.items()}

    return run_stage(run, "model", fp, body)


def variant_train_set(variant: str, train: pd.DataFrame, keep: np.ndarray, seed: int) -> np.ndarray:
    """Boolean mask over ``train`` rows: the training set of ``variant`` for ``seed``.

    reweight and augment start from the whole set; their own plan (``_correction_plan``) says what changes.
    """
    if variant in ("baseline", "jtt", "oracle", "reweight", "augment"):  # jtt reweights, the oracle unmarks
        return np.ones(len(train), dtype=bool)
    if variant == "pruned":
        return keep
    if variant == "random_control":
        return random_control(train["label"].to_numpy(), keep, seed=10_000 + seed)
    raise StageError(f"unknown variant {variant!r}; choose baseline, pruned, random_control, reweight, augment, "
                     "jtt or oracle")


@dataclass
class CorrectionPlan:
    """What a correction variant (reweight, augment) trains on for one seed, decided before anything is written.

    mask : bool array over the training samples; rows : image row per kept sample (augmented ones point past
    the run's images, into the extra images); weights : sampling weight per kept sample, or None (uniform);
    table : train_ids.parquet; record : what metrics.json says about the correction (``corrections``: one
    row per concept or group, with a reason); make_extra : returns the float32 (m, C, H, W) augmented images,
    called only when the model is trained (a reused model needs the plan's hash, not its pixels), or None
    """

    mask: np.ndarray
    rows: np.ndarray
    weights: np.ndarray | None
    table: pd.DataFrame
    record: dict[str, Any]
    make_extra: Callable[[], np.ndarray] | None = None

    def content_hash(self) -> str:
        """A hash of everything the model depends on beyond recipe, seed and data: weights, pastes, reasons."""
        h = hashlib.sha256(self.table.to_csv(index=False).encode())
        h.update(json.dumps(self.record, sort_keys=True, default=str).encode())
        return h.hexdigest()[:16]


def run_train(cfg: Config, run: RunDir) -> StageRecord:
    """Retrain every variant over every seed; evaluate each on every evaluation split.

    Each model is its own resumable unit: ``train/<variant>/seed<k>/metrics.json`` records a
    fingerprint of what the model depends on (recipe, seed, the exact training sample ids, and for
    reweight and augment the content of their plan: weights, pastes, reasons), so a model whose
    training set did not change is not retrained — the baseline survives any
    change of clustering, and a crash loses at most the model in progress.
    """
    from soxai.models.registry import save_checkpoint
    from soxai.saliency.methods import resolve_device

    fp = fingerprint("train", cfg.section_hash("retrain", "model", "train"), *upstream(run, "data", "manifest"))

    def body():
        samples = read_samples(run)
        manifest = read_parquet(run.pruned_parquet)
        train = samples[samples["split"] == "train"].merge(
            manifest[["sample_id", "keep"]], on="sample_id", how="left", validate="one_to_one"
        ).reset_index(drop=True)
        keep = train["keep"].fillna(True).to_numpy(dtype=bool)
        splits = eval_splits(samples)
        images = read_images(run)
        recipe = cfg.section_hash("model", "train")
        data_fp = upstream(run, "data")[0]
        outputs, trained, reused = [], 0, 0
        inputs = None  # what the correction variants read, loaded once when one is configured
        for variant in cfg.retrain.variants:
            for seed in cfg.retrain.seeds:
                mask = variant_train_set(variant, train, keep, seed)
                plan = None
                if variant in CORRECTIONS:
                    inputs = inputs or _correction_inputs(run, train)
                    plan = _correction_plan(cfg, variant, seed, train, images, inputs)
                    mask = plan.mask
                ids = train["sample_id"].to_numpy()[mask]
                ids_hash = hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]
                parts = _variant_parts(cfg, variant) + ([plan.content_hash()] if plan is not None else [])
                model_fp = fingerprint("train-model", recipe, str(seed), ids_hash, data_fp, *parts)
                metrics_path = run.variant_metrics(variant, seed)
                outputs += [metrics_path, run.variant_model(variant, seed), run.variant_manifest(variant, seed)]
                if metrics_path.is_file() and run.variant_model(variant, seed).is_file():
                    old = read_json(metrics_path)
                    if old.get("fingerprint") == model_fp and run.variant_manifest(variant, seed).is_file():
                        reused += 1
                        continue
                rows, labels = train["row"].to_numpy()[mask], train["label"].to_numpy()[mask]
                extra: dict[str, Any] = {}
                table = None
                weights = np.ones(len(ids), dtype=np.int64)
                if variant == "baseline" and seed == cfg.seed and not cfg.model.checkpoint:
                    # same recipe, seed and samples as model/baseline.safetensors: training is deterministic
                    model, device = load_baseline(cfg, run), resolve_device(cfg.train.device)
                elif plan is not None:
                    model, device = _fit(cfg, run, plan.rows, labels, seed, f"{variant} seed {seed}",
                                         sample_weights=plan.weights,
                                         extra=plan.make_extra() if plan.make_extra is not None else None)
                    table, extra = plan.table, plan.record
                elif variant == "jtt":
                    model, device, weights, extra = _fit_jtt(cfg, run, rows, labels, seed)
                elif variant == "oracle":
                    unmarked_rows, unmarked = _unmarked(run)
                    x, x_rows, x_labels = oracle_images(images, train, unmarked_rows, unmarked)
                    model, device = _fit(cfg, run, x_rows, x_labels, seed, f"oracle seed {seed}", images=x)
                    extra = {"oracle_n_unmarked": 0 if unmarked_rows is None else int(len(unmarked_rows)),
                             "oracle_n_train": int(len(x_rows))}
                else:
                    model, device = _fit(cfg, run, rows, labels, seed, f"{variant} seed {seed}")
                if table is None:
                    table = pd.DataFrame({"sample_id": ids, "weight": weights})
                write_parquet(run.variant_manifest(variant, seed), table)
                save_checkpoint(run.variant_model(variant, seed), model, {"seed": seed, "variant": variant})
                write_json(metrics_path, {
                    "variant": variant, "seed": seed, "fingerprint": model_fp, "n_train": int(mask.sum()), **extra,
                    "splits": evaluate_splits(model, images, samples, device, splits, cfg.train.num_workers),
                })
                trained += 1
        return outputs, {"models_trained": trained, "models_reused": reused}

    return run_stage(run, "train", fp, body)


def _variant_parts(cfg: Config, variant: str) -> list[str]:
    """What a variant's model depends on beyond recipe, seed and sample ids (config and logic).

    reweight and augment add their plan's content hash (``CorrectionPlan.content_hash``: the weights, which
    image got which region from which carrier, and why), which follows the concepts, flags and carriers.
    """
    r = cfg.retrain
    if variant == "jtt":
        return ["jtt", str(r.jtt_epochs), str(r.jtt_upweight)]
    if variant == "oracle":
        return ["oracle"]  # same ids as the baseline, other pixels
    if variant == "reweight":
        return ["reweight", f"logic-{CORRECTIONS['reweight']}", str(r.reweight_max_upweight)]
    if variant == "augment":
        return ["augment", f"logic-{CORRECTIONS['augment']}", str(r.augment_rate), r.augment_fallback,
                str(r.reweight_max_upweight) if r.augment_fallback == "reweight" else ""]
    return []


# the correction variants beside pruning, each with the version of its planning logic (a change of what a
# plan holds for the same inputs bumps it, so a kept run directory retrains that variant)
CORRECTIONS: dict[str, int] = {"reweight": 1, "augment": 1}


@dataclass
class _CorrectionInputs:
    """What reweight and augment read beyond the training samples."""

    concept_ids: np.ndarray  # (n_train,) concept of each training sample, -1 = noise
    flagged: dict[int, str]
    scores: pd.DataFrame
    carriers: pd.DataFrame | None
    concept_labels: dict[int, int]


def _correction_inputs(run: RunDir, train: pd.DataFrame) -> _CorrectionInputs:
    assign = read_parquet(run.assignments)[["sample_id", "concept_id"]]
    cids = train[["sample_id"]].merge(assign, on="sample_id", how="left", validate="one_to_one")["concept_id"]
    concepts = read_parquet(run.concepts)
    info = read_json(run.manifest_json) if run.manifest_json.is_file() else {}
    return _CorrectionInputs(
        concept_ids=cids.fillna(-1).to_numpy(dtype=np.int64),
        flagged={int(k): str(v) for k, v in (info.get("flagged_concepts") or {}).items()},
        scores=read_parquet(run.bias_scores) if run.bias_scores.is_file() else pd.DataFrame(
            columns=["concept_id", "detector", "score", "is_bias", "reason"]),
        carriers=read_parquet(run.bias_carriers) if run.bias_carriers.is_file() else None,
        concept_labels={int(c): int(k) for c, k in zip(concepts["concept_id"], concepts["label"], strict=True)
                        if int(c) >= 0},
    )


def _correction_plan(cfg: Config, variant: str, seed: int, train: pd.DataFrame, images: Any,
                     inputs: _CorrectionInputs) -> CorrectionPlan:
    """The reweight or augment plan for one seed (``soxai.train.corrections``); nothing is written here.

    Raises
    ------
    StageError
        When the augment fallback drop_carriers would empty a class and manifest.allow_empty_class is false.
    """
    from soxai.train.corrections import augmented_images, group_balanced_weights, plan_augment, reweight_record

    r = cfg.retrain
    labels, rows = train["label"].to_numpy(), train["row"].to_numpy()
    if variant == "reweight":
        weights = group_balanced_weights(labels, inputs.concept_ids, r.reweight_max_upweight)
        table = pd.DataFrame({"sample_id": train["sample_id"].to_numpy(), "weight": weights,
                              "concept_id": inputs.concept_ids})
        record = {"corrections": reweight_record(labels, inputs.concept_ids, weights, r.reweight_max_upweight),
                  "reweight_max_upweight": r.reweight_max_upweight}
        return CorrectionPlan(np.ones(len(train), dtype=bool), rows, weights, table, record)
    frame = train[["sample_id", "label"]].assign(concept_id=inputs.concept_ids)
    plan = plan_augment(frame, inputs.flagged, inputs.scores, inputs.carriers, inputs.concept_labels,
                        tuple(images.shape[2:]), seed, r.augment_rate, r.augment_fallback, r.reweight_max_upweight)
    for label in np.unique(labels):
        if not plan.keep[labels == label].any() and not cfg.manifest.allow_empty_class:
            raise StageError(
                f"augment's fallback drop_carriers would drop every training sample of class {label}; set "
                "retrain.augment_fallback to reweight or none, or manifest.allow_empty_class=true")
    train_rows = rows.copy()
    train_rows[plan.recipients] = len(images) + np.arange(len(plan.recipients))
    weights = plan.weights[plan.keep]
    record = {"corrections": plan.corrections, "n_augmented": int(len(plan.recipients)),
              "augment_fallback": r.augment_fallback}
    return CorrectionPlan(plan.keep, train_rows[plan.keep], None if np.all(weights == 1) else weights,
                          plan.table(frame), record,
                          make_extra=lambda: augmented_images(images, rows, plan) if len(plan.recipients) else None)


def _unmarked(run: RunDir) -> tuple[np.ndarray | None, np.ndarray | None]:
    from soxai.run_dir import read_npy

    if not run.unmarked.is_file():
        return None, None
    return read_npy(run.unmarked_rows, mmap=False), read_npy(run.unmarked, mmap=False)


def _fit_jtt(cfg: Config, run: RunDir, rows: np.ndarray, labels: np.ndarray, seed: int):
    """JTT: a brief first model; its training errors repeated ``jtt_upweight`` times; a full second model.

    Returns (model, device, weight per training sample, metrics of the first step).
    """
    from soxai.train.loop import predict_logits

    first, device = _fit(cfg, run, rows, labels, seed, f"jtt (first model) seed {seed}", epochs=cfg.retrain.jtt_epochs)
    pred = predict_logits(first, read_images(run), rows, device).argmax(axis=1)
    up_rows, up_labels = jtt_upsample(rows, labels, pred, cfg.retrain.jtt_upweight)
    model, device = _fit(cfg, run, up_rows, up_labels, seed, f"jtt seed {seed}")
    wrong = pred != labels
    weights = np.where(wrong, cfg.retrain.jtt_upweight, 1).astype(np.int64)
    return model, device, weights, {"jtt_n_errors": int(wrong.sum()), "jtt_upweight": cfg.retrain.jtt_upweight}
