"""Measure the headline claims of issue 2 and write them to docs/RESULTS.md.

Runs (or re-uses) full pipeline runs — the demo (cells), the digits source and a manifest source
built from image files on disk — and tabulates detection precision/recall and the accuracy of
baseline, pruned and random-control models with 95% intervals. Not a test: it takes ~15 min.

    .venv/bin/python bench/results.py [--runs runs/results]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def soxai(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "soxai.cli", *args], check=True, cwd=REPO)


def fmt(s: dict) -> str:
    from soxai.compare.stats import format_summary

    return format_summary(s)  # 'mean [lo, hi]'; 'mean (n=2, no interval)' below 3 seeds


def section(title: str, run: Path) -> list[str]:
    comp = json.loads((run / "compare" / "comparison.json").read_text())
    times = json.loads((run / "run.json").read_text())["stages"]
    total = sum(v["seconds"] for v in times.values())
    det = comp["detection"] or {}
    per_stage = ", ".join(f"{k} {v['seconds']:.0f}s" for k, v in times.items())
    lines = [f"### {title}", "", f"Run directory `{run.name}`; stage time {total:.0f} s ({per_stage}).", ""]
    if det:
        lines.append(f"Detection vs the planted artifact group: precision **{det['precision']:.3f}**, recall "
                     f"**{det['recall']:.3f}** ({det['true_positives']} of {det['n_planted']} planted samples "
                     f"dropped, {det['n_dropped']} dropped in all; share of the training set dropped "
                     f"{comp['cost']['share_dropped']:.1%}).")
        lines.append("")
    lines += ["| variant | split | accuracy, mean [95% CI] | worst-group accuracy | gain over baseline |",
              "|---|---|---|---|---|"]
    for v, sp in comp["variants"].items():
        for s, m in sp.items():
            gain = comp["gain_over_baseline"].get(v, {}).get(s, {}).get("accuracy")
            lines.append(f"| {v} | {s} | {fmt(m['accuracy'])} | "
                         f"{fmt(m['worst_group_accuracy']) if 'worst_group_accuracy' in m else '–'} | "
                         f"{fmt(gain) if gain else '–'} |")
    for s, m in comp.get("pruned_over_random_control", {}).items():
        lines.append(f"| pruned − random_control | {s} | | | {fmt(m['accuracy'])} |")
    lines += ["", "Claims: " + ", ".join(f"`{k}`: {v}" for k, v in comp["claims"].items()), ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", default="runs/results")
    args = parser.parse_args()
    base = REPO / args.runs
    base.mkdir(parents=True, exist_ok=True)
    soxai("run", "--run-dir", str(base / "demo"))
    soxai("run", "configs/digits.yaml", "--run-dir", str(base / "digits"))
    from soxai.config import Config
    from soxai.data.sources import build_dataset
    from soxai.testing.files import write_image_files

    files = base / "manifest-files"
    csv = files / "samples.csv"
    if not csv.is_file():
        write_image_files(build_dataset(Config().data, seed=1), files)
    soxai("run", "--run-dir", str(base / "manifest"), "--set", "name=manifest",
          "--set", "data.source=manifest", "--set", f"data.manifest={csv}")
    lines = [
        "# Results: the pipeline on built-in biased data",
        "",
        f"Measured {dt.date.today().isoformat()} on {platform.machine()} with {platform.processor() or 'CPU'}, "
        "2 cores, no GPU, by `python bench/results.py` (default configs; 5 seeds per variant). "
        "Intervals are Student-t 95% intervals over seeds; gains are paired by seed.",
        "",
        *section("Demo: cells with a planted corner mark (`soxai run`)", base / "demo"),
        *section("Digits with a planted corner mark (`soxai run configs/digits.yaml`)", base / "digits"),
        *section("Manifest source: the cells images written to PNG files + samples.csv", base / "manifest"),
    ]
    out = REPO / "docs" / "RESULTS.md"
    out.write_text("\n".join(lines) + "\n")
    print(out)


if __name__ == "__main__":
    main()
