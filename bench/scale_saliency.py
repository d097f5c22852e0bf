"""The saliency stage at scale: one process against a 2-worker Dask LocalCluster, on N synthetic cell images.

Not a test. What it does, in one run:

1. A small baseline: the data and model stages of the smoke config in a scratch run directory.
2. N cell images (``soxai.data.cells.make_cells``, clean, 32x32 grayscale, 3 classes) generated in chunks of
   ``--chunk`` straight into a memory-mapped ``data/images.npy`` (``numpy.lib.format.open_memmap``), so the set
   is never in memory at once; ``samples.parquet`` and ``info.json`` beside it; the baseline's ``model/`` copied
   in. The data stage itself is not used: for the built-in generators it builds the whole set in memory
   (``Dataset.images`` is one array, 3.1 GB at 1M 28x28 float32 images; a user's manifest is decoded and written a
   block at a time since 2026-12-06, bench/manifest_memory.py). Two run directories share the images by hard link.
3. ``single``: ``run_saliency`` in a fresh subprocess (torch's default thread count).
4. ``dask``: in a fresh subprocess, a ``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)`` whose
   workers start as ``--dask`` starts them (soxai.scaleout.keep_malloc_defaults, since 2026-12-06 17:10 UTC);
   ``prepare_saliency``, one ``run_saliency_shard`` task per shard (what the flow's fan-out submits), then
   ``run_saliency`` in the driver, which finds the shards made and writes the index (timed apart as "index
   pass": until 2026-12-06 it predicted every shard again there; since then it reads the predictions each shard
   task wrote beside its shard).
5. Shards and ``index.parquet`` compared byte for byte between the two.

Memory per process: VmHWM (the kernel's peak of all resident pages) and RssAnon's peak, sampled every 20 ms by
a thread in the driver and in each worker (anonymous pages: heap, torch's buffers). The images are
memory-mapped: pages read from the file count in VmHWM as RssFile, and the kernel can drop them.

    flock /tmp/soxai-bench.lock .venv/bin/python bench/scale_saliency.py --n 100000 [--write]

At ~340 img/s (one forward + backward of the small CNN on 2 cores), 100k images take ~5 min per executor.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "BENCHMARKS.md"
SECTION = "## Saliency at scale on Dask (bench/scale_saliency.py)"
BASE_OVERRIDES = ["saliency.device=cpu", "train.device=cpu"]
SAMPLE_EVERY_S = 0.02


# ---------------------------------------------------------------------------------------------- memory


def proc_status(pid: str = "self") -> dict[str, int]:
    """The memory lines of /proc/<pid>/status, in kB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0])
    return out


class AnonPeak(threading.Thread):
    """The peak of RssAnon, sampled every SAMPLE_EVERY_S (the kernel keeps a peak of all RSS only)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_kb = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.peak_kb = max(self.peak_kb, proc_status()["RssAnon"])
            time.sleep(SAMPLE_EVERY_S)

    def stop(self) -> int:
        self._done.set()
        self.join()
        return max(self.peak_kb, proc_status()["RssAnon"])


def _worker_start_sampler() -> int:
    """Runs on each Dask worker (``client.run``): start an RssAnon sampler kept on the sys module."""
    sampler = AnonPeak()
    sampler.start()
    sys.soxai_bench_sampler = sampler  # type: ignore[attr-defined]
    return os.getpid()


def _worker_memory() -> dict:
    """Runs on each Dask worker: its peak RssAnon, its /proc status, its nanny's, its torch thread count."""
    import torch

    return {"anon_peak_kb": sys.soxai_bench_sampler.stop(), "status": proc_status(),  # type: ignore[attr-defined]
            "nanny": proc_status(str(os.getppid())), "torch_threads": torch.get_num_threads()}


# ---------------------------------------------------------------------------------------------- data


def make_base(root: Path):
    """The smoke config's data and baseline model in ``root/base``; returns (cfg, run)."""
    from soxai.config import load_config
    from soxai.data.runner import run_data
    from soxai.runs import init_run, resolve_paths
    from soxai.testing.smoke import smoke_config_path
    from soxai.train.runner import run_model

    cfg = resolve_paths(load_config(smoke_config_path(), BASE_OVERRIDES))
    run = init_run(cfg, root / "base")
    run_data(cfg, run)
    run_model(cfg, run)
    return cfg, run


