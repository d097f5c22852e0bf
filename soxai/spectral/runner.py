"""Runner of the spectral stage (after concepts, before bias): ``spectral/layers.parquet``,
``frequency.parquet``, ``concept_shares.parquet``, ``surrogate.json`` and ``network.json``.

It reads the baseline model, the concepts and their mean maps, and explains the evaluation samples (and the
few training samples whose stored map explains another class than the prediction) the way the monitor
explains new samples: :func:`soxai.saliency.runner.explain_rows` and
:func:`soxai.concepts.assign.new_sample_features` with the run's own config, projected by its concept model.
Nothing it writes is read by the bias stage, whose fingerprint does not include this stage's.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd

from soxai.config import Config
from soxai.run_dir import RunDir, read_json, read_npy, read_parquet, write_json, write_parquet
from soxai.stage import StageRecord, fingerprint, run_stage, upstream

log = logging.getLogger("soxai")

# The model's logits on each sample and each evaluation sample's explanation are the stage's cost (an
# explanation about eight forward passes: prediction, attribution, channel relevance, logits). The surrogate of
# ~20 concept shares is fitted on a seeded subset of the training samples (300: on the demo the same fidelity
# and flagged weight, within a few points, as 500 or 800), and its fidelity measured on 100 samples of the
# split that decides trust (agreement to about +-2 points, 95%, near 0.97) and 25 of each other evaluation
# split (a glimpse: +-10 points).
FIT_SAMPLES = 300
EVAL_SAMPLES = 100
OTHER_EVAL_SAMPLES = 25


def run_spectral(cfg: Config, run: RunDir) -> StageRecord:
    """Layer spectra, concept frequency content and the baseline's surrogate over concepts."""
    fp = fingerprint("spectral", *upstream(run, "model", "concepts"))

    def body():
        from soxai.data.runner import read_info
        from soxai.saliency.runner import explainer_model
        from soxai.spectral.layers import layer_rows, lipschitz_bound
        from soxai.spectral.surrogate import (
            MAX_TERMS,
            N_NEIGHBORS,
            TRUSTWORTHY,
            is_trustworthy,
            surrogate_entry,
            trust_split,
        )

        clock = [time.perf_counter()]
        parts: dict[str, float] = {}

        def lap(name: str) -> None:
            clock.append(time.perf_counter())
            parts[name] = round(clock[-1] - clock[-2], 3)

        model, layer, device = explainer_model(cfg, run)
        info = read_info(run)
        lap("load")
        rows, skipped = layer_rows(model, tuple(info["image_shape"]))
        for s in skipped:
            log.warning("spectral: layer %s (%s) skipped: %s", s["name"], s["type"], s["why"])
        layers = pd.DataFrame(rows, columns=["name", "type", "kind", "weight_shape", "input_size", "singular_values",
                                             "kernel_norm", "effective_rank", "operator_norm", "operator_norm_exact"])
        lap("layers")
        frequency = _frequency_table(run)
        lap("frequency")
        shares, concept_ids, logits = concept_share_table(cfg, run, model, layer, device)
        lap("concept_shares")
        entry = surrogate_entry(*_fit_inputs(shares, concept_ids, logits), concept_ids, MAX_TERMS,
                                info.get("class_names") or ())
        lap("surrogate")
        splits = [s for s in entry["fidelity"] if s != "train"]
        decide = trust_split(splits)
        entry["trustworthy"] = is_trustworthy(entry, decide)
        surrogate = {
            "features": "concept shares: the share of each concept among the 10 nearest reference samples of the "
                        "explanation of the model's prediction (soxai.spectral.surrogate)",
            "target": "logits minus their mean over classes",
            "n_neighbors": N_NEIGHBORS, "max_terms": MAX_TERMS, "trust_threshold": TRUSTWORTHY,
            "trust_split": decide, "concept_ids": [int(c) for c in concept_ids],
            "n_classes": int(info["n_classes"]), "models": {"baseline": entry},
        }
        bound = lipschitz_bound(rows)
        network = {"input_shape": list(info["image_shape"]), "n_layers": len(rows), "lipschitz_bound": bound,
                   "lipschitz_bound_exact_layers": bool(layers["operator_norm_exact"].all()) if len(layers) else False,
                   "skipped_layers": skipped}
        outputs = [
            write_parquet(run.spectral_layers, layers),
            write_parquet(run.spectral_frequency, frequency),
            write_parquet(run.spectral_shares, shares),
            write_json(run.spectral_network, network),
            write_json(run.spectral_surrogate, surrogate),
        ]
        fid = entry["fidelity"].get(decide, {})
        log.info("spectral: seconds per part %s", parts)
        log.info("spectral: %d layers (%d skipped), Lipschitz bound %.3g; surrogate agreement %.3f on %s",
                 len(rows), len(skipped), bound, fid.get("agreement", float("nan")), decide)
        return outputs, {"n_layers": len(rows), "n_skipped": len(skipped), "lipschitz_bound": bound,
                         "surrogate_agreement": fid.get("agreement"), "surrogate_r2": fid.get("r2"),
                         "surrogate_trustworthy": entry["trustworthy"], "seconds": parts}

    def one_thread_body():
        with one_torch_thread():
            return body()

    return run_stage(run, "spectral", fp, one_thread_body)


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run the block on one torch thread, then give torch back its thread count.

    The stage's torch work is a few hundred images in small batches. On two cores shared with other processes,
    two torch threads that wait for each other at every operation made it 4 times slower than one, and its
    time varied from 5% to 20% of the explain stages' (docs/SPECTRAL.md); on one thread it took 2.5-3%. One
    thread also makes its float sums the same whatever the environment's thread count.
    """
    from soxai.device import torch_threads

    with torch_threads(1):
        yield


def _frequency_table(run: RunDir) -> pd.DataFrame:
    from soxai.spectral.frequency import concept_frequency_rows

    concepts = read_parquet(run.concepts)
    real = concepts[~concepts["is_noise"]].sort_values("map_index")
    maps = read_npy(run.concept_maps, mmap=False)
    rows = concept_frequency_rows(maps[real["map_index"].to_numpy()], real["concept_id"].to_numpy(),
                                  real["label"].to_numpy(), real["size"].to_numpy()) if len(real) else []
    return pd.DataFrame(rows, columns=["concept_id", "label", "hf_share", "class_hf_share", "hf_excess", "frequency",
                                       "power", "class_power"])


def concept_share_table(cfg: Config, run: RunDir, model, layer, device) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Every training and evaluation sample's concept shares, and the model's logits on them.

    Returns
    -------
    shares : DataFrame sample_id, split, row, then one column ``c<id>`` per concept: up to :data:`FIT_SAMPLES`
        seeded training samples first, in the concept model's reference order; then, by sample_id, a seeded
        subset of each evaluation split other than val (of val where there is no other): up to
        :data:`EVAL_SAMPLES` of the split that decides trust, :data:`OTHER_EVAL_SAMPLES` of the others
    concept_ids : int array of shape (n_concepts,)
    logits : float array of shape (n_samples, n_classes), the model's, in the rows of ``shares``
    """
    from soxai.concepts.assign import load_run_concept_model, new_sample_features
    from soxai.data.runner import eval_splits, read_images, read_samples
    from soxai.saliency.runner import explain_rows, read_index
    from soxai.spectral.surrogate import concept_shares, trust_split
    from soxai.train.loop import predict_logits

    cm = load_run_concept_model(run)
    concept_ids = np.array(sorted(int(c) for c in np.unique(cm.concepts_) if c >= 0), dtype=np.int64)
    samples = read_samples(run).set_index("sample_id")
    images = read_images(run)
    as_pred = cfg.model_copy(update={"saliency": cfg.saliency.model_copy(update={"target": "predicted"})})

    def explain(frame: pd.DataFrame) -> np.ndarray:
        rows = frame["row"].to_numpy()
        if len(rows) == 0:
            return np.zeros((0, cm.points_.shape[1]))
        _, target, maps = explain_rows(as_pred, model, images, rows, frame["label"].to_numpy(), device, layer)
        feats = new_sample_features(cfg, maps, model=model, images=images, rows=rows, device=device, targets=target)
        return cm.transform(feats)

    # training samples: the stored explanation where it explains the prediction, a fresh one where it does not
    n_ref = len(cm.sample_ids_)
    fit = np.sort(np.random.default_rng(cfg.seed).choice(n_ref, FIT_SAMPLES, replace=False)) \
        if n_ref > FIT_SAMPLES else np.arange(n_ref)
    train = samples.loc[cm.sample_ids_[fit]].reset_index()
    index = read_index(run).set_index("sample_id").loc[cm.sample_ids_[fit]]
    points = cm.points_[fit].copy()
    redo = np.flatnonzero(index["target"].to_numpy() != index["pred"].to_numpy())
    if len(redo):
        points[redo] = explain(train.iloc[redo])
    blocks = [train[["sample_id", "split", "row"]]]
    x = [concept_shares(points, cm.points_, cm.concepts_, concept_ids, self_rows=fit)]
    frame = samples.reset_index()
    splits = [s for s in eval_splits(frame) if s != "val"] or eval_splits(frame)[:1]
    decide = trust_split(splits)
    for split in splits:
        part = frame[frame["split"] == split].sort_values("sample_id")
        most = EVAL_SAMPLES if split == decide else OTHER_EVAL_SAMPLES
        if len(part) > most:  # a seeded subset, in sample_id order
            keep = np.random.default_rng([cfg.seed, len(blocks)]).choice(len(part), most, replace=False)
            part = part.iloc[np.sort(keep)]
        blocks.append(part[["sample_id", "split", "row"]])
        x.append(concept_shares(explain(part), cm.points_, cm.concepts_, concept_ids))
    table = pd.concat(blocks, ignore_index=True)
    values = np.concatenate(x)
    table = pd.concat([table, pd.DataFrame(values, columns=[f"c{c}" for c in concept_ids])], axis=1)
    logits = predict_logits(model, images, table["row"].to_numpy(), device, batch_size=cfg.saliency.batch_size)
    return table, concept_ids, logits


