"""Do the discovered concepts follow a benchmark's confounder? (detection-side probe, no retraining)

    PYTHONPATH=$PWD .venv/bin/python bench/probe_groups.py --case colored_mnist [--set embed.features=channels]

Builds one of bench/published.py's cases as a user's manifest, runs the pipeline up to (not including) the
retrain stage, and prints, for every class: each concept's size, its members' evaluation-only ``group``
shares and the baseline's training error on them, and the normalised mutual information between concept
and group within the class. Group-balanced reweighting over concepts ("reweight") can only help where the
concepts split a class along its confounder; this says whether they do, before any retraining is paid for.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def probe(work: Path, case: str, overrides: list[str], data_seed: int = 0) -> dict:
    from published import CASES
    from sklearn.metrics import normalized_mutual_info_score

    from soxai.config import load_config
    from soxai.data.runner import read_samples
    from soxai.run_dir import read_parquet
    from soxai.runs import run_in_process
    from soxai.testing.published import write_manifest

    csv = write_manifest(CASES[case](data_seed, False), work / case / "data", overwrite=True)
    cfg = load_config(None, ["data.source=manifest", f"data.manifest={csv}", f"name={case}", *overrides])
    t0 = time.perf_counter()
    run = run_in_process(cfg, work / case / "run", until="train")
    seconds = time.perf_counter() - t0
    train = read_samples(run).query("split == 'train'")
    assign = read_parquet(run.assignments)[["sample_id", "concept_id", "pred"]]
    df = train[["sample_id", "label", "group"]].merge(assign, on="sample_id")
    df["group"] = df["group"].fillna("-").astype(str)
    df["error"] = df["pred"] != df["label"]
    out: dict = {"seconds": round(seconds, 1), "classes": {}}
    print(f"{case} {' '.join(overrides)}: {seconds:.0f} s to concepts, {len(df)} training samples")
    for label, part in df.groupby("label"):
        nmi = normalized_mutual_info_score(part["group"], part["concept_id"])
        print(f"  class {label}: n={len(part)} error={part['error'].mean():.2f} NMI(concept, group)={nmi:.2f}")
        for cid, g in part.groupby("concept_id"):
            shares = g["group"].value_counts(normalize=True).round(2).to_dict()
            print(f"    concept {cid:3d} n={len(g):4d} error={g['error'].mean():.2f} groups={shares}")
        by_group = part.groupby("group")["error"].mean().round(2).to_dict()
        print(f"    training error by group: {by_group}")
        out["classes"][int(label)] = {"nmi": round(float(nmi), 3), "error_by_group": by_group}
    # the conflict test (bias/conflicts.parquet) against each class's minority groups: the samples whose
    # group is not their class's most common one (ColoredMNIST's other colour, Waterbirds-like's other
    # background; on the moving mark the carriers, which are no conflict)
    conflicts = read_parquet(run.bias_conflicts)
    found = set(conflicts.loc[conflicts["is_conflict"], "concept_id"].astype(int))
    majority = df.groupby("label")["group"].agg(lambda g: g.value_counts().index[0])
    minority = (df["group"] != df["label"].map(majority)).to_numpy()
    in_conflict = df["concept_id"].isin(found).to_numpy()
    tp = int((in_conflict & minority).sum())
    out["conflicts"] = {"concepts": sorted(found), "n_in_conflicts": int(in_conflict.sum()),
                        "n_minority": int(minority.sum()), "precision": tp / in_conflict.sum() if in_conflict.any()
                        else None, "recall": tp / minority.sum() if minority.any() else None}
    print(f"  conflict concepts {sorted(found)}: {int(in_conflict.sum())} samples, {tp} of them in their class's "
          f"minority group ({int(minority.sum())} in all)")
    return out


def main(argv: list[str] | None = None) -> int:
    from published import CASES

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("runs/probe_groups"))
    parser.add_argument("--case", required=True, choices=list(CASES))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--data-seed", type=int, default=0)
    args = parser.parse_args(argv)
    probe(args.work, args.case, args.overrides, args.data_seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
