"""Score every registered saliency method on a demo-sized cells run; print the tables of docs/SALIENCY.md.

Builds (or re-uses) a run of the built-in demo config (`load_config(None)`: cells, a planted corner
mark) under --run-dir, trains its baseline, then runs `evaluate_saliency` on 300 samples of the
clean 'test' split and of 'test_attacked' (the mark pasted into every non-target-class test image).
Two reference rows are added: uniform random maps (chance) and the image itself as a map (|x|, no
model at all). On 'test_attacked' it also measures how much of each map lies on the pasted mark
("artifact_mass", the mass-accuracy kernel with the mark's box as the mask): the shortcut made visible.
Last, per split, the paired per-sample difference of each method from the configured default
(`saliency.method`) with a 95% t-interval, so that "better" can be told from noise.
Not a test: a few minutes on 2 CPU cores.

    .venv/bin/python bench/saliency_eval.py [--run-dir /tmp/soxai-saliency-eval] [--out tables.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from soxai.compare.stats import format_summary, summarize
from soxai.config import load_config
from soxai.data.artifacts import artifact_boxes
from soxai.data.runner import read_images, run_data
from soxai.run_dir import read_json
from soxai.runs import init_run
from soxai.saliency.evaluate import relevance_mass_accuracy, relevance_rank_accuracy
from soxai.saliency.evaluation import (
    choose_eval_samples,
    eval_paths,
    evaluate_saliency,
    format_table,
    model_predict_proba,
    score_maps,
)
from soxai.saliency.methods import SALIENCY_METHODS, compute_maps, resolve_device
from soxai.train.runner import load_baseline, run_model


def mark_masks(cfg, n: int, height: int, width: int) -> np.ndarray:
    """Boxes of the pasted mark as masks of shape (n, height, width); the demo's mark sits in a fixed corner."""
    boxes = artifact_boxes(n, height, width, cfg.data.artifact, np.random.default_rng(0))
    marks = np.zeros((n, height, width), dtype=bool)
    for i, (y0, x0, y1, x1) in enumerate(boxes):
        marks[i, y0:y1, x0:x1] = True
    return marks


def per_sample_scores(cfg, run, split: str, n_samples: int, methods: list[str]) -> tuple[dict, dict]:
    """Per-sample localisation scores of every method (and of the two references) on the evaluated samples.

    Returns (scores, reference_means): scores[name][metric] is an array of shape (n,) for mass_accuracy,
    rank_accuracy and, on a split with the mark pasted, artifact_mass; reference_means holds every metric
    of `score_maps` for the |x| map.
    """
    chosen = choose_eval_samples(run, [split], n_samples, cfg.seed)
    images = np.asarray(read_images(run)[chosen.samples["row"].to_numpy()], dtype=np.float32)
    targets = chosen.samples["label"].to_numpy()
    n, _, h, w = images.shape
    attacked = split != "test" and cfg.data.artifact is not None and cfg.data.artifact.position != "random"
    marks = mark_masks(cfg, n, h, w) if attacked else None
    model = load_baseline(cfg, run)
    s = cfg.saliency
    device = resolve_device(s.device)

    def score(maps: np.ndarray) -> dict[str, np.ndarray]:
        out = {"mass_accuracy": relevance_mass_accuracy(maps, chosen.masks),
               "rank_accuracy": relevance_rank_accuracy(maps, chosen.masks)}
        if marks is not None:
            out["artifact_mass"] = relevance_mass_accuracy(maps, marks)
        return out

    scores = {m: score(compute_maps(model, images, targets, method=m, batch_size=s.batch_size,
                                    ig_steps=s.ig_steps, reduce=s.reduce, device=device)) for m in methods}
    image_map = np.abs(images).sum(axis=1)
    scores[IMAGE_ROW] = score(image_map)
    scores[CHANCE_ROW] = score(np.random.default_rng(cfg.seed).random((n, h, w)))
    image_means = score_maps(image_map, chosen.masks, images, targets, model_predict_proba(model, device),
                             batch_size=s.batch_size)
    return scores, image_means


