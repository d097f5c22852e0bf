"""Runners of the ``model`` stage (the baseline) and the ``train`` stage (retrained variants)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from soxai.config import Config
from soxai.data.runner import eval_splits, read_images, read_info, read_samples
from soxai.run_dir import RunDir, read_json, read_parquet, write_json, write_parquet
from soxai.stage import StageRecord, file_hash, fingerprint, run_stage, upstream
from soxai.train.fit import evaluate_splits, fit, load_baseline, make_model
from soxai.train.variants import VARIANTS, VariantInputs, model_fingerprint, plan_variant

__all__ = ["VARIANTS", "evaluate_splits", "load_baseline", "make_model", "run_model", "run_train", "train_model",
           "train_processes"]


def run_model(cfg: Config, run: RunDir) -> StageRecord:
    """Train the baseline model on the whole training split and evaluate it on every split.

    With ``model.checkpoint`` set the baseline is the user's model: the checkpoint is loaded into the
    configured architecture (``weights_only=True``) and evaluated, not trained; its hash is part of
    the fingerprint, so a new file re-runs everything downstream.

    Before training, the model section is checked against the data's real shape and classes
    (:func:`soxai.models.preflight.check_model_config`); after it, a baseline with NaN or infinite weights
    stops the run, and so does one near chance on validation unless ``train.allow_chance_baseline``
    (:mod:`soxai.train.health`). Neither writes the checkpoint.
    """
    from soxai.models.registry import load_checkpoint, save_checkpoint
    from soxai.saliency.methods import resolve_device

    parts = [cfg.section_hash("seed", "model", "train")]
    if cfg.model.checkpoint:
        parts.append(file_hash(cfg.model.checkpoint) if Path(cfg.model.checkpoint).is_file() else "missing")
    fp = fingerprint("model", *parts, *upstream(run, "data"))

    def body():
        from soxai.models.preflight import check_model_config
        from soxai.train.health import check_finite_weights, check_not_at_chance

        info = read_info(run)
        check_model_config(cfg, info)  # the data's real shape and classes, before any training
        samples = read_samples(run)
        train = samples[samples["split"] == "train"]
        meta: dict[str, Any] = {"seed": cfg.seed, "arch": cfg.model.factory or cfg.model.name}
        if cfg.model.checkpoint:
            model, device = make_model(cfg, read_info(run), cfg.seed), resolve_device(cfg.train.device)
            load_checkpoint(Path(cfg.model.checkpoint), model)
            meta["checkpoint"] = str(cfg.model.checkpoint)
        else:
            # the audited model trains in the default memory format: another rounding of it moved 5 of the detection
            # matrix's 50 cases (docs/DETECTION-METHOD.md), so the retraining's faster format stays out of it
            model, device = fit(cfg, run, train["row"].to_numpy(), train["label"].to_numpy(), cfg.seed, "baseline",
                                channels_last=False)
        check_finite_weights(model, cfg)
        splits = eval_splits(samples)
        metrics = evaluate_splits(model, read_images(run), samples, device, ["train", *splits], cfg.train.num_workers)
        judged = splits[0] if splits else "train"  # val where there is one (eval_splits puts it first)
        check_not_at_chance(metrics, samples.loc[samples["split"] == judged, "label"].to_numpy(), judged,
                            int(info["n_classes"]), cfg.train.allow_chance_baseline, cfg.model.checkpoint)
        out = [save_checkpoint(run.baseline_model, model, meta)]
        out.append(write_json(run.baseline_metrics, metrics))
        return out, {split: round(m["accuracy"], 4) for split, m in metrics.items()}

    return run_stage(run, "model", fp, body)


def run_train(cfg: Config, run: RunDir) -> StageRecord:
    """Retrain every variant over every seed; evaluate each on every evaluation split.

    Each model is its own resumable unit: ``train/<variant>/seed<k>/metrics.json`` records a
    fingerprint of what the model depends on (recipe, seed, the exact training sample ids, and for
    reweight and augment the content of their plan: weights, pastes, reasons), so a model whose
    training set did not change is not retrained — the baseline survives any
    change of clustering, and a crash loses at most the model in progress.

    The models are independent: on a Dask worker each is a task of its own (:func:`train_model` through
    soxai.parallel.parallel_map, on a worker with a GPU where the cluster has one), elsewhere they train side by
    side in ``retrain.processes`` worker processes (:func:`train_processes`) or in turn; the stage writes
    ``stage.json`` once every model is there.
    """
    from soxai.parallel import parallel_map, process_pool
    from soxai.progress import progress

    fp = fingerprint("train", cfg.section_hash("retrain", "model", "train"), *upstream(run, "data", "manifest"))

    def body():
        samples = read_samples(run)
        manifest = read_parquet(run.pruned_parquet)
        train = samples[samples["split"] == "train"].merge(
            manifest[["sample_id", "keep"]], on="sample_id", how="left", validate="one_to_one"
        ).reset_index(drop=True)
        keep = train["keep"].fillna(True).to_numpy(dtype=bool)
        inputs = VariantInputs(cfg, run, train, keep, read_images(run))
        models = [(variant, seed) for variant in cfg.retrain.variants for seed in cfg.retrain.seeds]
        job = _ModelJob(samples, eval_splits(samples), *inputs.recipe_and_data)
        processes = train_processes(cfg, len(models), len(train))
        with process_pool(processes, inputs, job) as pool, (  # in turn, each model shows its own bar
                progress(f"retrain {len(models)} models in {processes} processes", len(models), unit="models")
                if pool is not None else contextlib.nullcontext(lambda n, timed=True: None)) as advance:
            # the baseline's models first: a variant with nothing to change takes them (VariantInputs.baseline_twin),
            # so which one it gets must not depend on the order of retrain.variants or on the executor
            outcomes = [outcome for first in (True, False)
                        for outcome in parallel_map(train_model, [m for m in models if (m[0] == "baseline") == first],
                                                    inputs, job, resources={"GPU": 1}, pool=pool,
                                                    on_result=lambda outcome: advance(1, outcome == "trained"))]
        outputs = [path for variant, seed in models for path in
                   (run.variant_metrics(variant, seed), run.variant_model(variant, seed),
                    run.variant_manifest(variant, seed))]
        return outputs, {"models_trained": outcomes.count("trained"), "models_reused": outcomes.count("kept"),
                         "models_from_baseline": outcomes.count("baseline"),
                         "processes": processes if pool is not None else 1}

    return run_stage(run, "train", fp, body)


# training samples x epochs x models below which 'auto' trains in this process. On 2 cores two processes saved 15% of
# the demo's train stage (105 s in turn, 89 s in two: docs/BENCHMARKS.md, bench/retrain_processes.py), about 0.42 ms
# per sample-epoch in turn; that pays for a worker's start (3-4 s importing torch and soxai) past about 60,000
# sample-epochs, rounded up. With more cores the pool saves more, so there the bar errs on the side of one process.
AUTO_MIN_SAMPLE_EPOCHS = 100_000


def train_processes(cfg: Config, n_models: int, n_train: int) -> int:
    """How many worker processes the train stage's models train in (``retrain.processes``; 1: this process).

    'auto': one per usable core, at most one per model, where the models train on CPU and together need at least
    ``AUTO_MIN_SAMPLE_EPOCHS`` (the training split's size x epochs x models); else 1. On a Dask worker no pool is
    made whatever this says (soxai.parallel.process_pool): the cluster trains the models.
    """
    from soxai.parallel import usable_cores
    from soxai.saliency.methods import resolve_device

    if cfg.retrain.processes != "auto":
        return int(cfg.retrain.processes)
    if resolve_device(cfg.train.device).type != "cpu":
        return 1
    if n_train * cfg.train.epochs * n_models < AUTO_MIN_SAMPLE_EPOCHS:
        return 1
    return max(1, min(usable_cores(), n_models))


@dataclass(frozen=True)
class _ModelJob:
    """What every model of a train stage shares beyond the variants' inputs: every sample (for the evaluation),
    the evaluation splits, the recipe's hash and the data stage's fingerprint."""

    samples: pd.DataFrame
    splits: list[str]
    recipe: str
    data_fp: str


def train_model(model: tuple[str, int], inputs: VariantInputs, job: _ModelJob) -> str:
    """Train one variant for one seed and write its files, unless a kept model has the same fingerprint.

    ``model`` is ``(variant, seed)``. Removes a kept ``metrics.json``, then writes ``train_ids.parquet``, the
    checkpoint, then ``metrics.json`` (each file atomically; metrics.json, last, is what marks the model done, so a
    crash in between leaves no metrics.json beside another model's checkpoint). A pure function of its arguments
    and of the baseline's models for the seed (run_train trains those first): the same files in any process.
    Returns 'trained', 'kept' (the model there has the same fingerprint) or 'baseline' (a variant with nothing to
    change took the baseline's model, VariantInputs.baseline_twin).
    """
    from soxai.models.registry import save_checkpoint

    variant, seed = model
    run, train = inputs.run, inputs.train
    plan = plan_variant(variant, inputs, seed)
    ids = train["sample_id"].to_numpy()[plan.mask]
    model_fp = model_fingerprint(job.recipe, seed, ids, job.data_fp, plan.parts)
    metrics_path = run.variant_metrics(variant, seed)
    if metrics_path.is_file() and run.variant_model(variant, seed).is_file():
        old = read_json(metrics_path)
        if old.get("fingerprint") == model_fp and run.variant_manifest(variant, seed).is_file():
            return "kept"
    metrics_path.unlink(missing_ok=True)
    done = plan.fit()
    table = done.table
    if table is None:
        table = pd.DataFrame({"sample_id": ids, "weight": np.ones(len(ids), dtype=np.int64)})
    write_parquet(run.variant_manifest(variant, seed), table)
    save_checkpoint(run.variant_model(variant, seed), done.model, {"seed": seed, "variant": variant})
    write_json(metrics_path, {
        "variant": variant, "seed": seed, "fingerprint": model_fp, "n_train": int(plan.mask.sum()),
        **done.extra,
        "splits": evaluate_splits(done.model, inputs.images, job.samples, done.device, job.splits,
                                  inputs.cfg.train.num_workers),
    })
    return "baseline" if done.extra.get("baseline_model") else "trained"
