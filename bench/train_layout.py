"""One retrained model in the default memory format against channels-last (train logic 1), timed in one run.

On a kept run directory (explained at least through the data stage), the baseline's recipe is trained on the whole
training split for each seed in both formats, alternated so that a change in the machine's speed hits both, with
torch on one thread (what each of the train stage's worker processes uses on a 2-core machine). It prints each fit's
seconds and test accuracy, the medians and their ratio: the formats round differently, so the models differ, and
their accuracies say whether that matters.

    PYTHONPATH=$PWD flock /tmp/soxai-bench.lock .venv/bin/python bench/train_layout.py RUN_DIR [--seeds 1 2 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path


def main() -> None:
    import torch

    from soxai.config import load_run_config
    from soxai.data.runner import read_images, read_samples
    from soxai.run_dir import RunDir
    from soxai.train.fit import evaluate_splits, fit

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    torch.set_num_threads(1)
    run = RunDir(args.run)
    cfg = load_run_config(run)
    samples = read_samples(run)
    train = samples[samples["split"] == "train"]
    images = read_images(run)
    fit(cfg, run, train["row"].to_numpy()[:64], train["label"].to_numpy()[:64], 0, "warm-up", epochs=1)  # imports
    seconds: dict[bool, list[float]] = {False: [], True: []}
    accuracy: dict[bool, list[float]] = {False: [], True: []}
    for seed in args.seeds:
        for channels_last in (False, True):
            t = time.perf_counter()
            model, device = fit(cfg, run, train["row"].to_numpy(), train["label"].to_numpy(), seed, "bench",
                                channels_last=channels_last)
            seconds[channels_last].append(time.perf_counter() - t)
            acc = evaluate_splits(model, images, samples, device, ["test"])["test"]["accuracy"]
            accuracy[channels_last].append(acc)
            print(f"seed {seed} {'channels-last' if channels_last else 'default'}: {seconds[channels_last][-1]:.2f} s, "
                  f"test accuracy {acc:.4f}", flush=True)
    a, b = statistics.median(seconds[False]), statistics.median(seconds[True])
    print(f"median default {a:.2f} s, channels-last {b:.2f} s: channels-last / default {b / a:.2f}; mean test accuracy "
          f"{statistics.mean(accuracy[False]):.4f} against {statistics.mean(accuracy[True]):.4f}")


if __name__ == "__main__":
    main()