IMAGE_ROW = "image as map (no model)"
CHANCE_ROW = "random map (chance)"


def fmt_ci(values: np.ndarray) -> str:
    return format_summary(summarize(list(values)), signed=True)  # no interval under 3 values


def section(cfg, run, split: str, n_samples: int, methods: list[str], repeats: int) -> list[str]:
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    table = evaluate_saliency(cfg, run, methods=methods, n_samples=n_samples, splits=(split,),
                              timing_repeats=repeats)
    wall = time.perf_counter() - t0
    load = max(load, os.getloadavg()[0])
    summary = read_json(eval_paths(run).summary)
    best = ", ".join(f"{m}: {b['method']}" for m, b in summary["best"].items())
    scores, image_means = per_sample_scores(cfg, run, split, n_samples, methods)
    chance = {k: v for k, v in summary["chance"].items() if k != "description"}
    table = pd.concat([table, pd.DataFrame([{"method": CHANCE_ROW, "n": summary["n"], **chance},
                                            {"method": IMAGE_ROW, "n": summary["n"], **image_means}])],
                      ignore_index=True)
    extra = [m for m in ("artifact_mass",) if m in scores[methods[0]]]
    for metric in extra:
        table.insert(table.columns.get_loc("mass_accuracy") + 1, metric,
                     table["method"].map({k: float(np.nanmean(v[metric])) for k, v in scores.items()}))
    acc = read_json(run.baseline_metrics)[split]["accuracy"]
    ref = cfg.saliency.method
    paired = ["| method | " + " | ".join(f"Δ {m}" for m in scores[ref]) + " |",
              "|---|" + "---:|" * len(scores[ref])]
    for name, by_metric in scores.items():
        if name != ref:
            paired.append(f"| {name} | " + " | ".join(fmt_ci(by_metric[m] - scores[ref][m]) for m in by_metric) + " |")
    return [
        f"### `{split}` — {summary['n']} of {summary['n_candidates']} samples, baseline accuracy {acc:.3f}",
        "",
        format_table(table),
        "",
        f"Best per metric (summary.json): {best}. `evaluate_saliency` wall time {wall:.0f} s; "
        f"`seconds` is the fastest of {repeats} runs; 1-minute load average up to {load:.1f} during it.",
        "",
        f"Paired difference from the default `{ref}` on the same {summary['n']} samples, mean [95% t-interval]:",
        "",
        *paired,
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="/tmp/soxai-saliency-eval")
    parser.add_argument("--n-samples", type=int, default=300)
    parser.add_argument("--splits", nargs="+", default=["test", "test_attacked"])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method; the fastest counts")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads; 1 keeps timings stable on a machine shared with other jobs "
                        "(2 threads under a load of 4-6 measured 3-10x slower and erratic)")
    parser.add_argument("--out", help="also write the markdown here")
    args = parser.parse_args()

    cfg = load_config(None)
    run = init_run(cfg, args.run_dir)
    run_data(cfg, run)
    run_model(cfg, run)
    import torch

    torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    methods = list(SALIENCY_METHODS)
    lines = [
        f"Measured {dt.date.today().isoformat()} on {platform.machine()} {platform.system()}, "
        f"{os.cpu_count()} CPU cores, torch {torch.__version__} ({threads} thread{'s' * (threads != 1)}), "
        f"device {resolve_device(cfg.saliency.device)}, with "
        f"`{shlex.join([Path(sys.executable).name, *sys.argv])}`. Run: demo config (`load_config(None)`), "
        f"seed {cfg.seed}, saliency reduce `{cfg.saliency.reduce}`, batch {cfg.saliency.batch_size}, "
        f"IG steps {cfg.saliency.ig_steps}; methods registered: {', '.join(methods)}.",
        "",
    ]
    for split in args.splits:
        lines += section(cfg, run, split, args.n_samples, methods, args.repeats)
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
