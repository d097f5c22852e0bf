"""Embed + concepts stages on 100k explanation vectors: wall time and peak memory.

Makes (or reuses, in --work) a cells run of --n training samples through the saliency stage, then runs
the embed and concepts stages in a fresh process per measurement (so its peak RSS is theirs, not the data
generator's), and checks that the concepts still separate the planted mark: ARI and the best cluster's
precision / recall against the artifact group within the marked class. Writes a section of
docs/BENCHMARKS.md. Target: under 2 minutes on 2 cores.

    .venv/bin/python bench/embed_scale.py [--n 100000] [--work DIR] [--set embed.x=y ...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cells_run import cpu_s, emit, explained_run, parse_result, peak_rss_mib, recovery, rss_mib
from load import cpu_model, write_section

TARGET_S = 120.0


def child(run_dir: str, overrides: list[str]) -> None:
    """Time run_embed + run_concepts on an explained run (their stage.json removed, so both run)."""
    import numpy as np

    from soxai.concepts.runner import run_concepts
    from soxai.config import load_config
    from soxai.embed.runner import run_embed
    from soxai.run_dir import RunDir, read_parquet

    run = RunDir(run_dir)
    cfg = load_config(run.config, overrides)
    for stage in ("embed", "concepts"):
        run.stage_json(stage).unlink(missing_ok=True)
    rss0 = rss_mib()
    c0, t0 = cpu_s(), time.perf_counter()
    embed = run_embed(cfg, run)
    c1, t1 = cpu_s(), time.perf_counter()
    concepts = run_concepts(cfg, run)
    c2, t2 = cpu_s(), time.perf_counter()
    assign = read_parquet(run.assignments)
    samples = read_parquet(run.samples).set_index("sample_id").loc[assign["sample_id"]]
    marked = assign["label"].to_numpy() == cfg.data.artifact.target_class
    rec = recovery(assign["concept_id"].to_numpy()[marked], samples["group"].to_numpy()[marked] == "artifact")
    emit({
        "n": embed.metrics["n"], "embed_s": t1 - t0, "concepts_s": t2 - t1, "embed_cpu_s": c1 - c0,
        "concepts_cpu_s": c2 - c1, "rss_before_mib": rss0,
        "peak_rss_mib": peak_rss_mib(), "n_concepts": concepts.metrics["n_concepts"],
        "noise_share": concepts.metrics["noise_share"], "hdbscan_params": concepts.metrics["hdbscan_params"],
        "n_marked": int(marked.sum()), "n_artifact": int(np.sum(samples["group"].to_numpy() == "artifact")), **rec,
    })


def measure(run_dir: Path, overrides: list[str], numba_cache: Path) -> dict:
    env = {**os.environ, "SOXAI_PROGRESS": "0", "NUMBA_CACHE_DIR": str(numba_cache),
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmd = [sys.executable, __file__, "--child", str(run_dir), *sum((["--set", o] for o in overrides), [])]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    result = parse_result(proc.stdout)
    if result is None:
        raise RuntimeError(f"child failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    result["process_s"] = time.perf_counter() - t0
    return result


def compare_params(run_dir: Path, settings: list[tuple[object, object]]) -> str:
    """HDBSCAN per class on the embedding the last measurement wrote, once per (min_cluster_size,
    min_samples): time, concepts, noise and recovery of the artifact group in the marked class."""
    import numpy as np

    from soxai.concepts.cluster import cluster_per_group, resolve_hdbscan_params
    from soxai.config import load_config
    from soxai.run_dir import RunDir, read_parquet

    run = RunDir(run_dir)
    cfg = load_config(run.config)
    emb = read_parquet(run.embedding)
    coords = emb[[c for c in emb.columns if c.startswith("u")]].to_numpy()
    labels = emb["label"].to_numpy()
    groups = read_parquet(run.samples).set_index("sample_id").loc[emb["sample_id"], "group"].to_numpy()
    marked = labels == cfg.data.artifact.target_class
    lines = [
        f"HDBSCAN per class on the {len(coords):,}-point UMAP embedding of the run above, fixed sizes against "
        "`auto` (same embedding, one process, machine shared as above).",
        "",
        "| min_cluster_size, min_samples | resolved per class | seconds | CPU s | concepts | noise share "
        "| marked class: ARI | best cluster P / R |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for mcs, ms in settings:
        c0, t0 = cpu_s(), time.perf_counter()
        cids, _, pers = cluster_per_group(coords, labels, mcs, ms)
        secs, cpu = time.perf_counter() - t0, cpu_s() - c0
        rec = recovery(cids[marked], groups[marked] == "artifact")
        resolved = sorted({resolve_hdbscan_params(int((labels == g).sum()), mcs, ms) for g in np.unique(labels)})
        lines.append(
            f"| {mcs}, {ms} | {', '.join(map(str, resolved))} | {secs:.1f} | {cpu:.1f} | {len(pers)} | "
            f"{(cids < 0).mean():.3f} | {rec['ari']:.3f} | {rec['precision']:.3f} / {rec['recall']:.3f} |"
        )
        print(lines[-1], flush=True)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000, help="training samples (3 classes)")
    parser.add_argument("--work", type=Path, default=None, help="folder for the run (kept; reused if present)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override")
    parser.add_argument("--params-only", action="store_true",
                        help="only compare HDBSCAN settings on the embedding already in the run (after a full run)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.overrides)
        return
    os.environ.setdefault("SOXAI_PROGRESS", "0")
    work = args.work or Path(tempfile.mkdtemp(prefix="soxai-embed-scale-"))
    t0 = time.perf_counter()
    _, run = explained_run(args.n, work)
    print(f"explained run {run.root} ready in {time.perf_counter() - t0:.0f} s", flush=True)
    if args.params_only:
        body = compare_params(run.root, [(20, None), (20, "auto"), ("auto", None), ("auto", "auto")])
        print(write_section("HDBSCAN sizes at 100k: fixed against auto (bench/embed_scale.py --params-only)", body))
        return
    numba_cache = Path(tempfile.mkdtemp(prefix="soxai-numba-"))  # empty: the first measurement compiles
    rows = []
    for label in ("cold numba cache", "warm numba cache"):
        load_before = os.getloadavg()
        r = measure(run.root, args.overrides, numba_cache)
        r["label"], r["load"] = label, (load_before, os.getloadavg())
        rows.append(r)
        print(label, {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}, flush=True)
    over = ", ".join(args.overrides) or "none (the defaults)"
    method = next((o.split("=", 1)[1] for o in args.overrides if o.startswith("embed.method=")), "umap")
    steps = "PCA -> spectral embedding of a k-NN graph" if method == "spectral" else "PCA -> UMAP"
    lines = [
        f"Measured {dt.date.today().isoformat()} on {cpu_model()}, {os.cpu_count()} cores, no GPU, by "
        f"`python bench/embed_scale.py --n {args.n}` (overrides: {over}). The machine was shared with other "
        "work (load averages before / after each row are given). Each row runs the embed stage (pooled |map| "
        f"-> {steps}) and the concepts stage (HDBSCAN per class, mean maps) in a fresh process on the "
        "training maps of one cells run (1 training epoch, input x gradient); *cold* starts with an empty "
        "numba cache (UMAP's JIT compiles), *warm* reuses it.",
        "",
        "| numba cache | vectors | embed s | concepts s | embed + concepts s | CPU s (embed + concepts) "
        "| peak RSS MiB (RSS before) | concepts | noise share | marked class: ARI | best cluster P / R "
        "| load before / after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        (b, _, _), (a, _, _) = r["load"]
        lines.append(
            f"| {r['label'].split()[0]} | {r['n']:,} | {r['embed_s']:.1f} | {r['concepts_s']:.1f} | "
            f"**{r['embed_s'] + r['concepts_s']:.1f}** | {r['embed_cpu_s'] + r['concepts_cpu_s']:.1f} | "
            f"{r['peak_rss_mib']:.0f} ({r['rss_before_mib']:.0f}) | "
            f"{r['n_concepts']} | {r['noise_share']:.3f} | {r['ari']:.3f} | {r['precision']:.3f} / "
            f"{r['recall']:.3f} | {b:.2f} / {a:.2f} |"
        )
    worst = max(r["embed_s"] + r["concepts_s"] for r in rows)
    lines += [
        "",
        f"HDBSCAN parameters per class (min_cluster_size, min_samples; `auto`): {rows[-1]['hdbscan_params']}. "
        f"Target (embed + concepts of {rows[-1]['n']:,} vectors under {TARGET_S:.0f} s on 2 cores): "
        f"**{'met' if worst < TARGET_S else 'NOT met'}** (slowest row {worst:.0f} s).",
    ]
    # the defaults keep their section; a run with overrides gets its own beside it
    title = "Embed + concepts at 100k (bench/embed_scale.py" + "".join(f", {o}" for o in args.overrides) + ")"
    print(write_section(title, "\n".join(lines)))


if __name__ == "__main__":
    main()
