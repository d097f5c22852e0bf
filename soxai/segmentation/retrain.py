"""Runners of a segmentation run's train, compare and report stages.

train: ``baseline`` (every training image), ``pruned`` (the manifest's kept images) and ``random_control`` (as many
dropped per class, at random) for every seed of ``retrain.seeds``, each evaluated by per-class IoU and mIoU on
every split but train. compare: per variant, split and metric the mean over seeds with its 95% interval
(:func:`soxai.compare.stats.summarize`; fewer than 3 seeds give none) and the paired differences to the baseline
and to the control. report: the comparison table and, per concept, mask overlays of its exemplars.
"""

from __future__ import annotations

import html
from collections import defaultdict
from typing import Any

import numpy as np
import pandas as pd

from soxai.config import Config
from soxai.data.runner import read_images
from soxai.errors import ConfigError
from soxai.run_dir import RunDir, read_json, read_npy, read_parquet, write_json, write_parquet, write_text
from soxai.segmentation.config import SEGMENTATION_VARIANTS
from soxai.stage import StageRecord, fingerprint, run_stage, upstream

METRIC = "miou"


def variant_keep(variant: str, keep: np.ndarray, labels: np.ndarray, seed: int) -> np.ndarray:
    """Which training images (bool, in manifest order) ``variant`` trains on for ``seed``."""
    from soxai.manifest.policies import random_control

    if variant == "baseline":
        return np.ones(len(keep), dtype=bool)
    if variant == "pruned":
        return keep.astype(bool)
    if variant == "random_control":
        return random_control(labels, keep, seed)
    raise ConfigError(f"retrain.variants names {variant!r}, which task: segmentation does not have; "
                      f"use {', '.join(SEGMENTATION_VARIANTS)}")


def run_segmentation_train(cfg: Config, run: RunDir) -> StageRecord:
    """Train every variant for every seed; write ``train/<variant>/seed<k>/`` model, metrics and training ids."""
    from soxai.data.runner import eval_splits, read_samples
    from soxai.models.registry import save_checkpoint
    from soxai.segmentation.stages import LOGIC_VERSION, evaluate_segmentation, fit_segmenter

    fp = fingerprint("train", cfg.section_hash("seed", "model", "train", "retrain"), f"segmentation-v{LOGIC_VERSION}",
                     *upstream(run, "manifest"))

    def body():
        samples = read_samples(run)
        train = samples[samples["split"] == "train"][["sample_id", "row", "label"]]
        # only sample_id and keep are read: a person's own manifest (soxai retrain --manifest) has no more
        manifest = read_parquet(run.pruned_parquet)[["sample_id", "keep"]].merge(train, on="sample_id")
        keep, labels = manifest["keep"].to_numpy(dtype=bool), manifest["label"].to_numpy()
        outputs, summary = [], {}
        for variant in cfg.retrain.variants:
            for seed in cfg.retrain.seeds:
                chosen = variant_keep(variant, keep, labels, seed)
                rows = manifest["row"].to_numpy()[chosen]
                model, device = fit_segmenter(cfg, run, rows, seed, f"{variant} seed {seed}")
                splits = evaluate_segmentation(model, run, samples, eval_splits(samples), device)
                metrics = {"variant": variant, "seed": seed, "n_train": int(chosen.sum()), "splits": splits}
                ids = pd.DataFrame({"sample_id": manifest["sample_id"].to_numpy()[chosen]})
                outputs += [save_checkpoint(run.variant_model(variant, seed), model.cpu(), {"variant": variant}),
                            write_json(run.variant_metrics(variant, seed), metrics),
                            write_parquet(run.variant_manifest(variant, seed), ids)]
                summary[f"{variant}/seed{seed}"] = round(splits.get("test", {}).get(METRIC, float("nan")), 4)
        return outputs, summary

    return run_stage(run, "train", fp, body)


