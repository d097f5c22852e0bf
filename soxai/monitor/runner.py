"""Runner of the monitor: new samples scored with a reference run's model and assigned to its concepts.

A monitor run is a run directory of its own: ``config.yaml`` describes the new data (its ``data``
section and seed; every other section comes from the reference run), ``data/`` holds the new samples,
and ``monitor/`` what was found: the concept of every new sample, the concept mix against the
reference (drift), and the new samples that fall into flagged concepts, to keep out of the next
training set.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from soxai.config import Config
from soxai.errors import ConfigError, DataError, StageError
from soxai.run_dir import RunDir, read_json, read_parquet, write_csv, write_json, write_parquet
from soxai.stage import StageRecord, fingerprint, run_stage, upstream

log = logging.getLogger("soxai")


def run_monitor(cfg: Config, run: RunDir, reference: RunDir, splits: tuple[str, ...] = ("train",),
                alpha: float = 0.01) -> StageRecord:
    """Monitor the samples of ``splits`` of ``run`` (whose data stage is complete) against ``reference``.

    Writes ``monitor/assignments.parquet`` (sample_id, split, label, pred, concept_id, votes, distance,
    radius, nearest_sample_id, flagged), ``monitor/drift.parquet`` (see ``concept_mix``),
    ``monitor/exclude.parquet`` + ``.csv`` (the new samples in flagged concepts, with the reason) and
    ``monitor/monitor.json`` (the headline numbers).
    """
    from soxai.bias.decide import flagged_concepts
    from soxai.monitor.drift import concept_mix, mix_test, share_difference
    from soxai.runs import load_run_config

    if not 0 < alpha < 1:
        raise StageError(f"alpha must lie between 0 and 1, got {alpha}")
    ref_cfg = load_run_config(reference)
    parts = upstream(reference, "model", "concepts", "bias")
    fp = fingerprint("monitor", json.dumps([str(reference.root), list(splits), alpha]), *parts,
                     *upstream(run, "data"))

    def body():
        samples = _checked_samples(run, reference, splits)
        chosen = samples[samples["split"].isin(splits)].sort_values(["split", "sample_id"])
        from soxai.concepts.assign import explain_and_assign
        from soxai.data.runner import read_images

        pred, assigned = explain_and_assign(ref_cfg, reference, read_images(run), chosen["row"].to_numpy(),
                                            chosen["label"].to_numpy())
        scores = read_parquet(reference.bias_scores)
        flagged = flagged_concepts(scores) if len(scores) else {}
        keep_cols = ["sample_id", "split", "label"] + [c for c in ("path",) if c in chosen]
        frame = chosen[keep_cols].reset_index(drop=True).assign(pred=pred)
        frame = pd.concat([frame, assigned], axis=1)
        frame["flagged"] = frame["concept_id"].isin(list(flagged))
        ref_assign = read_parquet(reference.assignments)
        mix = concept_mix(ref_assign["concept_id"].to_numpy(), frame["concept_id"].to_numpy(), flagged,
                          read_parquet(reference.concepts), alpha)
        excluded = frame[frame["flagged"]].copy()
        excluded["reason"] = [f"in flagged concept {c} of reference run {reference.root.name} ({flagged[c]})"
                              for c in excluded["concept_id"]]
        excluded = excluded[keep_cols + ["concept_id", "distance", "reason"]]
        in_flagged = share_difference(int(frame["flagged"].sum()), len(frame),
                                      int(ref_assign["concept_id"].isin(list(flagged)).sum()), len(ref_assign))
        summary = {
            "reference_run": str(reference.root),
            "reference_run_id": read_json(reference.run_json).get("run_id", reference.root.name)
            if reference.run_json.is_file() else reference.root.name,
            "splits": list(splits),
            "alpha": alpha,
            "n_new": len(frame),
            "n_reference": len(ref_assign),
            "noise_share": float((frame["concept_id"] == -1).mean()) if len(frame) else 0.0,
            "flagged_concepts": {str(k): v for k, v in sorted(flagged.items())},
            "flagged_share": in_flagged,
            "drift_into_flagged": bool(in_flagged["p_value"] < alpha and in_flagged["diff"] > 0),
            "mix": mix_test(mix),
            "concepts_drifted": [int(c) for c in mix.loc[mix["drift"] != "", "concept_id"]],
            "n_excluded": len(excluded),
        }
        summary["drift"] = bool(summary["mix"]["p_value"] < alpha)
        log.info("monitor: %d new samples, %.1f%% in flagged concepts (reference %.1f%%), %d to exclude",
                 len(frame), 100 * in_flagged["new_share"], 100 * in_flagged["ref_share"], len(excluded))
        outputs = [
            write_parquet(run.monitor_assignments, frame),
            write_parquet(run.monitor_drift, mix),
            write_parquet(run.monitor_exclude_parquet, excluded),
            write_csv(run.monitor_exclude_csv, excluded),
            write_json(run.monitor_json, summary),
        ]
        return outputs, {"n_new": len(frame), "n_excluded": len(excluded),
                         "drift_into_flagged": summary["drift_into_flagged"], "drift": summary["drift"]}

    return run_stage(run, "monitor", fp, body)


def _checked_samples(run: RunDir, reference: RunDir, splits: tuple[str, ...]) -> pd.DataFrame:
    """The new run's samples.parquet, after checking that its data matches the reference's and has ``splits``."""
    from soxai.data.runner import read_info, read_samples

    ref_info, new_info = read_info(reference), read_info(run)
    if ref_info["image_shape"] != new_info["image_shape"] or ref_info["n_classes"] != new_info["n_classes"]:
        raise DataError(
            f"the new data has images of shape {new_info['image_shape']} and {new_info['n_classes']} classes, "
            f"the reference run {reference.root} has {ref_info['image_shape']} and {ref_info['n_classes']}; "
            "monitor data of the same kind as the reference (same image size, channels and classes)"
        )
    samples = read_samples(run)
    unknown = sorted(set(splits) - set(samples["split"]))
    if unknown:
        raise DataError(f"the new data has no split(s) {unknown}; its splits are "
                        f"{sorted(samples['split'].unique())} — choose them with --split")
    return samples


def monitor_config(reference: RunDir, config=None, overrides=()) -> Config:
    """The config of a monitor run: the given file (default the reference's config.yaml) with overrides."""
    from soxai.config import load_config
    from soxai.runs import load_run_config, resolve_paths

    load_run_config(reference)  # a clear error when the reference is not a run (scheduling checks it now, not at 03:00)
    if not reference.concepts.is_file():
        raise ConfigError(f"the reference {reference.root} has no concepts ({reference.relative(reference.concepts)}): "
                          "the monitor assigns new data to a finished run's concepts; pass a run directory that "
                          "`soxai run` or `soxai explain` finished")
    if config is None:
        config = reference.config
    return resolve_paths(load_config(config, list(overrides)))


def check_monitor_dir(root: Path, reference: RunDir) -> Path:
    """``root`` if a monitor run may write there: not the reference run, nor any run of the pipeline (a monitor run
    writes its own config.yaml and data/, and would replace theirs). Returns it resolved.

    Raises
    ------
    ConfigError
        Naming the folder and a free one to use instead.
    """
    root = Path(root).resolve()
    pipeline = [s for s in ("model", "saliency", "concepts", "manifest") if (root / s / "stage.json").is_file()]
    if root == reference.root.resolve() or pipeline:
        what = "the reference run itself" if root == reference.root.resolve() else "a pipeline run"
        raise ConfigError(
            f"--run-dir {root} is {what}: a monitor run writes its own config.yaml and data/ and would replace that "
            f"run's; give the monitor a folder of its own, e.g. --run-dir {root.parent / ('monitor-' + root.name)}"
        )
    return root


def summary_lines(run: RunDir) -> list[str]:
    """The monitor's findings in a few lines of text (for the terminal and the flow's artifact)."""
    info = read_json(run.monitor_json)
    fs = info["flagged_share"]
    lo, hi = fs["ci95"]
    lines = [
        f"{info['n_new']:,} new samples against reference run {info['reference_run_id']} "
        f"({info['n_reference']:,} samples); {info['noise_share']:.1%} are noise (near no concept)",
        f"in flagged concepts: {fs['new_share']:.1%} of the new samples vs {fs['ref_share']:.1%} in the reference "
        f"({fs['diff']:+.1%}, 95% CI [{lo:+.1%}, {hi:+.1%}], p = {fs['p_value']:.2g})"
        + (" — drift into flagged concepts" if info["drift_into_flagged"] else ""),
        f"concept mix: total variation {info['mix']['total_variation']:.3f}, chi-square p = "
        f"{info['mix']['p_value']:.2g}; concepts that moved: {info['concepts_drifted'] or 'none'}",
        f"{info['n_excluded']:,} new samples to keep out of the next training set: {run.monitor_exclude_csv}",
    ]
    return lines
