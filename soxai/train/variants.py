"""The retrain variants: ``VARIANTS`` maps each name to the function that plans its model for one seed.

A plan (``VariantPlan``) says which training samples the variant uses (``mask``), what its model depends on
beyond the recipe, the seed and those samples (``parts``, for the fingerprint), and how to train it (``fit``,
called only when no kept model matches). A new variant is one function here, one entry in ``VARIANTS`` and
its name in ``soxai.train.config.Variant``; the train stage's runner never branches on a variant's name.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from soxai.config import Config
from soxai.data.class_names import class_text, read_class_names
from soxai.data.runner import read_images
from soxai.errors import StageError
from soxai.manifest.policies import random_control
from soxai.run_dir import RunDir, read_json, read_parquet
from soxai.train.baselines import jtt_upsample, oracle_images
from soxai.train.fit import fit, load_baseline

# the correction variants beside pruning, each with the version of its planning logic (a change of what a
# plan holds for the same inputs bumps it, so a kept run directory retrains that variant); augment 8 (2026-12-07):
# a carrier whose concept's channels were read gives the pixels the model's layer sees where they are strongest
# (a carrier found elsewhere: that window; a member: its region widened to it)
# augment 9 (2026-12-07): the unclustered test's flagged classes are augmented too (each carrier's own box).
# reweight 5, augment 10 (2026-12-08): the reasons name a class as `soxai concepts` does ("class round", not "class 0";
# soxai.data.class_names.class_text), and a plan's hash no longer holds its reason texts (CorrectionPlan.content_hash):
# text alone never retrains a model again. Weights and pastes are reweight 4's and augment 9's.
CORRECTIONS: dict[str, int] = {"reweight": 5, "augment": 10}


@dataclass
class Trained:
    """A variant's trained model and what its ``train_ids.parquet`` and ``metrics.json`` say beyond the rest.

    table : the training samples with their weights, or None for ``sample_id`` + weight 1 per sample of the mask
    extra : variant-specific entries of metrics.json
    """

    model: Any
    device: Any
    table: pd.DataFrame | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class VariantPlan:
    """What one variant trains on for one seed, decided before anything is trained or written.

    mask : bool array of shape (n_train,), the training samples the model sees (its ``n_train``)
    parts : what the model depends on beyond recipe, seed and sample ids (config, logic, a plan's content)
    fit : trains the model; called only when no kept model has the same fingerprint
    """

    mask: np.ndarray
    parts: list[str]
    fit: Callable[[], Trained]


@dataclass
class VariantInputs:
    """What every variant's plan may read, loaded once per train stage.

    train : the training split's samples in ``samples.parquet`` order, with the manifest's ``keep``
    keep : bool array of shape (n_train,), the pruned manifest's decision per training sample
    images : the run's images, (n, C, H, W), memory-mapped
    """

    cfg: Config
    run: RunDir
    train: pd.DataFrame
    keep: np.ndarray
    images: Any
    _corrections: _CorrectionInputs | None = None

    @functools.cached_property
    def recipe_and_data(self) -> tuple[str, str]:
        """The recipe's hash and the data stage's fingerprint, which every retrained model's fingerprint holds."""
        from soxai.stage import upstream
        from soxai.train.loop import TRAIN_LOGIC

        return f"{self.cfg.section_hash('model', 'train')}-logic-{TRAIN_LOGIC}", upstream(self.run, "data")[0]

    @functools.cached_property
    def val_groups(self):
        """The val split assigned to the run's concepts (``soxai.train.selection``; None without a val split),
        computed on first use: once per train stage, once per worker process where its models train in several."""
        from soxai.train.selection import val_concept_groups

        return val_concept_groups(self.cfg, self.run)

    def __getstate__(self) -> dict[str, Any]:
        # sent to a Dask worker (soxai.train.runner.train_model): the images are opened again there from the run
        # directory, not copied out of the memory map; what is computed on first use is computed there again
        state = {k: v for k, v in self.__dict__.items() if k not in ("images", "val_groups")}
        return {**state, "_corrections": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, images=read_images(state["run"]))

    def corrections(self) -> _CorrectionInputs:
        """What reweight and augment read (concepts, flags, scores, carriers), loaded on first use."""
        if self._corrections is None:
            self._corrections = _correction_inputs(self.run, self.train)
        return self._corrections

    def fit_mask(self, mask: np.ndarray, seed: int, what: str, twin: bool = True) -> Trained:
        """A model trained on the masked training samples, as they are (every sample, ``twin``: the baseline's model
        for the seed where it is already trained, :meth:`baseline_twin`; the baseline itself trains)."""
        reused = self.baseline_twin(seed) if twin and mask.all() else None
        if reused is not None:
            return reused
        rows, labels = self.train["row"].to_numpy()[mask], self.train["label"].to_numpy()[mask]
        return Trained(*fit(self.cfg, self.run, rows, labels, seed, what))

    def baseline_twin(self, seed: int, table: pd.DataFrame | None = None,
                      extra: dict[str, Any] | None = None) -> Trained | None:
        """The baseline's model for ``seed``, for a variant with nothing to change (every training sample as it is,
        uniform draws, the last epoch: pruning or its control with nothing dropped, reweight with no tied conflict,
        augment with nothing to paste), where it is already trained with the current recipe and data: the model
        stage's for the run's seed, ``train/baseline/seed<k>`` for another; None otherwise (the variant then trains).
        metrics.json says ``baseline_model: true``.

        The run's seed's baseline is the audited model itself: the same recipe, seed and samples, in another float
        order than the train stage's models (the model stage trains on all of torch's threads in the default memory
        format; the train stage's workers on their share of the cores, channels-last since train logic 1). That
        seed's pairs differ in rounding as well as in samples, as they did through the thread count alone before."""
        from soxai.models.registry import load_checkpoint
        from soxai.saliency.methods import resolve_device
        from soxai.train.fit import make_model

        extra = {**(extra or {}), "baseline_model": True}
        device = resolve_device(self.cfg.train.device)
        if seed == self.cfg.seed and not self.cfg.model.checkpoint:
            return Trained(load_baseline(self.cfg, self.run), device, table, extra)
        metrics, path = self.run.variant_metrics("baseline", seed), self.run.variant_model("baseline", seed)
        if not (metrics.is_file() and path.is_file()):
            return None
        recipe, data_fp = self.recipe_and_data
        fp = model_fingerprint(recipe, seed, self.train["sample_id"].to_numpy(), data_fp, [])
        if read_json(metrics).get("fingerprint") != fp:
            return None
        model = make_model(self.cfg, read_json(self.run.data_info), seed)
        load_checkpoint(path, model)
        return Trained(model.eval(), device, table, extra)


def model_fingerprint(recipe: str, seed: int, ids: np.ndarray, data_fp: str, parts: list[str]) -> str:
    """What a retrained model depends on: recipe, seed, the exact training sample ids, the data and its plan's
    ``parts`` (soxai.train.runner.train_model keeps a model whose metrics.json holds the same)."""
    from soxai.stage import fingerprint

    ids_hash = hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]
    return fingerprint("train-model", recipe, str(seed), ids_hash, data_fp, *parts)


