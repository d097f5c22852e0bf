"""Embed + concepts kernels at 100k, 1M and 10M explanation vectors: fit on a sample, assign the rest.

Synthetic pooled explanation vectors (64-D = 8 x 8 pooled |map|, l2-scaled; 10 classes, three strategies per class,
a planted group of 2% of all samples inside class 0 that looks at a corner) are generated on disk block by block
(never all in memory), then embedded and clustered by soxai's kernels with the sample fit
(soxai.embed.sample.fit_on_sample, soxai.concepts.scale.fit_and_assign), each measurement in a fresh process:
in one process, and as one task on a 2-worker ``distributed.LocalCluster`` (processes, one thread each; the
blocks and classes become tasks of their own through soxai.parallel.parallel_map). Where asked, the full fit
(embed_with_config + cluster_per_group on every vector, the path below ``embed.fit_sample``) runs for comparison.

Per row: wall time of embed and concepts, peak RSS of every process (workers included), the planted group's
recovery (precision / recall of the best concept of class 0), agreement with the full fit (ARI; share of samples
whose concept matches under the best one-to-one matching of concepts, noise a concept of its own), and whether the
concepts equal the one-process run's. Writes a section of docs/BENCHMARKS.md.

    flock /tmp/soxai-bench.lock .venv/bin/python bench/scale.py --n 100000 --fit-sample 20000 --full --cluster
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DIM_SIDE = 8
N_CLASSES = 10
PLANTED_SHARE = 0.02  # of all samples, all in class 0
BLOCK = 262_144


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _blob(cy: float, cx: float, width: float) -> np.ndarray:
    yy, xx = np.mgrid[0:DIM_SIDE, 0:DIM_SIDE]
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * width**2)).ravel()


def prototypes(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(strategies of shape (classes, 3, 64), the planted corner pattern (64,)): each strategy a blob at its own
    place, the planted one the class's first strategy plus a strong blob in the top-left corner."""
    rng = np.random.default_rng(seed)
    protos = np.empty((N_CLASSES, 3, DIM_SIDE * DIM_SIDE))
    for c in range(N_CLASSES):
        for s in range(3):
            cy, cx = rng.uniform(2, DIM_SIDE - 2, size=2)
            protos[c, s] = _blob(cy, cx, rng.uniform(1.0, 1.8))
    return protos, protos[0, 0] + 1.5 * _blob(0, 0, 0.8)


