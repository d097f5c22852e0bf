"""Peers on the same saliency maps: SpRAy via CoRelAy against soxai's embed + cluster.

Takes the training maps of the marked class (the demo's mark on 30% of it) from one cells run (made or
reused in --work, shared with bench/embed_scale.py), draws nested random subsets of 2k, 8k and 16k maps
and gives each tool the very same array, each in a fresh process:

- **CoRelAy** (SpRAy): its standard ``SpectralClustering`` pipeline as in its README — per-sample sum
  normalisation and flattening of the maps, euclidean pairwise distances (dense N x N), a symmetric
  10-NN affinity, the symmetric normalised Laplacian, 8 eigenvectors, k-means for k = 2..19. SpRAy leaves
  the choice of k to a person; the table reports the k whose best cluster matches the artifact group best
  (F1) and, apart, the best ARI over all k (oracle choices that favour CoRelAy); the time covers all k.
- **soxai**: the embed and concepts kernels with the default config (pooled |map| 8x8, l2, PCA 32,
  exact 15-NN search, UMAP 2-D, HDBSCAN with auto parameters) — no choice made with the labels.
- **soxai, empty numba cache**: the same as soxai, but with a new, empty numba cache, as the first run after
  installing soxai: UMAP's kernels are compiled (and cached) inside the timed call. The other soxai rows
  load the kernels from the cache that untimed warm-up runs filled, as every later run does.
- **soxai spectral**: the same with ``embed.method=spectral`` (SpRAy's embedding on a sparse k-NN graph).

Recovery: ARI of the clusters against artifact/clean, and precision / recall of the best-matching
cluster (bench/cells_run.recovery). Time: wall time of the computation in the child (imports and loading
the maps excluded). Memory: the child's peak RSS (VmHWM), polled by the parent every 0.2 s so that a child
that is killed still has one. CoRelAy runs under an address-space limit (--mem-limit-gib) and a time
limit; a run that hits either is a row of the table, not dropped.

    .venv/bin/python bench/peers.py [--work DIR] [--sizes 2000 8000 16000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from cells_run import cpu_s, emit, explained_run, parse_result, recovery, rss_mib, train_maps_and_groups
from load import cpu_model, write_section

TOOLS = ("corelay", "soxai_cold", "soxai", "soxai_spectral")
KS = range(2, 20)  # CoRelAy's README example clusters the eigenvectors with k-means for k in 2..19


def run_corelay(maps: np.ndarray) -> list[np.ndarray]:
    """CoRelAy's SpectralClustering pipeline (its README's set-up); one label array per k."""
    from corelay.pipeline.spectral import SpectralClustering
    from corelay.processor.base import Processor
    from corelay.processor.clustering import KMeans
    from corelay.processor.embedding import EigenDecomposition
    from corelay.processor.flow import Parallel, Sequential

    class Normalize(Processor):
        def function(self, data):
            return data / data.sum(axis=(1, 2), keepdims=True)

    class Flatten(Processor):
        def function(self, data):
            return data.reshape(data.shape[0], -1)

    np.random.seed(0)
    pipeline = SpectralClustering(
        embedding=EigenDecomposition(n_eigval=8),
        clustering=Parallel([KMeans(n_clusters=k, kwargs={"random_state": 0}) for k in KS], broadcast=True,
                            is_output=True),
    )
    pipeline.preprocessing = Sequential([Normalize(), Flatten()])
    out = pipeline(np.abs(maps).astype(np.float64))
    labels = out[-1] if isinstance(out, tuple) and len(out) and isinstance(out[-1], tuple) else out
    return [np.asarray(lab) for lab in labels]


def run_soxai(maps: np.ndarray, method: str) -> np.ndarray:
    """soxai's embed + concepts kernels with the default config (embed.method=method)."""
    from soxai.concepts.cluster import cluster_embeddings
    from soxai.config import Config
    from soxai.embed.features import embed_with_config, pooled_features

    cfg = Config()
    e, c = cfg.embed.model_copy(update={"method": method}), cfg.concepts
    _, emb = embed_with_config(pooled_features(maps, e.pool_size, e.normalize), e, cfg.seed)
    labels, _, _ = cluster_embeddings(emb, c.min_cluster_size, c.min_samples)
    return labels


def child(tool: str, maps_path: str, groups_path: str) -> None:
    maps = np.load(maps_path)
    is_artifact = np.load(groups_path)
    # imports are not the algorithms' time: load each tool's libraries before the clock starts
    if tool.startswith("soxai"):
        import hdbscan  # noqa: F401
        import sklearn.decomposition  # noqa: F401
        import sklearn.neighbors  # noqa: F401
        import torch  # noqa: F401
        import umap  # noqa: F401
    else:
        import corelay.pipeline.spectral  # noqa: F401
        import sklearn.cluster  # noqa: F401
    rss0 = rss_mib()
    c0, t0 = cpu_s(), time.perf_counter()
    if tool == "corelay":
        per_k = run_corelay(maps)
        seconds, cpu = time.perf_counter() - t0, cpu_s() - c0
        scored = [(recovery(lab, is_artifact), k) for lab, k in zip(per_k, KS, strict=True)]
        # the k whose best cluster matches the artifact group best (F1), and the best ARI over all k
        rec, k = max(scored, key=lambda s: (s[0]["f1"], s[0]["ari"]))
        best_ari, k_ari = max((s[0]["ari"], s[1]) for s in scored)
        rec = {**rec, "k": k, "n_clusters": k, "best_ari": best_ari, "k_best_ari": k_ari}
    else:
        labels = run_soxai(maps, "spectral" if tool == "soxai_spectral" else "umap")  # soxai_cold: umap
        seconds, cpu = time.perf_counter() - t0, cpu_s() - c0
        rec = {**recovery(labels, is_artifact), "n_clusters": int(len(set(labels.tolist()) - {-1}))}
    emit({"seconds": seconds, "cpu_s": cpu, "rss_before_mib": rss0, **rec})