def build_segmentation_comparison(cfg: Config, run: RunDir) -> dict[str, Any]:
    """``variants → split → metric → summary`` with the paired gains; the detection scores of the manifest."""
    from soxai.compare.stats import excludes_zero, summarize

    per_seed: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    n_train = {}
    for variant in cfg.retrain.variants:
        for seed in cfg.retrain.seeds:
            m = read_json(run.variant_metrics(variant, seed))
            n_train[variant] = m["n_train"]
            for split, sm in m["splits"].items():
                for metric, value in sm.items():
                    if metric != "n":
                        per_seed[variant][split][metric][seed] = value

    def paired(a: str, b: str) -> dict:
        out: dict = {}
        for split, ms in per_seed[a].items():
            for metric in (METRIC, "pixel_accuracy"):
                seeds = sorted(set(ms.get(metric, {})) & set(per_seed[b][split].get(metric, {})))
                diff = [ms[metric][s] - per_seed[b][split][metric][s] for s in seeds]
                out.setdefault(split, {})[metric] = summarize(diff)
        return out

    variants = {v: {s: {k: summarize([vals[x] for x in sorted(vals)]) for k, vals in ms.items()}
                    for s, ms in sp.items()} for v, sp in per_seed.items()}
    gains = {v: paired(v, "baseline") for v in per_seed if v != "baseline"} if "baseline" in per_seed else {}
    over_control = paired("pruned", "random_control") if {"pruned", "random_control"} <= set(per_seed) else {}
    claims = {f"{v}_beats_baseline_on_{s}": bool(g[METRIC]["mean"] > 0 and excludes_zero(g[METRIC]))
              for v, sp in gains.items() for s, g in sp.items() if s != "val"}
    claims.update({f"pruned_beats_random_control_on_{s}": bool(g[METRIC]["mean"] > 0 and excludes_zero(g[METRIC]))
                   for s, g in over_control.items() if s != "val"})
    info = read_json(run.manifest_json)
    return {
        "task": "segmentation", "metric": METRIC, "seeds": list(cfg.retrain.seeds), "n_train": n_train,
        "variants": variants, "gain_over_baseline": gains, "pruned_over_random_control": over_control,
        "claims": claims, "detection": info.get("detection"), "flagged_concepts": info["flagged_concepts"],
        "cost": {"share_dropped": info["share_dropped"], "n_dropped": info["n_dropped"], "n_train": info["n_train"]},
    }


def run_segmentation_compare(cfg: Config, run: RunDir) -> StageRecord:
    fp = fingerprint("compare", cfg.section_hash("retrain"), *upstream(run, "train"))

    def body():
        comparison = build_segmentation_comparison(cfg, run)
        miou = {v: {s: round(m[METRIC]["mean"], 4) for s, m in sp.items()} for v, sp in comparison["variants"].items()}
        return [write_json(run.comparison, comparison)], {"miou": miou, "claims": comparison["claims"]}

    return run_stage(run, "compare", fp, body)


def run_segmentation_report(cfg: Config, run: RunDir) -> StageRecord:
    """``report/report.html``: the comparison, the concepts with their flags, and mask overlays of exemplars."""
    fp = fingerprint("report", f"segmentation-v{_REPORT_VERSION}", *upstream(run, "compare"))

    def body():
        return [write_text(run.report_html, segmentation_report_html(run))], {}

    return run_stage(run, "report", fp, body)


_REPORT_VERSION = 3  # 3: exemplars are maps (image and class)
_EXEMPLARS = 6


def mask_overlay(image: np.ndarray, mask: np.ndarray, saliency: np.ndarray | None = None) -> np.ndarray:
    """RGB uint8 (H, W, 3): the grey image, each mask class tinted in its own colour, and the map's top 10% in
    yellow (when given). ``image`` (C, H, W) in [0, 1]; ``mask`` (H, W) class ids."""
    palette = np.array([[0, 0, 0], [230, 60, 60], [60, 120, 230], [60, 200, 90], [200, 90, 220]], dtype=float)
    grey = np.repeat(np.asarray(image, dtype=float).mean(axis=0)[..., None], 3, axis=2) * 255
    tint = palette[np.asarray(mask, dtype=np.int64) % len(palette)]
    out = np.where((np.asarray(mask) > 0)[..., None], 0.55 * grey + 0.45 * tint, grey)
    if saliency is not None:
        s = np.abs(np.asarray(saliency, dtype=float))
        top = s >= np.quantile(s, 0.9) if s.max() > 0 else np.zeros(s.shape, dtype=bool)
        out[top] = 0.4 * out[top] + 0.6 * np.array([255, 230, 0])
    return np.clip(out, 0, 255).astype(np.uint8)