def vector_block(n: int, seed: int, block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Block ``block`` of the synthetic set: (float32 vectors (n, 64), int64 classes, bool planted)."""
    protos, planted_proto = prototypes(seed)
    rng = np.random.default_rng([seed, block])
    labels = rng.integers(0, N_CLASSES, size=n)
    planted = (labels == 0) & (rng.random(n) < PLANTED_SHARE * N_CLASSES)
    strategy = rng.integers(0, 3, size=n)
    base = protos[labels, strategy]
    base[planted] = planted_proto
    x = np.abs(base * rng.uniform(0.5, 1.5, size=(n, 1)) + rng.normal(0, 0.08, size=base.shape))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), labels.astype(np.int64), planted


def generate(n: int, folder: Path, seed: int = 0) -> Path:
    """features.npy, labels.npy, planted.npy of ``n`` synthetic vectors in ``folder`` (reused when present)."""
    from soxai.run_dir import write_npy, write_npy_chunks

    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "planted.npy").is_file():
        return folder
    labels, planted = [], []

    def blocks():
        for b, lo in enumerate(range(0, n, BLOCK)):
            x, lab, pl = vector_block(min(BLOCK, n - lo), seed, b)
            labels.append(lab.astype(np.int8))
            planted.append(pl)
            yield x

    write_npy_chunks(folder / "features.npy", n, blocks())
    write_npy(folder / "labels.npy", np.concatenate(labels))
    write_npy(folder / "planted.npy", np.concatenate(planted))
    return folder


def kernels(folder: str, fit_sample: int, seed: int, out: str) -> dict:
    """Embed + concepts of the vectors in ``folder`` (fit on a sample when fit_sample < n, else fit on all);
    writes the concept ids to ``out`` and returns the timings and this process's peak RSS."""
    from soxai.concepts.cluster import cluster_per_group
    from soxai.concepts.scale import fit_and_assign
    from soxai.embed.config import EmbedConfig
    from soxai.embed.features import embed_with_config
    from soxai.embed.sample import fit_on_sample, wants_sample_fit
    from soxai.run_dir import read_npy

    folder_p = Path(folder)
    features = folder_p / "features.npy"
    labels = np.load(folder_p / "labels.npy").astype(np.int64)
    ecfg = EmbedConfig(features="pooled", fit_sample=fit_sample)
    t0 = time.perf_counter()
    if wants_sample_fit(len(labels), fit_sample):
        emb, fitted = fit_on_sample(features, labels, ecfg, seed)
        t1 = time.perf_counter()
        cids, _, _, _ = fit_and_assign(emb, labels, fitted, features, np.arange(len(labels)), "auto", "auto", True,
                                       ecfg.pca_components)
    else:
        _, emb = embed_with_config(read_npy(features, mmap=False), ecfg, seed)
        t1 = time.perf_counter()
        cids, _, _ = cluster_per_group(emb, labels, "auto", "auto")
    t2 = time.perf_counter()
    np.save(out, cids)
    return {"embed_s": t1 - t0, "concepts_s": t2 - t1, "rss_mib": peak_rss_mib()}


def worker_rss() -> float:
    return peak_rss_mib()


def child(mode: str, folder: str, fit_sample: int, out: str) -> None:
    if mode == "cluster":
        from distributed import Client, LocalCluster

        from soxai.scaleout import keep_malloc_defaults

        keep_malloc_defaults()  # the workers as --dask starts them
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
                Client(cluster) as client:
            t0 = time.perf_counter()
            result = client.submit(kernels, folder, fit_sample, 0, out, pure=False).result()
            result["task_s"] = time.perf_counter() - t0
            result["worker_rss_mib"] = sorted(client.run(worker_rss).values())
    else:
        result = kernels(folder, fit_sample, 0, out)
    result["main_rss_mib"] = peak_rss_mib()
    print("RESULT " + json.dumps(result), flush=True)


def measure(mode: str, folder: Path, fit_sample: int) -> dict:
    out = folder / f"concepts-{mode}-{fit_sample}.npy"
    env = {**os.environ, "SOXAI_PROGRESS": "0", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", mode, str(folder), str(fit_sample), str(out)],
                          capture_output=True, text=True, env=env)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"{mode} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(line[len("RESULT "):])
    result.update(process_s=time.perf_counter() - t0, out=str(out), mode=mode, fit_sample=fit_sample)
    return result


def matched_share(a: np.ndarray, b: np.ndarray) -> float:
    """Share of samples whose concept in ``a`` is the partner of their concept in ``b`` under the one-to-one
    matching of concepts that maximises that share (noise -1 is a concept like the others)."""
    from scipy.optimize import linear_sum_assignment

    ua, ia = np.unique(a, return_inverse=True)
    ub, ib = np.unique(b, return_inverse=True)
    table = np.zeros((len(ua), len(ub)), dtype=np.int64)
    np.add.at(table, (ia, ib), 1)
    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum() / len(a))


def recovery(cids: np.ndarray, labels: np.ndarray, planted: np.ndarray) -> dict:
    """Precision and recall of the concept of class 0 that best matches the planted group (highest F1)."""
    marked = labels == 0
    best = {"precision": 0.0, "recall": 0.0}
    f_best = 0.0
    for c in np.unique(cids[marked]):
        if c < 0:
            continue
        m = (cids == c) & marked
        tp = int((m & planted).sum())
        p, r = tp / m.sum(), tp / max(int(planted.sum()), 1)
        f = 2 * p * r / (p + r) if p + r else 0.0
        if f > f_best:
            f_best, best = f, {"precision": p, "recall": r}
    return best


