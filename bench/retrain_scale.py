"""The retrain stage in one process against a 2-worker Dask LocalCluster (one task per variant x seed).

Not a test. What it does, in one run:

1. A small run through the pruned manifest (the smoke config, ``--n-per-class`` training images per class,
   ``--epochs``; variants baseline, pruned and random_control over seeds 1 and 2: six models, none of them the
   run's own baseline, which the stage would reuse) in a scratch folder, untimed.
2. ``single``: ``run_train`` on a copy, in a fresh subprocess, with torch's default intra-op thread count (both
   cores: what ``soxai run`` does) and, with ``--one-thread``, again with ``torch.set_num_threads(1)``.
3. ``dask``: in a fresh subprocess, a ``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)`` (Dask's
   nanny gives each worker OMP_NUM_THREADS=1: one torch thread); the workers import soxai's training code first
   (as after the saliency stage, which ran on them), then ``run_train`` runs as a task on a worker, as the flow
   submits it, and hands each model to the cluster (``soxai.parallel.parallel_map``). The cluster's start and the
   workers' imports are timed apart from the stage. Run twice: with soxai's worker environment
   (``soxai.scaleout.keep_malloc_defaults``, as ``runner.local_workers`` starts it) and with Dask's own, whose
   ``MALLOC_TRIM_THRESHOLD_`` made every model 2-3x slower on a worker.
4. Every model's ``metrics.json`` (and ``train_ids.parquet``) compared between the runs: identical where torch
   ran on the same number of threads (float sums over 2 threads round otherwise than over 1).

    flock /tmp/soxai-bench.lock .venv/bin/python bench/retrain_scale.py [--n-per-class 400] [--epochs 6] \\
        [--one-thread]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("baseline", "pruned", "random_control")
SEEDS = (1, 2)

SINGLE = """
import json, sys, time
import torch
threads = int(sys.argv[2])
if threads:
    torch.set_num_threads(threads)
from soxai.config import load_config
from soxai.run_dir import RunDir
from soxai.train.runner import run_train
run = RunDir(sys.argv[1])
cfg = load_config(run.config, sys.argv[3:])  # overrides (bench/retrain_processes.py: retrain.processes)
t0 = time.perf_counter()
record = run_train(cfg, run)
print(json.dumps({"seconds": time.perf_counter() - t0, "torch_threads": torch.get_num_threads(),
                  "metrics": record.metrics}))
"""

ON_DASK = """
import json, sys, time
t0 = time.perf_counter()
from distributed import Client, LocalCluster
from soxai.config import load_config
from soxai.run_dir import RunDir
from soxai.train.runner import run_train


def warm():
    import torch
    import soxai.train.runner  # noqa: F401
    return torch.get_num_threads()


def stage(cfg, root):
    return run_train(cfg, RunDir(root)).metrics


if __name__ == "__main__":
    run = RunDir(sys.argv[1])
    cfg = load_config(run.config)
    if sys.argv[2] == "keep":  # what soxai's runner does (soxai.scaleout.keep_malloc_defaults); "dask": Dask's own
        from soxai.scaleout import keep_malloc_defaults
        keep_malloc_defaults()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \\
            Client(cluster) as client:
        started = time.perf_counter() - t0
        threads = client.run(warm)
        warmed = time.perf_counter() - t0 - started
        t1 = time.perf_counter()
        metrics = client.submit(stage, cfg, str(run.root), pure=False).result()
        seconds = time.perf_counter() - t1
    print(json.dumps({"seconds": seconds, "cluster_start_s": started, "warm_s": warmed,
                      "torch_threads": sorted(threads.values()), "metrics": metrics}))
"""


def _prepare(root: Path, n_per_class: int, epochs: int) -> None:
    """The smoke config's run through the pruned manifest, in this process."""
    from flows.pipeline import EXPLAIN_STAGES, RUNNERS
    from soxai.config import load_config
    from soxai.runs import init_run

    cfg = load_config(REPO / "configs" / "smoke.yaml", [
        f"data.n_train_per_class={n_per_class}", f"train.epochs={epochs}", "train.device=cpu", "saliency.device=cpu",
        "train.allow_chance_baseline=true",  # timed, not judged: a short recipe may sit near chance
        f"retrain.variants=[{', '.join(VARIANTS)}]", f"retrain.seeds=[{', '.join(map(str, SEEDS))}]"])
    run = init_run(cfg, root)
    for stage in EXPLAIN_STAGES:
        RUNNERS[stage](cfg, run)


def _in_subprocess(code: str, *args: str) -> dict:
    env = {**os.environ, "SOXAI_PROGRESS": "0"}
    env.pop("OMP_NUM_THREADS", None)  # torch's own default in the single process; the nanny sets the workers'
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, *args], env=env, check=True, capture_output=True, text=True,
                         cwd=REPO)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = time.perf_counter() - t0
    return result


def _models(root: Path) -> dict[str, str]:
    from soxai.run_dir import RunDir

    run = RunDir(root)
    return {f"{v}/seed{s}": run.variant_metrics(v, s).read_text() + run.variant_manifest(v, s).read_bytes().hex()
            for v in VARIANTS for s in SEEDS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-per-class", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--one-thread", action="store_true", help="also the single process with one torch thread")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="soxai-retrain-scale-"))
    base = work / "base"
    t0 = time.perf_counter()
    _prepare(base, args.n_per_class, args.epochs)
    prepare_s = time.perf_counter() - t0
    settings = [("single", SINGLE, "0")] + ([("single_1_thread", SINGLE, "1")] if args.one_thread else [])
    results: dict[str, dict] = {}
    dask = [("dask_2_workers", ON_DASK, "keep"), ("dask_2_workers_dask_malloc", ON_DASK, "dask")]
    for name, code, *extra in settings + dask:
        root = work / name
        shutil.copytree(base, root)
        results[name] = _in_subprocess(code, str(root), *extra)
        results[name]["same_models_as"] = [other for other in results if other != name
                                           and _models(root) == _models(work / other)]
        print(name, json.dumps(results[name]), flush=True)
    single, dask = results["single"]["seconds"], results["dask_2_workers"]["seconds"]
    print(json.dumps({
        "n_models": len(VARIANTS) * len(SEEDS), "n_per_class": args.n_per_class, "epochs": args.epochs,
        "prepare_s": round(prepare_s, 1), "speedup_single_over_dask": round(single / dask, 2),
        "speedup_single_over_dask_malloc": round(single / results["dask_2_workers_dask_malloc"]["seconds"], 2),
        **({"speedup_one_thread_over_dask": round(results["single_1_thread"]["seconds"] / dask, 2)}
           if args.one_thread else {}),
        "load": os.getloadavg(), "nproc": os.cpu_count(), "cpu": _cpu_model(), "python": platform.python_version(),
        "work": str(work),
    }, indent=1))


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


if __name__ == "__main__":
    main()
