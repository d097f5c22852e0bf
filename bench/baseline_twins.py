"""The train stage of a kept run, with and without reusing the baseline's model for variants that change nothing.

A variant with nothing to change (pruning or its random control with nothing dropped, reweight with no tied conflict,
augment with nothing to paste) takes the baseline's model for the seed (soxai.train.variants.VariantInputs
.baseline_twin) instead of training it again. This times the train stage twice on copies of the same kept run
directory (its earlier stages reused, train/ and what follows removed), in one process and in turn: once with the
reuse turned off (``baseline_twin`` answering None, as before it existed) and once as shipped; it checks that both
give the same metrics for every model, and prints the two times and their ratio. Torch runs on one thread, as in
bench/published.py: the run's model/ (the baseline for the run's seed) was trained so, and a model trained on
another thread count differs in its last digits.

    PYTHONPATH=$PWD .venv/bin/python bench/baseline_twins.py --work /tmp/twins RUN_DIR
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path


def timed_train(source: Path, target: Path, reuse: bool) -> tuple[float, dict, int]:
    from soxai.config import load_config
    from soxai.run_dir import RunDir, read_json
    from soxai.runs import run_in_process
    from soxai.train import variants

    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("train", "compare", "report"))
    cfg = load_config(target / "config.yaml")
    original = variants.VariantInputs.baseline_twin
    if not reuse:
        variants.VariantInputs.baseline_twin = lambda self, seed, table=None, extra=None: None
    try:
        t0 = time.perf_counter()
        run_in_process(cfg, target, until="compare")
        seconds = time.perf_counter() - t0
    finally:
        variants.VariantInputs.baseline_twin = original
    run = RunDir(target)
    splits, twins = {}, 0
    for variant in cfg.retrain.variants:
        for seed in cfg.retrain.seeds:
            m = read_json(run.variant_metrics(variant, seed))
            splits[f"{variant}/{seed}"] = m["splits"]
            twins += bool(m.get("baseline_model"))
    return seconds, splits, twins


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--reuse-first", action="store_true",
                        help="time the arm with the reuse first (the first arm pays the process's one-time costs)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # as bench/published.py, whose kept runs' model/ was trained on one thread
    if args.work.resolve().is_relative_to(args.run.resolve()):
        raise SystemExit("--work must be outside the kept run directory")
    load = [os.getloadavg()[0]]
    if args.reuse_first:
        on, after, twins = timed_train(args.run, args.work / "with_reuse", reuse=True)
        off, before, _ = timed_train(args.run, args.work / "without_reuse", reuse=False)
    else:
        off, before, _ = timed_train(args.run, args.work / "without_reuse", reuse=False)
        on, after, twins = timed_train(args.run, args.work / "with_reuse", reuse=True)
    load.append(os.getloadavg()[0])
    print(json.dumps({"run": str(args.run), "models": len(before), "baseline_models_reused": twins,
                      "train_seconds_without_reuse": round(off, 1), "train_seconds_with_reuse": round(on, 1),
                      "ratio": round(off / on, 2), "same_metrics": before == after, "reuse_first": args.reuse_first,
                      "load_avg": [round(x, 1) for x in load]}), flush=True)


if __name__ == "__main__":
    main()
