"""Load benchmark: the explain stages (data -> manifest) on a large synthetic cells dataset.

Records wall time per stage and the process's peak resident memory (VmHWM), and writes a section
of docs/BENCHMARKS.md. Not a test: at 100k samples it takes several minutes on 2 cores.

    .venv/bin/python bench/load.py [--n 100000] [--epochs 1]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shutil
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def peak_rss_mib() -> float:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def write_section(title: str, body: str) -> Path:
    doc = REPO / "docs" / "BENCHMARKS.md"
    text = doc.read_text() if doc.is_file() else "# Benchmarks\n"
    pattern = re.compile(rf"\n## {re.escape(title)}\n.*?(?=\n## |\Z)", re.S)
    section = f"\n## {title}\n\n{body.strip()}\n"
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n" + section
    doc.write_text(text)
    return doc


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000, help="training samples (split over 3 classes)")
    parser.add_argument("--epochs", type=int, default=1, help="baseline epochs (the model only has to be decent)")
    parser.add_argument("--keep", action="store_true", help="keep the run directory")
    args = parser.parse_args()
    os.environ.setdefault("SOXAI_PROGRESS", "0")

    from flows.pipeline import EXPLAIN_STAGES, RUNNERS
    from soxai.config import load_config
    from soxai.runs import init_run

    per_class = args.n // 3
    cfg = load_config(None, [
        f"data.n_train_per_class={per_class}", "data.n_val_per_class=200", "data.n_test_per_class=200",
        f"train.epochs={args.epochs}", "train.batch_size=256", "saliency.batch_size=512",
        # HDBSCAN's smallest concept scales with the data: ~0.5% of a class
        f"concepts.min_cluster_size={max(20, per_class // 200)}",
    ])
    root = Path(tempfile.mkdtemp(prefix="soxai-load-"))
    run = init_run(cfg, root / "run")
    rows = []
    t_all = time.perf_counter()
    for stage in EXPLAIN_STAGES:
        t0 = time.perf_counter()
        record = RUNNERS[stage](cfg, run)
        rows.append((stage, time.perf_counter() - t0, peak_rss_mib(), record.metrics))
        print(f"{stage:10s} {rows[-1][1]:7.1f} s  peak RSS {rows[-1][2]:7.0f} MiB  {record.metrics}", flush=True)
    total = time.perf_counter() - t_all
    size = sum(p.stat().st_size for p in run.root.rglob("*") if p.is_file()) / 2**20
    body = [
        f"Measured {dt.date.today().isoformat()} on {cpu_model()}, {os.cpu_count()} cores, no GPU, by "
        f"`python bench/load.py --n {args.n} --epochs {args.epochs}`: {3 * per_class:,} training samples "
        f"(32x32 cells), saliency {cfg.saliency.method}, min_cluster_size {cfg.concepts.min_cluster_size}.",
        "",
        "| stage | seconds | peak RSS so far (MiB) |",
        "|---|---|---|",
        *[f"| {s} | {sec:.1f} | {rss:.0f} |" for s, sec, rss, _ in rows],
        "",
        f"Total {total:.0f} s; run directory {size:.0f} MiB on disk (images.npy is float32: "
        f"{3 * per_class * 32 * 32 * 4 / 2**20:.0f} MiB of it). Peak RSS counts the memory-mapped images "
        "that were touched, so it includes file-backed pages.",
    ]
    print(write_section("Explain stages at scale (bench/load.py)", "\n".join(body)))
    if not args.keep:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