def _fit_inputs(shares: pd.DataFrame, concept_ids: np.ndarray, logits: np.ndarray):
    cols = [f"c{c}" for c in concept_ids]
    split = shares["split"].to_numpy()
    x = shares[cols].to_numpy(dtype=np.float64)
    train = split == "train"
    evaluation = {s: (x[split == s], logits[split == s]) for s in dict.fromkeys(split[~train])}
    return x[train], logits[train], evaluation


def variant_surrogate(cfg: Config, run: RunDir, variant: str, seed: int) -> dict:
    """The surrogate of a retrained model (``train/<variant>/seed<k>``) over the baseline's concept shares.

    The features stay the baseline's (``spectral/concept_shares.parquet``: what each sample looks like to the
    concepts found); only the logits are the variant's. A shortcut the retrained model no longer uses loses
    its weight. For the report and ``soxai spectral``; nothing is written.
    """
    from soxai.data.class_names import read_class_names
    from soxai.data.runner import read_images, read_info
    from soxai.device import resolve_device
    from soxai.models.registry import load_checkpoint
    from soxai.spectral.surrogate import MAX_TERMS, is_trustworthy, surrogate_entry
    from soxai.train.fit import make_model
    from soxai.train.loop import predict_logits

    surrogate = read_json(run.spectral_surrogate)
    shares = read_parquet(run.spectral_shares)
    concept_ids = np.asarray(surrogate["concept_ids"], dtype=np.int64)
    model = make_model(cfg, read_info(run), seed)
    load_checkpoint(run.variant_model(variant, seed), model)
    with one_torch_thread():
        logits = predict_logits(model.eval(), read_images(run), shares["row"].to_numpy(),
                                resolve_device(cfg.saliency.device), batch_size=cfg.saliency.batch_size)
    entry = surrogate_entry(*_fit_inputs(shares, concept_ids, logits), concept_ids, MAX_TERMS,
                            read_class_names(run))
    entry["trustworthy"] = is_trustworthy(entry, surrogate["trust_split"])
    return entry

