"""Concepts by each channel's peak activation, and a patch of their channels: can they find a mark that moves?

Not a test; a diagnostic (docs/DETECTION-METHOD.md, "Where the defaults find nothing"). For finished runs (the kept
runs of ``bench/published.py --keep-runs`` or ``bench/detect_matrix.py``), three readings of the baseline's
``model.layer``:

1. *Separability* (moving-mark runs only, with ``--case RATE:DATA_SEED``; the benchmark is rebuilt to read which
   samples carry the ring): the best single channel's AUC of carriers against their clean class-mates, for the
   channel's relevance summed over positions (today's ``channels`` block of the explanation vector) and for its
   peak activation (the spatial maximum, which does not depend on where the mark sits).
2. *Concepts*: the explanation vector of the run (``embed/features.npy``, channels+pooled) with a third block, each
   channel's peak activation standardised across the sample's channels (``soxai.embed.features.peak_block``, what
   ``embed.features: channels+peaks+pooled`` adds), embedded and clustered per class with the run's own embed and
   concepts settings and seed (PCA, UMAP, HDBSCAN). The concept holding the most carriers, today's and with peaks.
3. *A patch test on those concepts*: each concept's ``--channels`` channels whose standardised peak is highest in its
   members against its class-mates; ``--pairs`` members patch those channels' maps (the whole map, at the layer)
   into correctly predicted images of other classes, and as many class-mates do the same into the same images
   (the channels ranked by the members' mean peak against the class-mates', each channel standardised over the
   training set). A
   two-proportion z per concept, judged against the run's own null (median and 1.4826 x MAD of the concepts' z,
   width at least 1: the ``channel_patch`` detector's rule) with a Bonferroni bar of 0.01 over the concepts.

    PYTHONPATH=$PWD .venv/bin/python bench/peak_concepts.py RUN[:RATE:DATA_SEED] ... [--pairs 600] [--channels 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def best_auc(score: np.ndarray, positive: np.ndarray) -> float:
    """The largest ROC AUC of any one column of ``score`` (n, channels) for ``positive`` (n,) bool."""
    from sklearn.metrics import roc_auc_score

    return max(float(roc_auc_score(positive, score[:, j])) for j in range(score.shape[1]))


def top_concept(concepts: np.ndarray, carriers: np.ndarray) -> str:
    """'carriers/size' of the concept (noise excluded) holding the most carriers."""
    ids, counts = np.unique(concepts[carriers & (concepts >= 0)], return_counts=True)
    if not len(ids):
        return "none"
    best = ids[np.argmax(counts)]
    return f"{counts.max()}/{int(np.sum(concepts == best))}"


def read_run(spec: str):
    """The run's detector context, its training frame in embedding order and the carrier mask (all False without
    a case)."""
    import pandas as pd

    from soxai.bias.runner import detector_context
    from soxai.config import load_config
    from soxai.run_dir import RunDir

    path, _, case = spec.partition(":")
    run = RunDir(path)
    cfg = load_config(run.config)
    ctx = detector_context(cfg, run)
    order = pd.read_parquet(Path(path) / "embed" / "embedding.parquet")["sample_id"]
    train = ctx.train.set_index("sample_id").loc[order].reset_index()
    carriers = np.zeros(len(train), dtype=bool)
    if case:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from mark_reach import rebuilt_truth

        rate, _, data_seed = case.partition(":")
        truth, _ = rebuilt_truth(ctx.images, train["sample_id"], train["row"], float(rate), int(data_seed or 0), path)
        carriers = (truth["glyph_y"] >= 0).to_numpy()
    return run, cfg, ctx, train, carriers


def peak_concepts(cfg, features: np.ndarray, channels: int, peaks: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Concepts of the run's vectors with the peak block between them, as channels+peaks+pooled orders the blocks,
    embedded and clustered with the run's own embed and concepts settings."""
    from soxai.concepts.cluster import cluster_per_group
    from soxai.embed.features import combine_blocks, embed_with_config, peak_block

    if cfg.embed.features == "channels+peaks+pooled":  # the run clustered these already
        x = features
    else:
        blocks = features * np.sqrt(2)  # channels+pooled: two blocks at 1/sqrt(2) each
        x = combine_blocks([blocks[:, :channels], peak_block(peaks), blocks[:, channels:]])
    _, coords = embed_with_config(x, cfg.embed, cfg.seed)
    return cluster_per_group(coords, labels, cfg.concepts.min_cluster_size, cfg.concepts.min_samples)[0]


