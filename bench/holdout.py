"""Held-out check of the detectors' bars: cases none of the bars was set on.

The odds-ratio bar of ``transplant`` and ``pixel_transplant`` (``min_odds_ratio: 8``) was set by looking
at efficacy cases (cells at 0.1 and 0.05, unmarked cells with ``seed: 0``), and pixel_transplant's other
bars at the rate-0.3 cases. This runs the explain stages only (data through manifest, no retraining) on
cases with mark shapes, corners and data seeds that none of those used, and lists every concept that
passed the first two bars of a paste-and-control detector (score >= threshold, Fisher p <= max_p_value),
with its odds ratio, whether it was flagged, and the share of its members that carry the mark. The
manifest's precision / recall against the planted samples goes beside it.

    PYTHONPATH=$PWD .venv/bin/python bench/holdout.py [--runs runs/holdout] [--only NAME ...]

Writes ``docs/HOLDOUT.md`` (and one JSON line per case to ``docs/holdout.jsonl``; a rerun skips the cases
already there unless ``--redo``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from efficacy import DATASETS, DETECTORS  # noqa: E402

from soxai.bias.detectors import CLEAN_CONTROL_DETECTORS as PASTE_DETECTORS  # noqa: E402  (the odds-bar ones)

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "holdout.jsonl"
TABLE = REPO / "docs" / "HOLDOUT.md"


def _mark(shape: str, size: int, position: str, rate: float) -> list[str]:
    return [f"data.artifact.shape={shape}", f"data.artifact.size={size}", f"data.artifact.position={position}",
            f"data.artifact.rate={rate}"]


UNMARKED = ["data.artifact=null"]
# name -> (dataset, overrides). Shapes (cross, ring, corner stripe), corners (top_right, bottom_left,
# random) and data seeds (1, 2) that no efficacy case and no bar used.
CASES = {
    "cells cross top_right 0.1": ("cells", _mark("cross", 7, "top_right", 0.1)),
    "cells ring bottom_left 0.1": ("cells", _mark("ring", 7, "bottom_left", 0.1)),
    "cells stripe bottom_right 0.05": ("cells", _mark("stripe", 6, "bottom_right", 0.05)),
    "cells square random corner 0.1": ("cells", _mark("square", 5, "random", 0.1)),
    "cells square random corner 0.3": ("cells", _mark("square", 5, "random", 0.3)),
    "cells ring random corner 0.3": ("cells", _mark("ring", 7, "random", 0.3)),
    "cells cross random corner 0.2": ("cells", _mark("cross", 7, "random", 0.2)),
    "cells texture random corner 0.3": ("cells", _mark("texture", 6, "random", 0.3)),
    "cells square random corner 0.2": ("cells", _mark("square", 5, "random", 0.2)),
    "cells unmarked seed 1": ("cells", [*UNMARKED, "seed=1"]),
    "cells unmarked seed 2": ("cells", [*UNMARKED, "seed=2"]),
    "mnist cross top_right 0.3": ("mnist", _mark("cross", 7, "top_right", 0.3)),
    "mnist unmarked seed 1": ("mnist", [*UNMARKED, "seed=1"]),
    "digits unmarked seed 1": ("digits", [*UNMARKED, "seed=1"]),
}
# Cases a design change was made after looking at (so they are no longer held out for it).
SEEN_BY = {
    "cells square random corner 0.3": "clean_control was built after its first run (R 0.72: the weakest "
    "corner's concept hidden by a control of 20%)",
    "cells ring random corner 0.3": "clean_control was moved from per detector to the whole stage after its "
    "run (R 0.72: one corner flagged by no region test until another detector's flags cleaned its control)",
}


def run_case(root: Path, name: str) -> dict:
    import numpy as np

    from soxai.compare.stats import detection_scores
    from soxai.config import load_config
    from soxai.data.runner import read_samples
    from soxai.run_dir import read_json, read_parquet
    from soxai.runs import run_in_process

    dataset, extra = CASES[name]
    cfg = load_config(None, [*DATASETS[dataset], *extra, "train.epochs=8", f"bias.detectors={DETECTORS}",
                             f"name={name.replace(' ', '-')}"])
    t0 = time.perf_counter()
    run = run_in_process(cfg, root / cfg.name, until="train")
    seconds = time.perf_counter() - t0

    samples = read_samples(run)
    train = samples[samples["split"] == "train"]
    assign = read_parquet(run.assignments).merge(train[["sample_id", "group"]], on="sample_id")
    marked_share = {int(c): float((g == "artifact").mean()) for c, g in assign.groupby("concept_id")["group"]}
    scores = read_parquet(run.bias_scores)
    concepts = []
    for _, s in scores.iterrows():
        det = s["detector"]
        if det not in PASTE_DETECTORS:
            if s["is_bias"]:
                concepts.append({"concept": int(s["concept_id"]), "detector": det, "score": float(s["score"]),
                                 "flagged": True, "marked": marked_share.get(int(s["concept_id"]))})
            continue
        dcfg = getattr(cfg.bias, det)
        if s["score"] >= dcfg.threshold and s["p_value"] <= dcfg.max_p_value:
            concepts.append({"concept": int(s["concept_id"]), "detector": det, "score": float(s["score"]),
                             "flips": float(s["flip_rate"]), "control": float(s["control_rate"]),
                             "odds_ratio": float(s["odds_ratio"]), "flagged": bool(s["is_bias"]),
                             "marked": marked_share.get(int(s["concept_id"]))})
    manifest = read_parquet(run.pruned_parquet).merge(train[["sample_id", "group"]], on="sample_id")
    det = detection_scores(~manifest["keep"].to_numpy(dtype=bool), (manifest["group"] == "artifact").to_numpy())
    info = read_json(run.manifest_json)
    base = read_json(run.baseline_metrics)
    return {
        # how much the baseline leans on the mark: its accuracy on the clean and the attacked test set
        "baseline_test": base["test"]["accuracy"], "baseline_attacked": base.get("test_attacked", {}).get("accuracy"),
        "case": name, "seconds": round(seconds, 1), "n_train": int(len(manifest)), "n_planted": det["n_planted"],
        "n_dropped": det["n_dropped"],
        # NaN (nothing dropped / nothing planted) is written as null
        "precision": det["precision"] if det["n_dropped"] else None,
        "recall": det["recall"] if det["n_planted"] else None,
        "flagged_concepts": list(info["flagged_concepts"]), "concepts": concepts,
        "n_concepts": int(sum(c >= 0 for c in marked_share)),
        "measured": f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        "marked_in_noise": int(np.sum((assign["group"] == "artifact") & (assign["concept_id"] < 0))),
    }


def _f(v, spec: str = ".2f") -> str:
    return "–" if v is None else format(v, spec)


def write_table(rows: list[dict]) -> None:
    rows = sorted(rows, key=lambda r: list(CASES).index(r["case"]))
    lines = [
        "# Held-out check of the detectors' bars", "",
        f"Machine: {platform.machine()}, {platform.system()} {platform.release()}, Python {sys.version.split()[0]}, "
        f"CPU only; table rewritten {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC. Command: "
        "`PYTHONPATH=$PWD python bench/holdout.py`.", "",
        "Explain stages only (data through manifest, default config plus bench/efficacy.py's dataset overrides, "
        "its four detectors and 8 epochs) on mark shapes, corners and data seeds that no bar was set on. "
        "Per case: the manifest's precision / recall against the planted samples, then every concept that "
        "passed the first two bars of transplant or pixel_transplant (score >= threshold, Fisher p <= "
        "max_p_value), and every concept another detector flagged. The baseline's accuracy on the clean and "
        "the attacked test set (the other classes' test images with the mark) says how much it leans on the "
        "mark. odds = odds ratio of flips against the "
        "control (0.5 added to each cell); the bar is 8. marked = share of the concept's members that carry "
        "the mark.", "",
        "| case | baseline acc test / attacked | planted | dropped | P | R | concept | detector | score | flips | "
        "control | odds | flagged | marked |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        head = (f"| {r['case']} | {_f(r.get('baseline_test'))} / {_f(r.get('baseline_attacked'))} | {r['n_planted']} | "
                f"{r['n_dropped']} | {_f(r['precision'])} | "
                f"{_f(r['recall'])} |")
        if not r["concepts"]:
            lines.append(head + " none passed | | | | | | | |")
        for i, c in enumerate(r["concepts"]):
            lines.append((head if i == 0 else "| | | | | | |")
                         + f" {c['concept']} | {c['detector']} | {c['score']:.3f} | {_f(c.get('flips'), '.3f')} | "
                         f"{_f(c.get('control'), '.3f')} | {_f(c.get('odds_ratio'), '.1f')} | "
                         f"{'yes' if c['flagged'] else 'no'} | {_f(c['marked'])} |")
    real = [c["odds_ratio"] for r in rows for c in r["concepts"] if "odds_ratio" in c and (c["marked"] or 0) < 0.5]
    mark = [c["odds_ratio"] for r in rows for c in r["concepts"] if "odds_ratio" in c and (c["marked"] or 0) >= 0.5]
    false = [f"{r['case']} (concept {c['concept']}, {c['detector']})" for r in rows for c in r["concepts"]
             if c["flagged"] and (c["marked"] or 0) < 0.5]
    lines += ["", "## Reading", "",
              f"- Odds ratios of concepts that passed the first two bars: unmarked concepts "
              f"{_range(real)}, concepts of marked samples {_range(mark)} (bar: 8).",
              f"- False flags (a flagged concept with fewer than half its members marked): "
              f"{', '.join(false) if false else 'none'}.",
              *[f"- Not held out for clean_control: {case}: {why}." for case, why in SEEN_BY.items()],
              "- mutual_control (one mark split over concepts that hide each other, built on the efficacy case "
              "MNIST corner patch at 0.3) and transplant's threshold of 0.1 (0.2 before; set on the MNIST corner "
              "patch at 0.1) are held out on every case here: rerunning the bias stage of all of them with both "
              "(2026-11-30) changed no dropped sample; the lower threshold let more real concepts pass the first "
              "two bars, and the odds-ratio bar stopped every one of them.",
              "- Cases where nothing of the mark was dropped: " + (", ".join(
                  f"{r['case']} ({r['marked_in_noise']} of {r['n_planted']} planted in the noise)"
                  for r in rows if r["n_planted"] and not r["recall"]) or "none") + ".", ""]
    tmp = TABLE.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, TABLE)


def _range(values: list[float]) -> str:
    return f"{min(values):.1f}-{max(values):.1f} ({len(values)})" if values else "none"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=str(REPO / "runs" / "holdout"))
    parser.add_argument("--only", nargs="*", default=list(CASES), help="case names (see CASES)")
    parser.add_argument("--redo", action="store_true", help="run the selected cases again, replacing their rows")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--keep-runs", action="store_true")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.only) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {unknown}; expected names from: {sorted(CASES)}")
    import torch

    torch.set_num_threads(1)
    rows = [json.loads(line) for line in RESULTS.read_text().splitlines()] if RESULTS.is_file() else []
    if not args.table_only:
        for name in args.only:
            if any(r["case"] == name for r in rows) and not args.redo:
                continue
            print(f"[holdout] {name}", flush=True)
            row = run_case(Path(args.runs), name)
            rows = [r for r in rows if r["case"] != name] + [row]
            tmp = RESULTS.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
            os.replace(tmp, RESULTS)
            write_table(rows)
            if not args.keep_runs:
                shutil.rmtree(Path(args.runs) / name.replace(" ", "-"), ignore_errors=True)
            print(f"[holdout] done: P={row['precision']} R={row['recall']} concepts={row['concepts']}", flush=True)
    write_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