def report(work: Path) -> str:
    """The growth table from ``work/results.jsonl`` (the latest row per size and executor) and the concept ids each
    run left; agreement with the full fit wherever one ran."""
    from sklearn.metrics import adjusted_rand_score

    latest: dict[tuple[int, str], dict] = {}
    for line in (work / "results.jsonl").read_text().splitlines():
        rec = json.loads(line)
        for r in rec["runs"]:
            latest[(rec["n"], r["label"])] = {**r, "date": rec["date"]}
    rows = []
    order = {"full": 0, "one": 1, "cluster": 2}
    for (n, label), r in sorted(latest.items(), key=lambda kv: (kv[0][0], order[kv[0][1]])):
        folder = work / f"n{n}"
        cids = np.load(r["out"])
        full, one = folder / "concepts-one-0.npy", folder / f"concepts-one-{r['fit_sample']}.npy"
        agree = "–"
        if label != "full" and full.is_file():
            ref = np.load(full)
            agree = f"{adjusted_rand_score(ref, cids):.3f} / {matched_share(ref, cids):.3f}"
        same = "–"
        if label == "cluster" and one.is_file():
            same = "yes" if np.array_equal(np.load(one), cids) else "**no**"
        rss = r.get("worker_rss_mib", []) + [r["main_rss_mib"]]
        where = {"full": "full fit, 1 process", "one": "1 process", "cluster": "2-worker LocalCluster"}[label]
        times = "untimed | untimed | untimed" if r.get("untimed") else \
            f"{r['embed_s']:.0f} | {r['concepts_s']:.0f} | **{r['embed_s'] + r['concepts_s']:.0f}**"
        rows.append(
            f"| {n:,} | {'all' if label == 'full' else format(r['fit_sample'], ',')} | {where} | {times} | "
            f"{' / '.join(f'{x / 1024:.2f}' for x in rss)} | {r['n_concepts']} | {r['noise']:.4f} | "
            f"{r['precision']:.3f} / {r['recall']:.3f} | {agree} | {same} | {r['load'][0]:.1f} / {r['load'][1]:.1f} |")
    import platform

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    dates = sorted({r["date"] for r in latest.values()})
    return "\n".join([
        f"Measured {', '.join(dates)} on {cpu}, {os.cpu_count()} cores, no GPU, 23 GiB RAM, by `bench/scale.py` "
        "(each row in a fresh process, under `flock /tmp/soxai-bench.lock`; the machine was shared with other "
        "engineers' tests and runs that do not take the lock: the load averages before / after each row are given, "
        "and timings at a load above 2 are slower than on an idle machine). Synthetic pooled explanation vectors "
        "(64-D, 10 classes with 3 strategies each, a planted group of 2% of all samples in class 0) generated on disk "
        "in blocks; embed = soxai.embed.sample.fit_on_sample (PCA + UMAP on the stratified sample, the rest placed "
        "from its 15 nearest sampled points of their class), concepts = soxai.concepts.scale.fit_and_assign (HDBSCAN "
        "per class on the sample, `auto` sizes; the rest assigned by the concept model). The full fit is "
        "embed_with_config + cluster_per_group on every vector (the path below `embed.fit_sample`). Peak RSS is "
        "each process's maximum resident set: the two workers, then the process that started them (the "
        "scheduler's), or the one process.",
        "",
        "| vectors | fit sample | executor | embed s | concepts s | embed + concepts s | peak RSS GiB per process "
        "| concepts | noise share | planted group P / R | ARI / matched share vs full fit | = 1 process | load |",
        "|---:|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---|---|",
        *rows,
    ])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=0, help="synthetic vectors")
    parser.add_argument("--fit-sample", type=int, default=200_000, help="embed.fit_sample")
    parser.add_argument("--work", type=Path, default=Path("/tmp/soxai-scale"))
    parser.add_argument("--full", action="store_true", help="also the full fit, for agreement")
    parser.add_argument("--one", action="store_true", help="the sample fit in one process")
    parser.add_argument("--cluster", action="store_true", help="the sample fit as a task on a 2-worker LocalCluster")
    parser.add_argument("--untimed", action="store_true",
                        help="run outside the benchmark lock at low priority, for agreement only: times not reported")
    parser.add_argument("--report", action="store_true", help="write the table of every measurement in --work")
    parser.add_argument("--child", nargs=4, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]), args.child[3])
        return
    if args.report:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from load import write_section

        print(write_section("Embed + concepts from 100k to 10M: fit on a sample, assign the rest (bench/scale.py)",
                            report(args.work)))
        return
    folder = args.work / f"n{args.n}"
    t0 = time.perf_counter()
    generate(args.n, folder)
    print(f"{args.n:,} vectors ready in {time.perf_counter() - t0:.0f} s", flush=True)
    labels = np.load(folder / "labels.npy").astype(np.int64)
    planted = np.load(folder / "planted.npy")
    runs = []
    wanted = [("full", 0)] * args.full + [("one", args.fit_sample)] * args.one
    wanted += [("cluster", args.fit_sample)] * args.cluster
    for mode, fs in wanted:
        load = os.getloadavg()[0]
        r = measure("one" if mode == "full" else mode, folder, fs)
        r.update(label=mode, load=(load, os.getloadavg()[0]), untimed=args.untimed)
        cids = np.load(r["out"])
        r.update(recovery(cids, labels, planted), n_concepts=int(len(np.unique(cids[cids >= 0]))),
                 noise=float((cids < 0).mean()))
        print(mode, json.dumps(r), flush=True)
        runs.append(r)
    full = folder / "concepts-one-0.npy"
    one = folder / f"concepts-one-{args.fit_sample}.npy"
    for r in runs:
        cids = np.load(r["out"])
        if full.is_file() and r["label"] != "full":
            from sklearn.metrics import adjusted_rand_score

            r["ari_full"] = float(adjusted_rand_score(np.load(full), cids))
            r["match_full"] = matched_share(np.load(full), cids)
        if r["label"] == "cluster" and one.is_file():
            r["same_as_one"] = bool(np.array_equal(np.load(one), cids))
    record = {"date": dt.date.today().isoformat(), "n": args.n, "fit_sample": args.fit_sample, "runs": runs}
    with open(args.work / "results.jsonl", "a") as fh:
        fh.write(json.dumps(record) + "\n")
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