def _per_class_tables(comparison: dict, classes: list[str], splits: list[str]) -> list[str]:
    """One table per evaluation split (val left out): IoU of every class per variant, mean [95% CI]."""
    from soxai.compare.stats import format_summary

    out = []
    for split in (s for s in splits if s != "val"):
        out.append(f"<h3>IoU per class on {html.escape(split)}</h3><table border=1><tr><th>variant</th>"
                   + "".join(f"<th>{html.escape(c)}</th>" for c in classes) + "</tr>")
        for v, sp in comparison["variants"].items():
            cells = "".join(f"<td>{format_summary(sp.get(split, {}).get(f'iou_{c}'))}</td>" for c in classes)
            out.append(f"<tr><td>{html.escape(v)}</td>{cells}</tr>")
        out.append("</table>")
    return out


def segmentation_report_html(run: RunDir) -> str:
    from soxai.compare.stats import format_summary, seeds_phrase
    from soxai.config import load_run_config
    from soxai.data.runner import read_samples
    from soxai.device import resolve_device
    from soxai.report.plots import png_data_uri
    from soxai.saliency.runner import read_index, read_maps
    from soxai.segmentation.stages import load_segmentation_baseline
    from soxai.segmentation.train import predict_masks

    network, cpu = load_segmentation_baseline(load_run_config(run), run), resolve_device("cpu")
    comparison = read_json(run.comparison)
    info = read_json(run.data_info)
    samples = read_samples(run).set_index("sample_id")
    concepts = read_parquet(run.concepts)
    scores = read_parquet(run.bias_scores).set_index("concept_id")
    images, truth = read_images(run), read_npy(run.label_masks)
    index = read_index(run).set_index("sample_id")
    parts = [f"<h1>soxai segmentation run {html.escape(run.root.name)}</h1>",
             f"<p>classes: {', '.join(html.escape(c) for c in info['segmentation_classes'])}; "
             f"{seeds_phrase(len(comparison['seeds']))}</p>", "<h2>mIoU per variant</h2><table border=1>"]
    splits = sorted({s for sp in comparison["variants"].values() for s in sp})
    parts.append("<tr><th>variant</th>" + "".join(f"<th>{html.escape(s)}</th>" for s in splits) + "</tr>")
    for v, sp in comparison["variants"].items():
        cells = "".join(f"<td>{format_summary(sp.get(s, {}).get(METRIC))}</td>" for s in splits)
        parts.append(f"<tr><td>{html.escape(v)}</td>{cells}</tr>")
    parts.append("</table>")
    parts += _per_class_tables(comparison, info["segmentation_classes"], splits)
    det = comparison.get("detection")
    if det:
        parts.append(f"<p>dropped {det['n_dropped']} training images; against the planted mark: precision "
                     f"{det['precision']:.2f}, recall {det['recall']:.2f}</p>")
    parts.append("<h2>Concepts</h2><p>Exemplars: image with the predicted mask tinted per class and the map's top "
                 "10% in yellow; beside it the true mask.</p>")
    for _, c in concepts[~concepts["is_noise"]].iterrows():
        cid = int(c["concept_id"])
        flag = scores.loc[cid] if cid in scores.index else None
        head = f"concept {cid} (class {html.escape(str(info['class_names'][int(c['label'])]))}, {int(c['size'])} maps)"
        if flag is not None and bool(flag["is_bias"]):
            head += " — FLAGGED"
        parts.append(f"<h3>{head}</h3>")
        if flag is not None:
            parts.append(f"<p>{html.escape(str(flag['reason']))}</p>")
        ids = [i for i in list(c["exemplars"])[:_EXEMPLARS] if i in index.index]
        maps = read_maps(run, index.loc[ids].reset_index()) if ids else []
        for sid, smap in zip(ids, maps, strict=False):
            row = int(samples.loc[index.loc[sid, "image_id"], "row"])  # an exemplar is a map; its image's row
            pred = predict_masks(network, images, np.array([row]), cpu)[0]
            parts.append(f'<img src="{png_data_uri(mask_overlay(images[row], pred, smap))}" width=96> '
                         f'<img src="{png_data_uri(mask_overlay(images[row], truth[row]))}" width=96>')
    return "<!doctype html><html><body>" + "\n".join(parts) + "</body></html>\n"

