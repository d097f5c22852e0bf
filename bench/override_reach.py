"""What a person's override of a moving mark's concept drops: the members, and the class-mates its channels find.

Not a test; a diagnostic of the published moving-mark benchmark (docs/DETECTION-METHOD.md, "Where the defaults find
nothing"). Where no detector flags the ring, a person looking at the concepts can drop one (``bias.overrides``). For
each kept run of ``bench/published.py --keep-runs`` given as ``RUN:RATE:DATA_SEED``, the concept holding the most
carriers stands in for the one a person would drop after looking at its members (it is read off the benchmark's
truth here, which no method reads; its members' share of carriers is printed, what the person would have seen). The
run is copied to ``--work`` and its bias and manifest stages run again with that override (bench/rebias.py), so
the carrier test reads the concept's channels in every class-mate (bias logic 14); the dropped samples' precision
and recall against the carriers follow.

    PYTHONPATH=$PWD .venv/bin/python bench/override_reach.py --work /tmp/override RUN:0.1:0 [RUN:0.2:1 ...]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def reach(spec: str, work: Path) -> str:
    import numpy as np
    from mark_reach import rebuilt_truth
    from rebias import rerun

    from soxai.data.runner import read_images, read_samples
    from soxai.run_dir import RunDir, read_parquet

    path, rate, data_seed = spec.rsplit(":", 2)
    src = Path(path)
    rows = read_samples(RunDir(src)).set_index("sample_id")["row"]
    assign = read_parquet(RunDir(src).assignments)
    truth, _ = rebuilt_truth(read_images(RunDir(src)), assign["sample_id"], rows.loc[assign["sample_id"]], float(rate),
                             int(data_seed), path)
    carrier = (truth["glyph_y"] >= 0).to_numpy()
    counts = assign.loc[carrier & (assign["concept_id"] >= 0), "concept_id"].value_counts()
    cid = int(counts.index[0])
    members = (assign["concept_id"] == cid).to_numpy()
    work.mkdir(parents=True, exist_ok=True)
    name = (src.parent.name if src.name == "run" else src.name).replace(" ", "_").replace(",", "")
    yaml = work / f"{name}.overrides.yaml"
    yaml.write_text(f"drop: [{cid}]\n")
    out = rerun(src, work, [f"bias.overrides={yaml}"])
    if "error" in out:
        return f"| {spec} | {out['error']} |"
    dst = work / name
    pruned = read_parquet(dst / "manifest" / "pruned.parquet")
    dropped = set(pruned.loc[~pruned["keep"].astype(bool), "sample_id"])
    table = read_parquet(dst / "bias" / "carriers.parquet")
    found = set(table.loc[(table["concept_id"] == cid) & table["carries"].astype(bool), "sample_id"]) & dropped
    carriers = set(assign.loc[carrier, "sample_id"])

    def pr(chosen: set) -> str:
        hit = len(chosen & carriers)
        return f"{len(chosen)}, {hit / len(chosen):.2f} / {hit / len(carriers):.2f}" if chosen else "0, – / 0.00"

    others = sorted(set(out["flagged_after"]) - {cid})
    return (f"| {spec} | {cid} | {int(members.sum())} ({np.mean(carrier[members]):.0%} carriers) | "
            f"{int((carrier & members).sum())}/{len(carriers)} | {pr(found)} | {pr(dropped)} | "
            f"{', '.join(map(str, others)) or 'none'} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="where the copies go (replaced per run)")
    parser.add_argument("runs", nargs="+", help="RUN_DIR:RATE:DATA_SEED of a kept moving-mark run")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    print("| run | concept dropped by the person | its members | carriers among them | its carriers dropped: n, P / R "
          "| the run's whole drop: n, P / R | other flags |")
    print("|---|---|---|---|---|---|---|", flush=True)
    for spec in args.runs:
        print(reach(spec, args.work), flush=True)


if __name__ == "__main__":
    main()