def baseline_plan(inputs: VariantInputs, seed: int) -> VariantPlan:
    """The whole training set. The run's seed reuses model/, the audited model (same recipe, seed and samples)."""
    cfg, mask = inputs.cfg, np.ones(len(inputs.train), dtype=bool)

    def train() -> Trained:
        if seed == cfg.seed and not cfg.model.checkpoint:
            from soxai.saliency.methods import resolve_device

            return Trained(load_baseline(cfg, inputs.run), resolve_device(cfg.train.device))
        return inputs.fit_mask(mask, seed, f"baseline seed {seed}", twin=False)

    return VariantPlan(mask, [], train)


def pruned_plan(inputs: VariantInputs, seed: int) -> VariantPlan:
    """The samples the pruned manifest keeps."""
    return VariantPlan(inputs.keep, [], lambda: inputs.fit_mask(inputs.keep, seed, f"pruned seed {seed}"))


def random_control_plan(inputs: VariantInputs, seed: int) -> VariantPlan:
    """As many samples dropped per class as pruning dropped, chosen at random (seeded per seed)."""
    mask = random_control(inputs.train["label"].to_numpy(), inputs.keep, seed=10_000 + seed)
    return VariantPlan(mask, [], lambda: inputs.fit_mask(mask, seed, f"random_control seed {seed}"))


