"""The train stage of a kept run in this process and in worker processes (``retrain.processes``), timed in one run.

Each setting runs ``run_train`` on its own copy of the kept run directory (its earlier stages reused; train/ and what
follows removed) in a fresh subprocess, with torch's default thread count (what ``soxai run`` does). The settings
alternate over ``--rounds``, so a change in the machine's speed hits both. It prints each time, the ratio of the
means, and whether every file under train/ (checkpoints, metrics.json, train_ids.parquet) is byte for byte the same
as the first setting's.

    PYTHONPATH=$PWD .venv/bin/python bench/retrain_processes.py --work /tmp/rp RUN_DIR [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRAIN = """
import json, sys, time
from soxai.config import load_config
from soxai.run_dir import RunDir
from soxai.train.runner import run_train
run = RunDir(sys.argv[1])
cfg = load_config(run.config, ["retrain.processes=" + sys.argv[2]])
t0 = time.perf_counter()
record = run_train(cfg, run)
print(json.dumps({"seconds": time.perf_counter() - t0, **record.metrics}))
"""


def timed(source: Path, target: Path, processes: str) -> dict:
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("train", "compare", "report"))
    env = {**os.environ, "SOXAI_PROGRESS": "0", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", TRAIN, str(target), processes], env=env, capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def same_files(a: Path, b: Path) -> tuple[int, list[str]]:
    names = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.name != "stage.json")
    return len(names), [str(n) for n in names if (a / n).read_bytes() != (b / n).read_bytes()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run directory explained through the manifest stage")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--settings", default="1,auto", help="retrain.processes values, comma-separated")
    args = parser.parse_args()
    settings = args.settings.split(",")
    times: dict[str, list[float]] = {s: [] for s in settings}
    print(f"uptime: {os.getloadavg()}; cores: {len(os.sched_getaffinity(0))}")
    for r in range(args.rounds):
        for setting in settings:
            out = timed(args.run, args.work / f"{setting}-{r}", setting)
            times[setting].append(out["seconds"])
            n, differ = same_files(args.work / f"{settings[0]}-{r}" / "train", args.work / f"{setting}-{r}" / "train")
            print(f"round {r} processes={setting}: {out['seconds']:.1f} s, {out['processes']} process(es), "
                  f"{out['models_trained']} trained; {n - len(differ)} of {n} files as processes={settings[0]}"
                  + (f" (differ: {', '.join(differ[:5])})" if differ else ""), flush=True)
    mean = {s: sum(v) / len(v) for s, v in times.items()}
    for setting in settings[1:]:
        print(f"mean processes={settings[0]} / processes={setting}: {mean[settings[0]] / mean[setting]:.2f}x "
              f"({mean[settings[0]]:.1f} s / {mean[setting]:.1f} s)")


if __name__ == "__main__":
    main()
