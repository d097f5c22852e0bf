"""Runner of the manifest stage: the pruned training set, with a reason per dropped sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from soxai.concepts.cluster import NOISE
from soxai.config import Config
from soxai.data.class_names import class_text, read_class_names
from soxai.data.runner import read_samples
from soxai.errors import StageError
from soxai.run_dir import RunDir, read_json, read_parquet, write_csv, write_json, write_parquet
from soxai.stage import StageRecord, fingerprint, run_stage, upstream


def run_manifest(cfg: Config, run: RunDir) -> StageRecord:
    """Apply the prune policy; write ``manifest/pruned.parquet`` + ``.csv`` and ``manifest/manifest.json``.

    The manifest lists every sample (all splits); only training samples can be dropped.
    """
    from soxai.bias.decide import flagged_concepts

    mcfg = cfg.manifest
    fp = fingerprint("manifest", cfg.section_hash("manifest"), *upstream(run, "bias"))

    def body():
        samples = read_samples(run)
        assign = read_parquet(run.assignments)[["sample_id", "concept_id", "pred"]]
        scores = read_parquet(run.bias_scores)
        flagged = flagged_concepts(scores, cfg.bias.min_flags) if len(scores) else {}
        unclustered = _unclustered_flags(run)
        frame = samples.merge(assign, on="sample_id", how="left", validate="one_to_one")
        is_train = (frame["split"] == "train").to_numpy()
        train = frame[is_train].reset_index(drop=True)
        ctx = _policy_context(cfg, run, train, flagged)
        # the policies see a class's flagged unclustered samples as concept -1, whose carriers only are dropped
        flagged_all = {**flagged, **({NOISE: "; ".join(unclustered.values())} if unclustered else {})}
        decisions, kept_whole = _decide_every_policy(train, flagged_all, ctx, mcfg.max_class_drop)
        keep_train, reasons_train = decisions[mcfg.policy]
        in_flagged = train["concept_id"].isin(list(flagged)).to_numpy()
        keep = np.ones(len(frame), dtype=bool)
        keep[is_train] = keep_train
        reasons = np.array([""] * len(frame), dtype=object)
        reasons[is_train] = reasons_train
        counts = _class_counts(train, keep_train, flagged, mcfg.allow_empty_class, ctx.class_names)
        columns = ["sample_id", "split", "label"] + [c for c in ("path", "row") if c in frame]
        out = frame[columns].copy()
        out["keep"] = keep
        out["reason"] = reasons.astype(str)
        out["concept_id"] = frame["concept_id"].astype("Int64")
        run_info = read_json(run.run_json) if run.run_json.is_file() else {}
        info = {
            "run_id": run_info.get("run_id", run.root.name),
            "config_hash": cfg.section_hash(*Config.model_fields),
            "policy": mcfg.policy,
            "flagged_concepts": {str(k): v for k, v in flagged.items()},
            "n_train": int(is_train.sum()),
            "n_dropped": int((~keep_train).sum()),
            "share_dropped": float((~keep_train).mean()) if len(keep_train) else 0.0,
            "per_class": counts,
            "flagged_unclustered": {str(k): v for k, v in unclustered.items()},
            "nothing_flagged": not flagged and not unclustered,
            # classes the prune would have taken most of, kept whole (manifest.max_class_drop)
            "classes_kept_whole": kept_whole[mcfg.policy],
            # where the policy's line differs from the concepts' (drop_carriers): dropped samples outside the
            # flagged concepts, and members of flagged concepts kept
            "dropped_outside_flagged": int((~keep_train & ~in_flagged).sum()),
            "members_kept": int((keep_train & in_flagged).sum()),
        }
        # every policy's own manifest, for comparison and `soxai retrain --manifest`
        policy_outputs = [write_parquet(run.policy_manifest(name), _policy_table(train, keep_p, reasons_p))
                          for name, (keep_p, reasons_p) in decisions.items()]
        info["policies"] = {
            name: {"n_dropped": int((~k).sum()), "share_dropped": float((~k).mean()) if len(k) else 0.0}
            for name, (k, _) in decisions.items()
        }
        outputs = [
            *policy_outputs,
            write_parquet(run.pruned_parquet, out),
            write_csv(run.pruned_csv, out),
            write_json(run.manifest_json, info),
        ]
        return outputs, {"n_dropped": info["n_dropped"], "flagged": sorted(flagged)}

    return run_stage(run, "manifest", fp, body)


def _unclustered_flags(run: RunDir) -> dict[int, str]:
    """{class: reason} of the classes whose unclustered samples the bias stage flagged (soxai.bias.unclustered);
    empty for a run without the test."""
    if not run.bias_unclustered.is_file():
        return {}
    table = read_parquet(run.bias_unclustered)
    return {int(r.label): str(r.reason) for r in table[table["is_bias"].astype(bool)].itertuples()}


def _decide_every_policy(train: pd.DataFrame, flagged: dict[int, str], ctx, max_class_drop: float):
    """Every prune policy's ``(keep, reasons)`` over the training samples, with the detectors' why appended and
    the classes a policy would take most of kept whole; and ``{policy: classes kept whole}``."""
    from soxai.manifest.policies import PRUNE_POLICIES, keep_majority_classes

    decisions, kept_whole = {}, {}
    # the baseline's errors on the training samples (a sample the explain stages skipped counts as right)
    pred = train["pred"].to_numpy(dtype=np.float64) if "pred" in train else np.full(len(train), np.nan)
    wrong = ~np.isnan(pred) & (pred != train["label"].to_numpy())
    for name, policy in PRUNE_POLICIES.items():
        keep_p, reasons_p = policy(train, flagged, ctx)
        reasons_p = [_with_why(r, flagged) for r in reasons_p]
        keep_p, reasons_p, kept_whole[name] = keep_majority_classes(
            train["label"].to_numpy(), keep_p, reasons_p, flagged, max_class_drop, wrong, ctx.class_names)
        decisions[name] = (keep_p, reasons_p)
    return decisions, kept_whole


def _class_counts(train: pd.DataFrame, keep_train: np.ndarray, flagged: dict[int, str],
                  allow_empty_class: bool, class_names: tuple[str, ...] = ()) -> dict[str, dict[str, int]]:
    """Kept and dropped training samples per class; a StageError for an emptied class unless allowed."""
    from soxai.manifest.policies import emptied_classes

    labels = train["label"].to_numpy()
    emptied = [] if allow_empty_class else emptied_classes(labels, keep_train)
    if emptied:
        raise StageError(
            f"pruning would drop every training sample of {class_text(emptied[0], class_names)} (concepts "
            f"{sorted(flagged)}); "
            "check the flags with `soxai concepts list RUN_DIR`, keep a concept with bias.overrides, "
            "or set manifest.allow_empty_class=true"
        )
    counts = {}
    for label in sorted(np.unique(labels)):
        kept = int(keep_train[labels == label].sum())
        counts[str(int(label))] = {"kept": kept, "dropped": int((labels == label).sum()) - kept}
    return counts


def _policy_table(train: pd.DataFrame, keep: np.ndarray, reasons: list[str]) -> pd.DataFrame:
    """One policy's own manifest (``manifest/policies/<name>.parquet``): sample_id, label, keep, reason, concept_id."""
    one = train[["sample_id", "label"]].copy()
    one["keep"], one["reason"] = keep, [str(r) for r in reasons]
    one["concept_id"] = train["concept_id"].astype("Int64")
    return one


