"""How far a moving mark carries its class when pasted, with the mark's true place known: the reach any paste test has.

Not a test; a diagnostic of the published moving-mark benchmark (docs/DETECTION-METHOD.md, "Where the defaults find
nothing"). For a finished run of ``bench/published.py --keep-runs`` (moving_mark_0.1 or 0.2), the benchmark is rebuilt
to read where each ring was stamped (ground truth no method reads). Every carrier pastes the exact window of its ring
(glyph side, at its own place) into the same correctly predicted images of other classes, at the same place; the
clean samples of its class paste the same windows. Then every sample of the class pastes its own most salient box
of each side in ``--sides`` (what the own-box, unclustered and carrier tests paste). A sample's rate is the share of
recipients moved to the mark's class. The last column is the best recall of the carriers that any threshold on the
rate reaches at precision >= 0.9 against the clean class-mates' own boxes of the glyph's side: the per-sample target
of issue 18 (P, R >= 0.9) read with the mark's place given.

    PYTHONPATH=$PWD .venv/bin/python bench/mark_reach.py RUN_DIR --rate 0.1 [--data-seed 0] [--recipients 32]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def best_recall(carriers: np.ndarray, clean: np.ndarray, precision: float = 0.9) -> float:
    """The largest share of ``carriers`` at or above a threshold of precision >= ``precision`` against ``clean``."""
    best = 0.0
    for t in np.unique(np.concatenate([carriers, clean])):
        tp, fp = int(np.sum(carriers >= t)), int(np.sum(clean >= t))
        if tp and tp / (tp + fp) >= precision:
            best = max(best, tp / len(carriers))
    return best


def window_rates(ctx, rows, ys, xs, side: int, recipients: np.ndarray, k: int) -> np.ndarray:
    """Each donor's ``side`` window at (y, x) pasted into every recipient at the same place: the share predicted k."""
    from soxai.bias.paste import paste_region

    out = np.zeros(len(rows))
    for i, (r, y, x) in enumerate(zip(rows, ys, xs, strict=True)):
        donors = np.repeat(np.asarray(ctx.images[[int(r)]], dtype=np.float32), len(recipients), axis=0)
        out[i] = np.mean(ctx.predict(paste_region(recipients, donors, (y, x, y + side, x + side))) == k)
    return out


def rebuilt_truth(images, sample_ids, rows, rate: float, data_seed: int, where: str):
    """Where the published moving mark sat in each of ``sample_ids`` (their ``rows`` of the run's ``images``): the
    benchmark rebuilt at ``rate`` and ``data_seed``, checked image by image against the run's (the sample ids do not
    depend on the data seed, so a wrong seed would give wrong places silently). Returns (frame with glyph_y, glyph_x
    in the order of ``sample_ids``, the benchmark's parameters); exits naming the run where the data differ."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from published import CASES

    planted = CASES[f"moving_mark_{rate:g}"](data_seed, False)
    frame = planted.frame().reset_index().set_index("sample_id").loc[np.asarray(sample_ids)]
    rebuilt = planted.images[frame["index"].to_numpy()].astype(np.float32) / 255.0
    if rebuilt.shape[1:] != tuple(images.shape[2:]) or not np.allclose(
            rebuilt, np.asarray(images[np.asarray(rows)], dtype=np.float32)[:, 0], atol=1e-5):
        raise SystemExit(f"{where}: the benchmark rebuilt with rate {rate:g} and data seed {data_seed} is not this "
                         "run's data: give the run's rate and data seed")
    return frame[["glyph_y", "glyph_x"]], planted.info["parameters"]


def reach(run_dir: str, rate: float, data_seed: int, n_recipients: int, sides: list[int]) -> list[str]:
    from soxai.bias.ownbox import OwnBox
    from soxai.bias.runner import detector_context
    from soxai.config import load_config
    from soxai.run_dir import RunDir

    run = RunDir(run_dir)
    cfg = load_config(run.config)
    ctx = detector_context(cfg, run)
    truth, params = rebuilt_truth(ctx.images, ctx.train["sample_id"], ctx.train["row"], rate, data_seed, run_dir)
    side, k = int(params["glyph_size"]), int(params["target"])
    train = ctx.train.assign(glyph_y=truth["glyph_y"].to_numpy(), glyph_x=truth["glyph_x"].to_numpy())
    carriers = train[train["glyph_y"] >= 0].sort_values("row")
    clean = train[(train["glyph_y"] < 0) & (train["label"] == k)].sort_values("row")
    if carriers.empty or len(clean) < len(carriers):
        raise SystemExit(f"{run_dir}: no carriers, or fewer clean class-{k} samples than carriers: not a moving "
                         "mark run")
    rng = np.random.default_rng([cfg.seed, 43])
    pool = train[(train["pred"] == train["label"]) & (train["label"] != k)]["row"].to_numpy()
    recipients = np.asarray(ctx.images[np.sort(rng.choice(pool, min(n_recipients, len(pool)), replace=False))],
                            dtype=np.float32)
    same = clean.sample(len(carriers), random_state=0)  # clean class-mates pasting the carriers' windows
    exact = window_rates(ctx, carriers["row"], carriers["glyph_y"], carriers["glyph_x"], side, recipients, k)
    windows = window_rates(ctx, same["row"], carriers["glyph_y"], carriers["glyph_x"], side, recipients, k)
    own = {}
    for s in sorted({*sides, side}):
        box = OwnBox(s, ctx.sample_maps, ctx.predict)
        own[s] = (box.flip_rates(ctx.images, carriers["row"].to_numpy(), recipients, k),
                  box.flip_rates(ctx.images, clean["row"].to_numpy(), recipients, k))
    ref = own[side][1]
    out = [f"{run_dir}: {len(carriers)} carriers of class {k}, {len(clean)} clean class-mates, {len(recipients)} "
           f"recipients, a {side}x{side} ring",
           "| pasted | carriers: mean rate | carriers above 0.5 | clean class-mates: mean rate | "
           f"best recall at P >= 0.9 (against the clean own {side}x{side} boxes) |",
           "|---|---:|---:|---:|---:|",
           f"| the exact ring window, at its place | {exact.mean():.3f} | {np.mean(exact > 0.5):.2f} | "
           f"{windows.mean():.3f} (the same windows) | {best_recall(exact, ref):.2f} |"]
    for s, (a, b) in own.items():
        out.append(f"| own most salient {s}x{s} box | {a.mean():.3f} | {np.mean(a > 0.5):.2f} | {b.mean():.3f} | "
                   f"{best_recall(a, ref):.2f} |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--rate", type=float, required=True, choices=[0.1, 0.2])
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--recipients", type=int, default=32)
    parser.add_argument("--sides", type=int, nargs="+", default=[5, 7, 9])
    args = parser.parse_args()
    print("\n".join(reach(args.run, args.rate, args.data_seed, args.recipients, args.sides)), flush=True)


if __name__ == "__main__":
    main()
