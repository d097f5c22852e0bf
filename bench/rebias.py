"""Rerun the bias and manifest stages of kept runs at the current code, and say what changed.

A change to ``soxai/bias`` or ``soxai/manifest`` (a new LOGIC_VERSIONS entry in soxai/stage.py) can be checked on
run directories kept by bench/published.py (``--keep-runs``), bench/detect_matrix.py or bench/probe_groups.py
without retraining: each run directory is copied to ``--work`` without its bias stage and the stages after it (so
those are computed afresh, whatever LOGIC_VERSIONS says), its own config.yaml is loaded, the stages run up to (not
including) ``train``, and the flagged concepts and dropped samples are compared with the kept run's. The earlier
stages must be reused as they were (same fingerprints as the kept run's): if the current code or defaults would
recompute one, the concepts are not the kept run's and the row says so instead of comparing.

    PYTHONPATH=$PWD .venv/bin/python bench/rebias.py --work /tmp/rebias RUN_DIR [RUN_DIR ...] [--set a.b=value]

One JSON line per run: flagged concepts before and after, dropped samples before and after, whether the dropped
set and the carriers found (concept, sample) are the same, and how many of the dropped samples are in group
'artifact' (where the data has that column); or the error. Where the dropped set is the same, the pruned and
random-control models are the same (same manifest, same seeds); reweight and augment read the flagged concepts
and bias/carriers.parquet too, so their rows stand only where the carriers are the same as well.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import warnings
from pathlib import Path

LATER = ("bias", "manifest", "train", "compare", "report")  # computed afresh (bias, manifest) or not needed


def _fingerprints(root: Path) -> dict[str, str]:
    out = {}
    for stage_json in sorted(root.glob("*/stage.json")):
        if stage_json.parent.name not in LATER:
            out[stage_json.parent.name] = json.loads(stage_json.read_text())["fingerprint"]
    return out


def rerun(src: Path, work: Path, overrides: list[str] | None = None) -> dict:
    """Copy ``src`` into ``work`` without its later stages and run it up to ``train`` with its own config (and
    ``overrides``, ``soxai run --set`` style); the comparison of the module docstring."""
    from soxai.config import load_config
    from soxai.data.runner import read_samples
    from soxai.run_dir import read_json, read_parquet
    from soxai.runs import run_in_process

    name = (src.parent.name if src.name == "run" else src.name).replace(" ", "_").replace(",", "")
    dst = (work / name).resolve()
    if dst == src.resolve() or src.resolve() in dst.parents or dst in src.resolve().parents:
        raise ValueError(f"--work puts the copy of {src} at {dst}, on or inside the kept run: choose another folder")
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=lambda folder, names: [n for n in names if Path(folder) == src and n in LATER])
    run = run_in_process(load_config(dst / "config.yaml", overrides or []), dst, until="train")
    before_fp, after_fp = _fingerprints(src), _fingerprints(dst)
    if before_fp != after_fp:
        changed = sorted(k for k in after_fp if before_fp.get(k) != after_fp[k])
        return {"run": str(src), "error": f"stages {changed} were recomputed: the current code or defaults differ "
                "from the kept run's before the bias stage, so its concepts are not comparable"}

    def dropped(root: Path) -> set[str]:
        pruned = read_parquet(root / "manifest" / "pruned.parquet")
        return set(pruned.loc[~pruned["keep"].astype(bool), "sample_id"])

    def carriers(root: Path) -> set[tuple[int, str]]:
        """(concept, sample) of every carrier found (the carrier table's rows with ``carries``; its columns grew
        with the bias logic, so the rows are compared, not the tables)."""
        path = root / "bias" / "carriers.parquet"
        if not path.is_file():
            return set()
        table = read_parquet(path)
        table = table[table["carries"].astype(bool)]
        return set(zip(table["concept_id"].astype(int), table["sample_id"], strict=True))

    before, after = dropped(src), dropped(dst)
    same_carriers = carriers(src) == carriers(dst)
    samples = read_samples(run).set_index("sample_id")
    artifact = (int((samples.loc[sorted(after), "group"] == "artifact").sum())
                if after and "group" in samples else None)
    return {"run": str(src),
            "flagged_before": sorted(map(int, read_json(src / "manifest" / "manifest.json")["flagged_concepts"])),
            "flagged_after": sorted(map(int, read_json(dst / "manifest" / "manifest.json")["flagged_concepts"])),
            "dropped_before": len(before), "dropped_after": len(after), "same": before == after,
            "same_carriers": bool(same_carriers), "artifact_after": artifact}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="where the copies go (replaced per run)")
    parser.add_argument("runs", nargs="+", type=Path, help="kept run directories (with manifest/pruned.parquet)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="a config override for the rerun, soxai run --set style (repeatable)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    for src in args.runs:
        if not (src / "manifest" / "pruned.parquet").is_file():
            print(f"error: {src} has no manifest/pruned.parquet: give a run directory whose manifest stage is done",
                  file=sys.stderr)
            return 2
    failed = 0
    for src in args.runs:
        try:
            row = rerun(src, args.work, args.overrides)
        except Exception as exc:  # one broken run must not hide the others' rows
            row = {"run": str(src), "error": f"{type(exc).__name__}: {exc}"}
        failed += "error" in row
        print(json.dumps({**row, **({"overrides": args.overrides} if args.overrides else {})}), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
