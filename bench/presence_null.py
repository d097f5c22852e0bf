"""The channel reading's test under the null: every concept of runs and classes that carry no mark.

The carrier test's channel reading (soxai.bias.presence) extends a box flag's carriers only when the class-mates
it nominates outnumber the class's own upper tail (one-sided binomial at ``bias.carriers.max_p_value``). It only
runs for a flagged concept, so a pipeline run never shows how often it would take an extension where there is
nothing to find. This bench asks it of every concept of classes without a mark, on kept explain runs
(bench/detect_matrix.py's ``--work``): the unmarked runs, and the classes other than the marked one (class 0)
of the marked runs. Each concept's members play the flagged concept's, its members are its box test's carriers,
and the share of concepts whose extension is taken is the test's false-acceptance rate.

    PYTHONPATH=$PWD .venv/bin/python bench/presence_null.py --work /tmp/detect

Prints one line per run and the totals (the numbers go to docs/DETECTION-METHOD.md by hand).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path


def run_null(run_dir: Path, only_unmarked_classes: bool) -> tuple[int, int, list[str]]:
    import numpy as np

    from soxai.bias.channels import channel_budget
    from soxai.bias.presence import channel_extension
    from soxai.bias.runner import detector_context
    from soxai.config import load_config
    from soxai.data.runner import read_samples
    from soxai.run_dir import RunDir

    run = RunDir(run_dir)
    cfg = load_config(run.root / "config.yaml")
    ctx = detector_context(cfg, run)
    samples = read_samples(run).set_index("sample_id")
    train = samples[samples["split"] == "train"]  # test_attacked carries the mark in every class
    marked = set(train.loc[train["group"] == "artifact", "label"].astype(int)) if "group" in train else set()
    ccfg = cfg.bias.carriers
    k = channel_budget(ctx.layer, ctx.images, ccfg.channel_frac)
    tested, taken, notes = 0, 0, []
    for _, concept in ctx.concepts[~ctx.concepts["is_noise"]].iterrows():
        cid, label = int(concept["concept_id"]), int(concept["label"])
        if only_unmarked_classes and label in marked:
            continue
        cls = ctx.train[ctx.train["label"] == label].sort_values("row", kind="stable")
        member = (cls["concept_id"] == cid).to_numpy()
        if member.all() or not member.any():
            continue
        relevance = ctx.layer.class_relevance(ctx.images, ctx.train, label)
        ext = channel_extension(ctx.layer, ctx.images, np.stack(relevance.loc[cls["row"].to_numpy()].to_numpy()),
                                cls["row"].to_numpy(), member, member.copy(), k, ccfg.max_p_value)
        tested += 1
        if ext.accepted:
            taken += 1
            notes.append(f"concept {cid} (class {label}, {int(member.sum())} members): {ext.nominated} nominated, "
                         f"{ext.expected:.1f} expected, p={ext.p_value:.2g}")
    return tested, taken, notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("runs/detect"))
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    total_tested = total_taken = 0
    for run_dir in sorted(p for p in args.work.iterdir() if (p / "bias" / "stage.json").is_file()):
        tested, taken, notes = run_null(run_dir, only_unmarked_classes=True)
        total_tested += tested
        total_taken += taken
        print(f"{run_dir.name}: {taken} of {tested} concepts took an extension" + "".join(f"\n  {n}" for n in notes),
              flush=True)
    print(f"total: {total_taken} of {total_tested} concepts of classes without a mark took an extension")
    return 0


if __name__ == "__main__":
    sys.exit(main())