def use_user_manifest(cfg: Config, run: RunDir, path) -> StageRecord:
    """Replace the run's pruned manifest with a user's file of ``sample_id, keep`` (csv/parquet).

    The manifest stage is re-fingerprinted on the file's content, so retraining follows it. The file is
    read and checked (:func:`soxai.manifest.user_manifest.read_user_manifest`) before anything is written.
    """
    from soxai.manifest.user_manifest import read_user_manifest
    from soxai.stage import file_hash

    path = Path(path)
    class_names = read_class_names(run)
    merged = read_user_manifest(path, read_parquet(run.pruned_parquet), cfg.manifest.allow_empty_class,
                                class_names)
    fp = fingerprint("manifest", "user", file_hash(path), *upstream(run, "bias"))

    def body():
        info = read_json(run.manifest_json)
        train = merged[merged["split"] == "train"]
        info.update(policy=f"user manifest {path}", n_dropped=int((~train["keep"]).sum()),
                    share_dropped=float((~train["keep"]).mean()))
        outs = [write_parquet(run.pruned_parquet, merged), write_csv(run.pruned_csv, merged),
                write_json(run.manifest_json, info)]
        return outs, {"n_dropped": info["n_dropped"], "user_manifest": str(path)}

    return run_stage(run, "manifest", fp, body)


def _with_why(reason: str, flagged: dict[int, str]) -> str:
    """Append the detectors' reason to a 'member of flagged concept N...' or 'carries the shortcut of
    flagged concept N...' reason."""
    for prefix in ("member of flagged concept ", "carries the shortcut of flagged concept "):
        if reason.startswith(prefix):
            cid = int(reason[len(prefix):].split(" ", 1)[0].rstrip(":"))
            return f"{reason} ({flagged[cid]})" if cid in flagged else reason
    return reason


def _policy_context(cfg: Config, run: RunDir, train, flagged: dict[int, str]):
    """Each flagged concept's salient box (the transplant test's box) and a lazy reader of members' maps."""
    from soxai.bias.detectors import WHOLE_IMAGE_DETECTORS
    from soxai.bias.paste import salient_box
    from soxai.manifest.policies import PolicyContext
    from soxai.run_dir import read_npy
    from soxai.saliency.runner import read_index, read_maps

    concepts = read_parquet(run.concepts).set_index("concept_id")
    mean = read_npy(run.concept_maps, mmap=False)
    h, w = mean.shape[1:] if mean.ndim == 3 else (0, 0)
    side = max(1, int(round(cfg.bias.transplant.region_frac * min(h, w)))) if h else 1
    scores = read_parquet(run.bias_scores)
    flags = scores[scores["is_bias"].astype(bool)]
    # a concept that only whole-image detectors flagged has no region to measure members against
    regional = set(flags.loc[~flags["detector"].isin(WHOLE_IMAGE_DETECTORS), "concept_id"].astype(int))
    boxes = {cid: salient_box(mean[int(concepts.loc[cid, "map_index"])], side)
             for cid in flagged if cid in regional and cid in concepts.index
             and int(concepts.loc[cid, "map_index"]) >= 0}

    def sample_maps(positions: np.ndarray) -> np.ndarray:
        index = read_index(run).set_index("sample_id")
        ids = train["sample_id"].to_numpy()[positions]
        return np.abs(read_maps(run, index.loc[ids].reset_index()))

    carriers = read_parquet(run.bias_carriers) if run.bias_carriers.is_file() else None
    return PolicyContext(boxes=boxes, sample_maps=sample_maps, region_threshold=cfg.manifest.region_threshold,
                         carriers=carriers, class_names=read_class_names(run))