def jtt_plan(inputs: VariantInputs, seed: int) -> VariantPlan:
    """JTT: a brief first model; its training errors repeated ``jtt_upweight`` times; a full second model."""
    from soxai.train.loop import predict_logits

    cfg, run, r = inputs.cfg, inputs.run, inputs.cfg.retrain
    mask = np.ones(len(inputs.train), dtype=bool)

    def train() -> Trained:
        rows, labels = inputs.train["row"].to_numpy(), inputs.train["label"].to_numpy()
        first, device = fit(cfg, run, rows, labels, seed, f"jtt (first model) seed {seed}", epochs=r.jtt_epochs)
        pred = predict_logits(first, read_images(run), rows, device).argmax(axis=1)
        up_rows, up_labels = jtt_upsample(rows, labels, pred, r.jtt_upweight)
        model, device = fit(cfg, run, up_rows, up_labels, seed, f"jtt seed {seed}")
        wrong = pred != labels
        weights = np.where(wrong, r.jtt_upweight, 1).astype(np.int64)
        table = pd.DataFrame({"sample_id": inputs.train["sample_id"].to_numpy(), "weight": weights})
        return Trained(model, device, table, {"jtt_n_errors": int(wrong.sum()), "jtt_upweight": r.jtt_upweight})

    return VariantPlan(mask, ["jtt", str(r.jtt_epochs), str(r.jtt_upweight)], train)


def oracle_plan(inputs: VariantInputs, seed: int) -> VariantPlan:
    """The training samples without the artifact (the data's unmarked copies): evaluation only."""

    def train() -> Trained:
        unmarked_rows, unmarked = _unmarked(inputs.run)
        x, x_rows, x_labels = oracle_images(inputs.images, inputs.train, unmarked_rows, unmarked)
        model, device = fit(inputs.cfg, inputs.run, x_rows, x_labels, seed, f"oracle seed {seed}", images=x)
        return Trained(model, device, extra={
            "oracle_n_unmarked": 0 if unmarked_rows is None else int(len(unmarked_rows)),
            "oracle_n_train": int(len(x_rows))})

    # same ids as the baseline, other pixels
    return VariantPlan(np.ones(len(inputs.train), dtype=bool), ["oracle"], train)


def reweight_plan(inputs: VariantInputs, seed: int) -> VariantPlan:
    """Group-balanced sampling: each class's conflict concepts against the rest of it (``soxai.train.corrections``)."""
    r = inputs.cfg.retrain
    return _correction(inputs, seed, "reweight",
                       ["reweight", f"logic-{CORRECTIONS['reweight']}", str(r.reweight_max_upweight),
                        f"selection={r.reweight_selection}"])


def augment_plan(inputs: VariantInputs, seed: int) -> VariantPlan:
    """A flagged concept's region pasted into other classes' images (``soxai.train.augment``)."""
    r = inputs.cfg.retrain
    return _correction(inputs, seed, "augment",
                       ["augment", f"logic-{CORRECTIONS['augment']}", str(r.augment_rate), r.augment_fallback,
                        str(r.reweight_max_upweight) if r.augment_fallback == "reweight" else ""])


VARIANTS: dict[str, Callable[[VariantInputs, int], VariantPlan]] = {
    "baseline": baseline_plan,
    "pruned": pruned_plan,
    "random_control": random_control_plan,
    "reweight": reweight_plan,
    "augment": augment_plan,
    "jtt": jtt_plan,
    "oracle": oracle_plan,
}


def plan_variant(variant: str, inputs: VariantInputs, seed: int) -> VariantPlan:
    """``VARIANTS[variant](inputs, seed)``, with the choices in the error for an unknown name."""
    if variant not in VARIANTS:
        raise StageError(f"unknown variant {variant!r}; choose {', '.join(VARIANTS)}")
    return VARIANTS[variant](inputs, seed)


# ------------------------------------------------------------------ the correction variants' plans


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
    geometry: str = ""  # augment: a digest of where each paste goes (:func:`_paste_geometry`), which no column holds

    @property
    def unchanged(self) -> bool:
        """Every training sample as it is, uniform draws, no extra images: the baseline's recipe."""
        return bool(self.mask.all()) and self.weights is None and self.make_extra is None

    def content_hash(self) -> str:
        """A hash of everything the model depends on beyond recipe, seed and data: weights, pastes and the rest of
        the table and record, not the reasons that say it in words (a change of wording retrains nothing)."""
        h = hashlib.sha256(self.table.drop(columns=["reason"], errors="ignore").to_csv(index=False).encode())
        h.update(json.dumps(_without_reasons(self.record), sort_keys=True, default=str).encode())
        h.update(self.geometry.encode())
        return h.hexdigest()[:16]


def _without_reasons(value: Any) -> Any:
    """``value`` (nested dicts and lists) without any dict entry named 'reason'."""
    if isinstance(value, dict):
        return {k: _without_reasons(v) for k, v in value.items() if k != "reason"}
    if isinstance(value, list):
        return [_without_reasons(v) for v in value]
    return value


