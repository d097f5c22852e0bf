"""Detection only (no retraining): run the explain stages of one case and print every concept's rows.

    PYTHONPATH=$PWD .venv/bin/python bench/probe_detect.py --work runs/probe --name demo [--set k=v ...]

For each concept: its class, size, the share of its members that carry the planted artifact (the
evaluation-only ``group``), and each detector's score, p-value and flag; then the dropped samples'
precision and recall against the planted group. For judging a detection change on a case quickly; the
retraining targets are bench/efficacy.py's and bench/published.py's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def probe(work: Path, name: str, overrides: list[str], config: str | None = None) -> dict:
    import numpy as np
    import pandas as pd

    from soxai.compare.stats import detection_scores
    from soxai.config import load_config
    from soxai.data.runner import read_samples
    from soxai.run_dir import read_parquet
    from soxai.runs import run_in_process

    cfg = load_config(config, [*overrides, f"name={name}"])
    t0 = time.perf_counter()
    run = run_in_process(cfg, work / name, until="train")
    seconds = time.perf_counter() - t0
    samples = read_samples(run)
    train = samples[samples["split"] == "train"]
    group = train["group"] if "group" in train else pd.Series("", index=train.index)
    train = train.assign(group=group.astype(str))
    assign = read_parquet(run.assignments).merge(train[["sample_id", "group"]], on="sample_id")
    sizes = assign.groupby("concept_id").agg(label=("label", "first"), n=("sample_id", "size"),
                                             marked=("group", lambda g: float((g == "artifact").mean())))
    scores = read_parquet(run.bias_scores)
    print(f"{name}: {seconds:.0f} s, {len(train)} training samples, {int((train['group'] == 'artifact').sum())} "
          "planted")
    for cid, row in sizes.iterrows():
        line = f"  concept {cid:3d} class {int(row['label'])} n={int(row['n']):4d} marked={row['marked']:.2f}"
        for _, s in scores[scores["concept_id"] == cid].iterrows():
            p = s.get("p_value", np.nan)
            line += f" | {s['detector']}: {s['score']:+.2f} p={p:.1g}{' FLAG' if s['is_bias'] else ''}"
        print(line)
    manifest = read_parquet(run.pruned_parquet).merge(train[["sample_id", "group"]], on="sample_id")
    det = detection_scores(~manifest["keep"].to_numpy(dtype=bool), (manifest["group"] == "artifact").to_numpy())
    print(f"  dropped {det['n_dropped']}, precision {det['precision']:.2f}, recall {det['recall']:.2f}")
    return {"seconds": seconds, **det}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("runs/probe"))
    parser.add_argument("--name", default="probe")
    parser.add_argument("--config", default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)
    probe(args.work, args.name, args.overrides, args.config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
