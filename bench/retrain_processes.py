"""The train stage of a kept run in this process and in worker processes (``retrain.processes``), timed in one run.

Each setting runs ``run_train`` on its own copy of the kept run directory (its earlier stages reused; train/ and what
follows removed) in a fresh subprocess, with torch's default thread count (what ``soxai run`` does). The settings
alternate over ``--rounds``, so a change in the machine's speed hits both. It prints each time, the ratio of the
means, and whether every file under train/ (checkpoints, metrics.json, train_ids.parquet) is byte for byte the same
as the first setting's.

    flock /tmp/soxai-bench.lock .venv/bin/python bench/retrain_processes.py --work /tmp/rp RUN_DIR [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from retrain_scale import SINGLE, _in_subprocess  # run_train in a fresh subprocess, torch's default thread count


def timed(source: Path, target: Path, processes: str) -> dict:
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("train", "compare", "report"))
    return _in_subprocess(SINGLE, str(target), "0", f"retrain.processes={processes}")


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
            print(f"round {r} processes={setting}: {out['seconds']:.1f} s, {out['metrics']['processes']} "
                  f"process(es), {out['metrics']['models_trained']} trained; {n - len(differ)} of {n} files as "
                  f"processes={settings[0]}" + (f" (differ: {', '.join(differ[:5])})" if differ else ""), flush=True)
    mean = {s: sum(v) / len(v) for s, v in times.items()}
    for setting in settings[1:]:
        print(f"mean processes={settings[0]} / processes={setting}: {mean[settings[0]] / mean[setting]:.2f}x "
              f"({mean[settings[0]]:.1f} s / {mean[setting]:.1f} s)")


if __name__ == "__main__":
    main()