def _correction(inputs: VariantInputs, seed: int, variant: str, parts: list[str]) -> VariantPlan:
    """The variant plan of a correction: its ``CorrectionPlan``'s mask, and its content hash in the parts."""
    plan = _correction_plan(inputs.cfg, variant, seed, inputs.train, inputs.images, inputs.corrections())

    def train() -> Trained:
        from soxai.saliency.methods import resolve_device
        from soxai.train.selection import selection_for

        if plan.unchanged:  # nothing to change: the baseline's model for the seed, where it is there
            twin = inputs.baseline_twin(seed, plan.table, plan.record)
            if twin is not None:
                return twin
        labels = inputs.train["label"].to_numpy()[plan.mask]
        val_score, selection = None, {}
        if variant == "reweight" and plan.weights is not None:  # an unweighted reweight is the baseline
            val_score, selection = selection_for(inputs.cfg, lambda: inputs.val_groups, inputs.images,
                                                 resolve_device(inputs.cfg.train.device))
        model, device = fit(inputs.cfg, inputs.run, plan.rows, labels, seed, f"{variant} seed {seed}",
                            sample_weights=plan.weights,
                            extra=plan.make_extra() if plan.make_extra is not None else None, val_score=val_score)
        if val_score is not None:
            selection = val_score.record()
        return Trained(model, device, plan.table, {**plan.record, **({"selection": selection} if selection else {})})

    return VariantPlan(plan.mask, [*parts, plan.content_hash()], train)


@dataclass
class _CorrectionInputs:
    """What reweight and augment read beyond the training samples."""

    concept_ids: np.ndarray  # (n_train,) concept of each training sample, -1 = noise
    preds: np.ndarray  # (n_train,) the explained baseline's prediction of each training sample
    flagged: dict[int, str]
    scores: pd.DataFrame
    carriers: pd.DataFrame | None
    concept_labels: dict[int, int]
    conflicts: list[tuple[int, int]] | None  # (concept_id, label) of bias/conflicts.parquet's conflicts; None: no file
    unclustered: dict[int, str] = field(default_factory=dict)  # {class: reason}, the unclustered test's flags
    class_names: tuple[str, ...] = ()  # the data stage's (soxai.data.class_names.read_class_names)


def _correction_inputs(run: RunDir, train: pd.DataFrame) -> _CorrectionInputs:
    assign = read_parquet(run.assignments)[["sample_id", "concept_id", "pred"]]
    joined = train[["sample_id", "label"]].merge(assign, on="sample_id", how="left", validate="one_to_one")
    cids = joined["concept_id"]
    concepts = read_parquet(run.concepts)
    info = read_json(run.manifest_json) if run.manifest_json.is_file() else {}
    conflicts = read_parquet(run.bias_conflicts) if run.bias_conflicts.is_file() else None
    return _CorrectionInputs(
        concept_ids=cids.fillna(-1).to_numpy(dtype=np.int64),
        preds=joined["pred"].fillna(joined["label"]).to_numpy(dtype=np.int64),
        flagged={int(k): str(v) for k, v in (info.get("flagged_concepts") or {}).items()},
        unclustered={int(k): str(v) for k, v in (info.get("flagged_unclustered") or {}).items()},
        scores=read_parquet(run.bias_scores) if run.bias_scores.is_file() else pd.DataFrame(
            columns=["concept_id", "detector", "score", "is_bias", "reason"]),
        carriers=read_parquet(run.bias_carriers) if run.bias_carriers.is_file() else None,
        concept_labels={int(c): int(k) for c, k in zip(concepts["concept_id"], concepts["label"], strict=True)
                        if int(c) >= 0},
        class_names=read_class_names(run),
        conflicts=None if conflicts is None else [] if conflicts.empty else [
            (int(c), int(k)) for c, k, hit in zip(conflicts["concept_id"], conflicts["label"],
                                                  conflicts["is_conflict"], strict=True) if bool(hit)],
    )