def vm_hwm_mib(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(found.group(1)) / 1024 if found else None


def measure(tool: str, maps_path: Path, groups_path: Path, time_limit: float, mem_limit_gib: float | None) -> dict:
    # soxai_cold: a new, empty numba cache (the first run after an install); the others share one cache
    cache = tempfile.mkdtemp(prefix="soxai-numba-") if tool == "soxai_cold" else str(maps_path.parent / "numba-cache")
    env = {**os.environ, "SOXAI_PROGRESS": "0", "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
           "NUMBA_CACHE_DIR": cache}
    limit = None if mem_limit_gib is None else int(mem_limit_gib * 2**30)

    def cap():  # runs in the child before exec
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    cmd = [sys.executable, __file__, "--child", tool, str(maps_path), str(groups_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=cap)
    peak, t0, status = 0.0, time.perf_counter(), "ok"
    while proc.poll() is None:
        peak = max(peak, vm_hwm_mib(proc.pid) or 0.0)
        if time.perf_counter() - t0 > time_limit:
            proc.kill()
            status = f"time limit ({time_limit:.0f} s) reached"
            break
        time.sleep(0.2)
    out, err = proc.communicate()
    if tool == "soxai_cold":
        shutil.rmtree(cache, ignore_errors=True)
    result = parse_result(out) or {}
    if not result and status == "ok":
        status = "out of memory" if "MemoryError" in err or "Unable to allocate" in err else "failed"
        status += f" (rc {proc.returncode}): " + (err.strip().splitlines() or ["?"])[-1][:160]
    return {"tool": tool, "status": status, "peak_polled_mib": peak, "process_s": time.perf_counter() - t0,
            **result}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=None, help="folder of the cells run (kept; reused if present)")
    parser.add_argument("--n-run", type=int, default=100_000, help="training samples of the cells run")
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 8000, 16000])
    parser.add_argument("--time-limit", type=float, default=900.0, help="seconds per CoRelAy run")
    parser.add_argument("--mem-limit-gib", type=float, default=12.0, help="CoRelAy's address-space limit")
    parser.add_argument("--child", nargs=3, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    os.environ.setdefault("SOXAI_PROGRESS", "0")
    work = args.work or Path(tempfile.mkdtemp(prefix="soxai-peers-"))
    cfg, run = explained_run(args.n_run, work)
    _, labels, is_artifact, maps = train_maps_and_groups(run)
    marked = np.flatnonzero(labels == cfg.data.artifact.target_class)
    order = np.random.default_rng(0).permutation(marked)
    if max(args.sizes) > len(order):
        raise SystemExit(f"the marked class has {len(order)} maps; ask for --sizes up to that or a larger --n-run")
    # untimed soxai runs on 1,000 and 5,000 maps first fill the numba cache that every timed run then
    # loads (UMAP compiles its kernels on first use; soxai.embed.features.cache_umap_kernels caches the
    # ones umap-learn does not). 1,000 takes UMAP's small-data code path, 5,000 > 4,096 the large-data one.
    for size in (1000, 5000):
        warm = np.sort(order[:size])
        np.save(work / "peers-maps-warm.npy", maps[warm])
        np.save(work / "peers-groups-warm.npy", is_artifact[warm])
        print(f"warm-up {size}", measure("soxai", work / "peers-maps-warm.npy", work / "peers-groups-warm.npy", 1800,
                                         None), flush=True)
    rows = []
    for size in args.sizes:
        pick = np.sort(order[:size])  # nested subsets: the 2k maps are part of the 8k, of the 16k
        maps_path, groups_path = work / f"peers-maps-{size}.npy", work / f"peers-groups-{size}.npy"
        np.save(maps_path, maps[pick])
        np.save(groups_path, is_artifact[pick])
        for tool in TOOLS:
            load = os.getloadavg()[0]
            mem = args.mem_limit_gib if tool == "corelay" else None
            r = measure(tool, maps_path, groups_path, args.time_limit, mem)
            r.update(size=size, n_artifact=int(is_artifact[pick].sum()), load_before=load,
                     load_after=os.getloadavg()[0])
            rows.append(r)
            print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}, flush=True)
    print(write_section("Peers: SpRAy via CoRelAy vs soxai (bench/peers.py)", report(rows, args, cfg)))