def write_images(cfg, run, n: int, chunk: int, seed: int = 0) -> float:
    """``n`` clean cell images written chunk by chunk into ``run``'s data folder; returns the seconds taken."""
    import numpy as np
    import pandas as pd

    from soxai.data.cells import make_cells
    from soxai.run_dir import write_json, write_parquet

    start = time.perf_counter()
    dcfg = cfg.data
    shape = (n, 1, dcfg.image_size, dcfg.image_size)
    run.images.parent.mkdir(parents=True, exist_ok=True)
    tmp = run.images.with_name("images.tmp.npy")
    images = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
    labels = np.empty(n, dtype=np.int64)
    for i, lo in enumerate(range(0, n, chunk)):
        hi = min(n, lo + chunk)
        per_class = -(-(hi - lo) // dcfg.n_classes)
        x, y, _ = make_cells(per_class, dcfg.n_classes, dcfg.image_size, dcfg.noise, np.random.default_rng([seed, i]))
        # make_cells orders by class; a seeded shuffle mixes them, as a real set would be
        order = np.random.default_rng([seed, i, 1]).permutation(len(y))[: hi - lo]
        images[lo:hi], labels[lo:hi] = x[order], y[order]
        del x
    images.flush()
    del images
    os.replace(tmp, run.images)
    samples = pd.DataFrame({"sample_id": [f"scale-{i:07d}" for i in range(n)], "split": "train", "label": labels,
                            "source": "cells", "row": np.arange(n, dtype=np.int64), "group": "clean"})
    write_parquet(run.samples, samples)
    write_json(run.data_info, {"source": "cells", "class_names": [str(c) for c in range(dcfg.n_classes)],
                               "n_classes": dcfg.n_classes, "image_shape": list(shape[1:]), "has_masks": False,
                               "split_counts": {"train": n}})
    return time.perf_counter() - start


def make_runs(root: Path, n: int, chunk: int, shard_size: int) -> tuple[dict, float]:
    """Two run directories (single, dask) with the same n images (hard links) and the base model."""
    from soxai.runs import init_run

    base_cfg, base = make_base(root)
    cfg = base_cfg.model_copy(update={"saliency": base_cfg.saliency.model_copy(update={"shard_size": shard_size})})
    runs = {}
    for name in ("single", "dask"):
        run = init_run(cfg, root / name)
        shutil.copytree(base.root / "model", run.root / "model")
        shutil.copy2(base.stage_json("model"), run.stage_json("model"))
        runs[name] = run
    seconds = write_images(cfg, runs["single"], n, chunk)
    (runs["dask"].root / "data").mkdir(exist_ok=True)
    for path in (runs["single"].root / "data").iterdir():
        os.link(path, runs["dask"].root / "data" / path.name)
    return {name: str(run.root) for name, run in runs.items()}, seconds


# ---------------------------------------------------------------------------------------------- the two executors


def child_single(run_dir: str) -> dict:
    import torch

    from soxai.config import load_run_config
    from soxai.run_dir import RunDir
    from soxai.saliency.runner import run_saliency

    run = RunDir(run_dir)
    cfg = load_run_config(run)
    before = proc_status()
    sampler = AnonPeak()
    sampler.start()
    start = time.perf_counter()
    record = run_saliency(cfg, run)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "n_maps": record.metrics["n_maps"], "reused": record.reused,
            "anon_peak_kb": sampler.stop(), "before": before, "after": proc_status(),
            "torch_threads": torch.get_num_threads()}


def child_dask(run_dir: str, workers: int) -> dict:
    from distributed import Client, LocalCluster

    from soxai.config import load_run_config
    from soxai.run_dir import RunDir
    from soxai.saliency.runner import prepare_saliency, run_saliency, run_saliency_shard

    run = RunDir(run_dir)
    cfg = load_run_config(run)
    before = proc_status()
    from soxai.scaleout import keep_malloc_defaults

    keep_malloc_defaults()  # the workers as --dask starts them
    sampler = AnonPeak()
    sampler.start()
    t0 = time.perf_counter()
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        t_cluster = time.perf_counter() - t0
        client.run(_worker_start_sampler)
        t1 = time.perf_counter()
        n_shards = prepare_saliency(cfg, run)
        futures = [client.submit(run_saliency_shard, cfg, run, s, pure=False) for s in range(n_shards)]
        client.gather(futures)
        fan_out = time.perf_counter() - t1
        per_worker = client.run(_worker_memory)
    t2 = time.perf_counter()
    record = run_saliency(cfg, run)
    index_pass = time.perf_counter() - t2
    return {"cluster_start_s": t_cluster, "fan_out_s": fan_out, "index_pass_s": index_pass,
            "seconds": fan_out + index_pass, "n_shards": n_shards, "n_maps": record.metrics["n_maps"],
            "anon_peak_kb": sampler.stop(), "before": before, "after": proc_status(),
            "workers": list(per_worker.values())}


def in_child(*args: str) -> dict:
    env = {**os.environ, "SOXAI_PROGRESS": "0"}
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"{args[0]} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def identical(a: Path, b: Path) -> dict:
    files = sorted(p.name for p in (a / "saliency").glob("shard-*.npy")) + ["index.parquet"]
    differ = [f for f in files if (a / "saliency" / f).read_bytes() != (b / "saliency" / f).read_bytes()]
    return {"compared": len(files), "differ": differ}


# ---------------------------------------------------------------------------------------------- report