def _correction_plan(cfg: Config, variant: str, seed: int, train: pd.DataFrame, images: Any,
                     inputs: _CorrectionInputs) -> CorrectionPlan:
    """The reweight or augment plan for one seed (``soxai.train.corrections``, ``soxai.train.augment``); nothing
    is written here.

    Raises
    ------
    StageError
        When the augment fallback drop_carriers would empty a class and manifest.allow_empty_class is false.
    """
    from soxai.manifest.policies import emptied_classes
    from soxai.train.augment import augmented_images, plan_augment
    from soxai.train.corrections import (
        REST,
        carrier_mask,
        group_balanced_weights,
        reweight_groups,
        reweight_record,
        settle_untied,
        tied_conflicts,
    )

    r = cfg.retrain
    labels, rows = train["label"].to_numpy(), train["row"].to_numpy()
    cls = functools.partial(class_text, class_names=inputs.class_names)
    if variant == "reweight":
        if inputs.conflicts is None:
            raise StageError("reweight balances the conflict test's concepts, but bias/conflicts.parquet is missing "
                             "from the run directory: run the bias stage again (soxai run RUN_DIR reruns what is "
                             "missing)")
        carrier = carrier_mask(inputs.carriers, train["sample_id"].to_numpy())
        tied, untied = tied_conflicts(labels, inputs.concept_ids, inputs.preds, inputs.conflicts, inputs.flagged,
                                      carrier, cls=cls)
        groups = reweight_groups(labels, inputs.concept_ids, tied)
        # nothing tied: every weight 1, the baseline's samples, uniform draws and last epoch
        weights = group_balanced_weights(labels, groups, r.reweight_max_upweight, carrier) if tied \
            else np.ones(len(train))
        table = pd.DataFrame({"sample_id": train["sample_id"].to_numpy(), "weight": weights,
                              "concept_id": inputs.concept_ids, "conflict": groups != REST, "carrier": carrier})
        record_rows = reweight_record(labels, groups, weights, r.reweight_max_upweight, carriers=carrier, cls=cls) \
            if tied else []
        record_rows += settle_untied(untied, labels, inputs.concept_ids, weights, cls=cls)
        if not record_rows:
            record_rows = [{"concept_id": None, "label": None, "correction": "none", "n_samples": 0, "weight": 1.0,
                            "reason": "no conflict concept: nothing to reweight, so reweight trained as the baseline"}]
        return CorrectionPlan(np.ones(len(train), dtype=bool), rows, weights if tied else None, table,
                              {"corrections": record_rows, "reweight_max_upweight": r.reweight_max_upweight})
    frame = train[["sample_id", "label"]].assign(concept_id=inputs.concept_ids)
    plan = plan_augment(frame, inputs.flagged, inputs.scores, inputs.carriers, inputs.concept_labels,
                        tuple(images.shape[2:]), seed, r.augment_rate, r.augment_fallback, r.reweight_max_upweight,
                        unclustered=inputs.unclustered, cls=cls)
    emptied = [] if cfg.manifest.allow_empty_class else emptied_classes(labels, plan.keep)
    if emptied:
        raise StageError(
            f"augment's fallback drop_carriers would drop every training sample of {cls(emptied[0])}; set "
            "retrain.augment_fallback to reweight or none, or manifest.allow_empty_class=true")
    train_rows = rows.copy()
    train_rows[plan.recipients] = len(images) + np.arange(len(plan.recipients))
    weights = plan.weights[plan.keep]
    record = {"corrections": plan.corrections, "n_augmented": int(len(plan.recipients)),
              "augment_fallback": r.augment_fallback}
    return CorrectionPlan(plan.keep, train_rows[plan.keep], None if np.all(weights == 1) else weights,
                          plan.table(frame), record,
                          make_extra=(lambda: augmented_images(images, rows, plan)) if len(plan.recipients) else None,
                          geometry=_paste_geometry(plan))


def _paste_geometry(plan: Any) -> str:
    """A digest of where an augment plan's pastes go: each region (detector, box, mask, whole image) and the box
    each pair copies (``AugmentPlan.boxes``). The reasons say it in words, which the plan's hash leaves out."""
    h = hashlib.sha256()
    for cid in sorted(plan.regions):
        region = plan.regions[cid]
        mask = "" if region.mask is None else hashlib.sha256(np.ascontiguousarray(region.mask, bool)).hexdigest()
        h.update(json.dumps([int(cid), region.detector, region.box, mask, region.whole_image], default=str).encode())
    if plan.boxes is not None:
        h.update(np.ascontiguousarray(plan.boxes, dtype=np.float64).tobytes())
    return h.hexdigest()

def _unmarked(run: RunDir) -> tuple[np.ndarray | None, np.ndarray | None]:
    from soxai.run_dir import read_npy

    if not run.unmarked.is_file():
        return None, None
    return read_npy(run.unmarked_rows, mmap=False), read_npy(run.unmarked, mmap=False)