def report(rows: list[dict], args, cfg) -> str:
    names = {"corelay": "CoRelAy SpRAy (best k)", "soxai": "soxai (UMAP + HDBSCAN)",
             "soxai_cold": "soxai (UMAP + HDBSCAN), empty numba cache",
             "soxai_spectral": "soxai spectral + HDBSCAN"}
    lines = [
        f"Measured {dt.date.today().isoformat()} on {cpu_model()}, {os.cpu_count()} cores, no GPU, by "
        f"`python bench/peers.py --sizes {' '.join(map(str, args.sizes))}`; corelay "
        f"{_version('corelay')}, umap-learn {_version('umap-learn')}, hdbscan {_version('hdbscan')}. The machine "
        "was shared with other work (1-minute load average before / after each row), so compare the tools as "
        "ratios within one size. Input: input x gradient maps (32x32) of the marked class of one cells run "
        f"({args.n_run:,} training samples, 1 epoch), nested random subsets; the artifact group is "
        f"{cfg.data.artifact.rate:.0%} of the class. CoRelAy: limit {args.mem_limit_gib:g} GiB of address "
        f"space and {args.time_limit:.0f} s.",
        "",
        "| maps | tool | status | seconds | CPU s | peak RSS MiB (before) | clusters | ARI | best cluster P / R "
        "| CoRelAy: best ARI over k | load |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        ok = r["status"] == "ok"
        secs = f"{r['seconds']:.1f} | {r['cpu_s']:.1f}" if ok else f"> {r['process_s']:.0f} (process) | –"
        mem = f"{r['peak_polled_mib']:.0f} ({r['rss_before_mib']:.0f})" if ok else f"{r['peak_polled_mib']:.0f}"
        rec = (f"{r['n_clusters']} | {r['ari']:.3f} | {r['precision']:.3f} / {r['recall']:.3f}" if ok
               else "– | – | –")
        rec += f" | {r['best_ari']:.3f} (k={r['k_best_ari']})" if ok and "best_ari" in r else " | –"
        lines.append(f"| {r['size']:,} | {names[r['tool']]} | {r['status']} | {secs} | {mem} | {rec} | "
                     f"{r['load_before']:.1f} / {r['load_after']:.1f} |")
    lines.append("")
    for size in args.sizes:
        by = {r["tool"]: r for r in rows if r["size"] == size}
        s, c = by["soxai"], by["corelay"]
        if s["status"] != "ok":
            lines.append(f"- {size:,}: soxai failed ({s['status']}).")
            continue
        if c["status"] != "ok":
            lines.append(f"- {size:,}: CoRelAy did not finish ({c['status']}, after {c['process_s']:.0f} s); "
                         f"soxai took {s['seconds']:.1f} s with ARI {s['ari']:.3f}, so it is at least "
                         f"{c['process_s'] / s['seconds']:.1f}x as fast; recovery cannot be compared.")
            continue
        ratio, cpu_ratio = c["seconds"] / s["seconds"], c["cpu_s"] / s["cpu_s"]
        better = s["ari"] >= c["best_ari"] and s["f1"] >= c["f1"]
        verdict = "met" if ratio >= 10 and better else "NOT met"
        lines.append(
            f"- {size:,}: soxai is **{ratio:.1f}x** as fast as CoRelAy (wall-time ratio CoRelAy / soxai; CPU-time "
            f"ratio {cpu_ratio:.1f}x), peak memory "
            f"ratio {c['peak_polled_mib'] / s['peak_polled_mib']:.1f}x; ARI soxai {s['ari']:.3f} vs CoRelAy's best "
            f"{c['best_ari']:.3f}; best-cluster F1 soxai {s['f1']:.3f} vs CoRelAy's best {c['f1']:.3f} (k={c['k']})"
            + (f" — target (>= 10x faster, at least its recovery): **{verdict}**"
                                                  if size == max(args.sizes) else "") + "."
        )
        cold = by.get("soxai_cold")
        if cold and cold["status"] == "ok":
            lines.append(
                f"  First run after an install (empty numba cache, UMAP's kernels compiled in the call): "
                f"{c['seconds'] / cold['seconds']:.1f}x by wall time ({c['cpu_s'] / cold['cpu_s']:.1f}x by CPU time), "
                f"ARI {cold['ari']:.3f}, best-cluster F1 {cold['f1']:.3f}."
            )
        sp = by.get("soxai_spectral")
        if sp and sp["status"] == "ok":
            sp_ratio = c["seconds"] / sp["seconds"]
            sp_verdict = "met" if sp_ratio >= 10 and sp["ari"] >= c["best_ari"] and sp["f1"] >= c["f1"] else "NOT met"
            lines.append(
                f"  With embed.method=spectral: {sp_ratio:.1f}x by wall time "
                f"({c['cpu_s'] / sp['cpu_s']:.1f}x by CPU time), ARI {sp['ari']:.3f}, best-cluster F1 {sp['f1']:.3f}"
                + (f" — target: **{sp_verdict}**" if size == max(args.sizes) else "") + "."
            )
    return "\n".join(lines)


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    main()