def machine() -> dict[str, str]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "unknown")
    mem = next(line.split(":", 1)[1].strip() for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal"))
    return {"nproc": str(os.cpu_count()), "cpu": model, "memory": mem}


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def mib(kb: int) -> str:
    return f"{kb / 1024:.0f} MiB"


def section(res: dict) -> str:
    s, d, m = res["single"], res["dask"], res["machine"]
    n = res["n"]
    lines = [
        SECTION, "",
        f"{res['date']}, {m['nproc']} cores ({m['cpu']}), {m['memory']} RAM; load before / after: "
        f"{res['load_before']} / {res['load_after']}. `flock /tmp/soxai-bench.lock .venv/bin/python "
        f"bench/scale_saliency.py --n {n}`. {n:,} clean 32x32 cell images written in chunks of {res['chunk']:,} "
        f"into a memory-mapped images.npy ({res['data_s']:.0f} s, {n * 32 * 32 * 4 / 2**20:.0f} MiB on disk), "
        f"the smoke config's small CNN (8 epochs on 450 images), saliency.method={res['method']}, batch "
        f"{res['batch_size']}, shards of {res['shard_size']}.", "",
        "| executor | wall s | images/s | peak RssAnon per process | VmHWM per process (incl. mapped images) |",
        "|---|---:|---:|---|---|",
        f"| one process (torch {s['torch_threads']} threads) | {s['seconds']:.1f} | {n / s['seconds']:.0f} | "
        f"{mib(s['anon_peak_kb'])} | {mib(s['after']['VmHWM'])} |",
        f"| LocalCluster, {len(d['workers'])} workers x 1 thread: shards | {d['fan_out_s']:.1f} | "
        f"{n / d['fan_out_s']:.0f} | workers " + ", ".join(mib(w["anon_peak_kb"]) for w in d["workers"]) +
        " | workers " + ", ".join(mib(w["status"]["VmHWM"]) for w in d["workers"]) + "; nannies " +
        ", ".join(mib(w["nanny"]["VmHWM"]) for w in d["workers"]) + " |",
        f"| ... then the index pass in the driver | {d['index_pass_s']:.1f} | – | driver {mib(d['anon_peak_kb'])} | "
        f"driver {mib(d['after']['VmHWM'])} |",
        f"| LocalCluster, total | {d['seconds']:.1f} | {n / d['seconds']:.0f} | | |", "",
        f"- Speed-up of the cluster over one process: {s['seconds'] / d['seconds']:.2f}x in all, "
        f"{s['seconds'] / d['fan_out_s']:.2f}x on the maps alone (cluster start {d['cluster_start_s']:.1f} s "
        "not counted).",
        f"- Shards and index.parquet byte-identical between the two: {res['identical']['compared']} files compared, "
        f"{len(res['identical']['differ'])} differ" + (f" ({res['identical']['differ'][:5]})"
                                                        if res["identical"]["differ"] else "") + ".",
    ]
    return "\n".join(lines) + "\n"


def write_section(text: str) -> None:
    doc = DOC.read_text()
    if SECTION in doc:
        head, _, rest = doc.partition(SECTION)
        tail = rest[rest.find("\n## ") + 1:] if "\n## " in rest else ""
        doc = head + text + ("\n" + tail if tail else "")
    else:
        doc = doc.rstrip("\n") + "\n\n" + text
    DOC.write_text(doc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="images")
    ap.add_argument("--chunk", type=int, default=10_000, help="images generated at a time")
    ap.add_argument("--shard-size", type=int, default=4096)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--root", type=Path, default=None, help="scratch folder (default: a new one under /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    ap.add_argument("--write", action="store_true", help="write the section of docs/BENCHMARKS.md")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, run_dir, *rest = args.child
        print(json.dumps(child_single(run_dir) if kind == "single" else child_dask(run_dir, int(rest[0]))))
        return

    import tempfile

    from soxai.config import load_run_config
    from soxai.run_dir import RunDir

    root = args.root or Path(tempfile.mkdtemp(prefix="soxai-scale-saliency-"))
    res = {"n": args.n, "chunk": args.chunk, "shard_size": args.shard_size, "machine": machine(),
           "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "load_before": loadavg()}
    try:
        dirs, res["data_s"] = make_runs(root, args.n, args.chunk, args.shard_size)
        scfg = load_run_config(RunDir(dirs["single"])).saliency
        res.update(method=scfg.method, batch_size=scfg.batch_size)
        print(f"data: {args.n} images in {res['data_s']:.1f} s (load {loadavg()})", flush=True)
        res["single"] = in_child("--child", "single", dirs["single"])
        print(f"single: {res['single']['seconds']:.1f} s (load {loadavg()}): {json.dumps(res['single'])}", flush=True)
        res["dask"] = in_child("--child", "dask", dirs["dask"], str(args.workers))
        print(f"dask: {res['dask']['seconds']:.1f} s (load {loadavg()})", flush=True)
        res["identical"] = identical(Path(dirs["single"]), Path(dirs["dask"]))
        res["load_after"] = loadavg()
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(res, indent=1))
    text = section(res)
    print(text)
    if args.write:
        write_section(text)


if __name__ == "__main__":
    main()
