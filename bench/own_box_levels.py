"""Per class: how far a sample's own most salient box carries its class into other classes' images, against a box
of the same size at a random place of the same image.

Not a test; a diagnostic of the paste tests' reach (docs/DETECTION-METHOD.md, "Where the defaults find nothing").
For every class of a finished run (explain stages through concepts): up to ``--samples`` training images each paste
their own most salient box (side ``transplant.region_frac``, as the own_box and unclustered tests do) and, apart,
a box of the same side at a seeded random place, into the same ``--recipients`` correctly predicted images of other
classes; a sample's rate is the share moved to its class. The group column (evaluation only) splits the rates.

    PYTHONPATH=$PWD .venv/bin/python bench/own_box_levels.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import argparse

import numpy as np


def random_box_rates(ctx, rows: np.ndarray, recipients: np.ndarray, k: int, side: int,
                     rng: np.random.Generator) -> np.ndarray:
    """Each donor's box of ``side`` at a random place, pasted into every recipient: the share predicted ``k``."""
    from soxai.bias.paste import paste_region

    h, w = ctx.images.shape[2:]
    rates = np.zeros(len(rows))
    for i, r in enumerate(rows):
        y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        donors = np.repeat(np.asarray(ctx.images[[r]], dtype=np.float32), len(recipients), axis=0)
        rates[i] = np.mean(ctx.predict(paste_region(recipients, donors, (y0, x0, y0 + side, x0 + side))) == k)
    return rates


def levels(run_dir: str, n_samples: int, n_recipients: int) -> list[str]:
    from soxai.bias.context import pick_rows
    from soxai.bias.ownbox import own_box_region
    from soxai.bias.runner import detector_context
    from soxai.config import load_config
    from soxai.data.runner import read_samples
    from soxai.run_dir import RunDir

    run = RunDir(run_dir)
    cfg = load_config(run.config)
    ctx = detector_context(cfg, run)
    region = own_box_region(ctx, cfg.bias)
    samples = read_samples(run)
    train = ctx.train.merge(samples[["sample_id", "group"]], on="sample_id", how="left") \
        if "group" in samples else ctx.train.assign(group="")
    correct = train[train["pred"] == train["label"]]
    out = [f"{run_dir}: box {region.side}x{region.side}, training accuracy {np.mean(train.pred == train.label):.3f}",
           "| class | own box: mean rate | samples above 0.5 | random box: mean rate | own box by group |",
           "|---|---|---|---|---|"]
    for k, cls in train.groupby("label"):
        rng = np.random.default_rng([cfg.seed, int(k), 41])
        recipients = np.asarray(ctx.images[pick_rows(correct[correct["label"] != k], n_recipients, rng)],
                                dtype=np.float32)
        rows = pick_rows(cls, n_samples, rng)
        own = region.flip_rates(ctx.images, rows, recipients, int(k))
        rand = random_box_rates(ctx, rows, recipients, int(k), region.side, rng)
        groups = cls.set_index("row").loc[rows, "group"].astype(str).to_numpy()
        by_group = ", ".join(f"{g or '-'} {own[groups == g].mean():.2f}" for g in np.unique(groups))
        out.append(f"| {k} | {own.mean():.2f} | {np.mean(own > 0.5):.2f} | {rand.mean():.3f} | {by_group} |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--samples", type=int, default=48, help="images per class")
    parser.add_argument("--recipients", type=int, default=16, help="other-class images each box is pasted into")
    args = parser.parse_args()
    for run_dir in args.runs:
        print("\n".join(levels(run_dir, args.samples, args.recipients)), "", sep="\n", flush=True)


if __name__ == "__main__":
    main()