def patch_test(ctx, acts: np.ndarray, z: np.ndarray, train, concepts: np.ndarray, pairs: int, k: int):
    """Rows (concept, class, size, carriers placeholder filled by the caller, rate, control, z) of the patch test."""
    from soxai.bias.channels import two_proportion_z

    labels = train["label"].to_numpy()
    correct = np.flatnonzero((train["pred"] == train["label"]).to_numpy())
    out = []
    for cid in sorted(set(concepts.tolist()) - {-1}):
        member = concepts == cid
        label = int(labels[member][0])
        rest = (labels == label) & ~member
        if rest.sum() < 10:
            continue
        chans = np.argsort(-(z[member].mean(0) - z[rest].mean(0)), kind="stable")[:k]
        rng = np.random.default_rng([cid, 11])
        donors = rng.choice(np.flatnonzero(member), pairs)
        controls = rng.choice(np.flatnonzero(rest), pairs)
        recipients = rng.choice(correct[labels[correct] != label], pairs)
        images = np.asarray(ctx.images[train["row"].to_numpy()[recipients]], dtype=np.float32)
        patched = np.tile(chans, (pairs, 1))
        hits = int(np.sum(ctx.layer.predict_patched(images, acts[donors], patched) == label))
        control = int(np.sum(ctx.layer.predict_patched(images, acts[controls], patched) == label))
        out.append((cid, label, int(member.sum()), hits, control))
    zs = two_proportion_z([r[3] for r in out], [r[4] for r in out], np.full(len(out), pairs))
    return out, zs


def measure(spec: str, pairs: int, k: int) -> str:
    from scipy.stats import norm

    from soxai.bias.channels import empirical_null
    from soxai.embed.relevance import spatial_peaks
    from soxai.run_dir import read_parquet

    run, cfg, ctx, train, carriers = read_run(spec)
    acts = ctx.layer.activations(np.asarray(ctx.images[train["row"].to_numpy()], dtype=np.float32))
    peaks = spatial_peaks(acts)
    z = (peaks - peaks.mean(0)) / np.where(peaks.std(0) > 0, peaks.std(0), 1.0)
    labels = train["label"].to_numpy()
    features = np.load(Path(run.root) / "embed" / "features.npy")
    if cfg.embed.features not in ("channels+pooled", "channels+peaks+pooled"):
        raise SystemExit(f"{spec}: embed.features={cfg.embed.features}; this reads channels+pooled runs")
    concepts = peak_concepts(cfg, features, acts.shape[1], peaks, labels)
    today = read_parquet(run.assignments).set_index("sample_id").loc[train["sample_id"], "concept_id"].to_numpy()
    if cfg.embed.features != "channels+pooled":
        today = np.full(len(train), -1)  # "today" is the default vector's concepts; this run has other ones
    rows, zs = patch_test(ctx, acts, z, train, concepts, pairs, k)
    centre, width = empirical_null(zs)
    p = norm.sf((zs - centre) / width)
    flagged = [(r, zi) for r, zi, pi in zip(rows, zs, p, strict=True) if pi <= 0.01 / len(rows)]
    top = int(np.argmax(zs))

    def carried(cid: int) -> str:
        member = concepts == cid
        return f"{int(np.sum(member & carriers))}/{int(member.sum())}" if carriers.any() else f"{int(member.sum())}"

    sep = "–"
    if carriers.any():
        cls = labels == labels[carriers][0]
        relevance = ctx.layer.relevance(ctx.images, train["row"].to_numpy()[cls], labels[cls])
        sep = f"{best_auc(relevance, carriers[cls]):.3f} / {best_auc(peaks[cls], carriers[cls]):.3f}"
    flags = ", ".join(f"{carried(r[0])} (z {zi:.1f})" for r, zi in flagged) or "none"
    return (f"| {spec} | {sep} | {top_concept(today, carriers) if carriers.any() else '–'} | "
            f"{top_concept(concepts, carriers) if carriers.any() else '–'} | {carried(rows[top][0])}: "
            f"{rows[top][3] / pairs:.3f} vs {rows[top][4] / pairs:.3f}, z {zs[top]:.1f} | {centre:+.1f}, {width:.1f} | "
            f"{flags} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="RUN_DIR, or RUN_DIR:RATE:DATA_SEED for a moving-mark run")
    parser.add_argument("--pairs", type=int, default=600)
    parser.add_argument("--channels", type=int, default=3)
    args = parser.parse_args()
    print("| run | best channel AUC, carriers vs class-mates: summed relevance / peak activation | carriers' concept "
          "today | carriers' concept with peaks | top concept of the patch test: members vs class-mates | run's null "
          "(centre, width) | flagged at 0.01 / concepts (carriers/size or size) |")
    print("|---|---|---|---|---|---|---|", flush=True)
    for spec in args.runs:
        print(measure(spec, args.pairs, args.channels), flush=True)


if __name__ == "__main__":
    main()
