"""The segmentation run's bias stage: does pasting a concept's distinct pixels turn other cells into its class?

For each concept of class ``c`` (a shape index; segmentation class ``c + 1``), the pixels where the concept's
mean map most exceeds its class-mates' (:func:`soxai.bias.pixels.distinct_pixels`, as many as a square of side
``bias.transplant.region_frac`` of the image) are pasted from the concept's members into training images of the
other classes. The effect on a recipient is the share of its cell's pixels the baseline then labels ``c + 1``,
minus that share before. The control pastes the same pixels from class-mates outside the concept. A concept
whose effect exceeds the control's by ``bias.pixel_transplant.threshold`` with a one-sided Wilcoxon signed-rank
p-value at most ``bias.pixel_transplant.max_p_value`` (paired per recipient) is flagged: its members carry
something that is not the class and that the network segments the class by.

The same test runs the other way round, for a network that needs the shortcut *and* the shape: the concept's
members get those pixels from class-mates outside the concept, and the effect is the share of the member's cell
that loses the class; the control does the same to class-mates outside the concept. Either direction can flag.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from soxai.config import Config
from soxai.data.runner import read_images
from soxai.run_dir import RunDir, read_npy, read_parquet, write_parquet
from soxai.stage import StageRecord, fingerprint, run_stage, upstream

SCORE_COLUMNS = ("concept_id", "detector", "score", "is_bias", "reason", "p_value", "effect", "control_effect")
DETECTOR = "segmentation_transplant"


def class_share(pred_masks: np.ndarray, cells: np.ndarray, seg_class: int) -> np.ndarray:
    """Per image, the share of its cell's pixels (``cells``, bool (n, H, W)) predicted as ``seg_class``."""
    hit = ((pred_masks == seg_class) & cells).reshape(len(cells), -1).sum(axis=1)
    return hit / np.maximum(cells.reshape(len(cells), -1).sum(axis=1), 1)


def transplant_effect(predict, recipients: np.ndarray, cells: np.ndarray, donors: np.ndarray, pixels: np.ndarray,
                      seg_class: int) -> np.ndarray:
    """Per recipient: the share of its cell labelled ``seg_class`` after its ``pixels`` came from its donor, minus
    before. ``predict`` maps images (n, C, H, W) to masks (n, H, W); donors are paired with recipients in order."""
    from soxai.bias.pixels import paste_pixels

    before = class_share(predict(recipients), cells, seg_class)
    after = class_share(predict(paste_pixels(recipients, donors, pixels)), cells, seg_class)
    return after - before


def _paired(effect: np.ndarray, control: np.ndarray) -> np.ndarray:
    """Differences of the two arms, pairing recipients in order (the shorter arm's length)."""
    n = min(len(effect), len(control))
    return effect[:n] - control[:n]


def _one_sided_p(diff: np.ndarray) -> float:
    from scipy.stats import wilcoxon

    if not np.any(diff != 0):
        return 1.0
    return float(wilcoxon(diff, alternative="greater", zero_method="zsplit").pvalue)


def run_segmentation_bias(cfg: Config, run: RunDir) -> StageRecord:
    """Score every concept with the transplant above; write ``bias/scores.parquet``."""
    from soxai.bias.pixels import distinct_pixels
    from soxai.device import resolve_device
    from soxai.segmentation.stages import LOGIC_VERSION, load_segmentation_baseline
    from soxai.segmentation.train import predict_masks

    bcfg = cfg.bias
    fp = fingerprint("bias", cfg.section_hash("seed", "bias"), f"segmentation-v{LOGIC_VERSION}",
                     *upstream(run, "concepts"))

    def body():
        rng = np.random.default_rng(cfg.seed)
        maps = train_maps(run)
        concepts = read_parquet(run.concepts)
        concepts = concepts[~concepts["is_noise"]]
        mean_maps = read_npy(run.concept_maps)
        images, labels_px = read_images(run), read_npy(run.label_masks)
        network = load_segmentation_baseline(cfg, run)
        device = resolve_device(cfg.train.device)

        def predict(x: np.ndarray) -> np.ndarray:
            return predict_masks(network, x, np.arange(len(x)), device)

        side = images.shape[-1]
        k = max(1, round((bcfg.transplant.region_frac * side) ** 2))
        n_pairs = bcfg.pixel_transplant.n_pairs
        rows = []
        for _, concept in concepts.iterrows():
            cid, cls = int(concept["concept_id"]), int(concept["label"])
            members = maps.loc[maps["concept_id"] == cid, "row"].to_numpy()
            mates = maps.loc[(maps["label"] == cls) & (maps["concept_id"] != cid), "row"].to_numpy()
            others = np.setdiff1d(maps["row"].unique(), maps.loc[maps["label"] == cls, "row"].to_numpy())
            if not len(members) or not len(mates) or not len(others):
                rows.append(_row(cid, 0.0, False, "too few members, class-mates or other-class images", 1.0, 0, 0))
                continue
            same = concepts[(concepts["label"] == cls) & (concepts["concept_id"] != cid)]
            mates_map = (mean_maps[same["map_index"].astype(int).to_numpy()].mean(axis=0) if len(same)
                         else 0 * mean_maps[0])
            pixels = distinct_pixels(mean_maps[int(concept["map_index"])], mates_map, k)
            arms = _arms(predict, images, labels_px, pixels, cls + 1, members, mates, others, n_pairs, rng)
            tests = []
            for (effect, ctrl), what in zip(arms, _WHAT, strict=True):
                score, p = float(effect.mean() - ctrl.mean()), _one_sided_p(_paired(effect, ctrl))
                reason = (f"its {k} distinct pixels, {what.format(effect.mean(), cls + 1)} (control: "
                          f"{ctrl.mean():.0%}; p={p:.1e})")
                tests.append((score, p, reason, float(effect.mean()), float(ctrl.mean())))
            passed = [t for t in tests if t[0] >= bcfg.pixel_transplant.threshold
                      and t[1] <= bcfg.pixel_transplant.max_p_value]
            score, p, reason, effect_mean, ctrl_mean = max(passed or tests, key=lambda t: t[0])
            flag = bool(passed)
            rows.append(_row(cid, score, flag, reason, p, effect_mean, ctrl_mean))
        scores = pd.DataFrame(rows, columns=list(SCORE_COLUMNS))
        flagged = scores.loc[scores["is_bias"], "concept_id"].astype(int).tolist()
        return [write_parquet(run.bias_scores, scores)], {"flagged": flagged, "n_concepts": int(len(scores))}

    return run_stage(run, "bias", fp, body)


_WHAT = ("pasted into other classes' cells, label {:.0%} of their pixels as class {}",
         "replaced by class-mates' pixels, take class {1} from {0:.0%} of its members' cell pixels")


def _arms(predict, images, labels_px, pixels: np.ndarray, seg_class: int, members: np.ndarray, mates: np.ndarray,
          others: np.ndarray, n_pairs: int, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """(effect, control) per recipient of the two directions: the concept's pixels pasted into other classes'
    images (control: class-mates' pixels), and class-mates' pixels pasted into the members (control: into other
    class-mates), the second as the share of the cell that loses ``seg_class``."""

    def effect_of(recipients: np.ndarray, donors: np.ndarray, sign: int) -> np.ndarray:
        truth = np.asarray(labels_px[recipients])
        cells = truth > 0 if sign > 0 else truth == seg_class  # recipients' cells; members' pixels of the class
        return sign * transplant_effect(predict, np.asarray(images[recipients], dtype=np.float32), cells,
                                        np.asarray(images[donors]), pixels, seg_class)

    recipients = np.sort(rng.choice(others, size=min(n_pairs, len(others)), replace=False))
    added = (effect_of(recipients, rng.choice(members, size=len(recipients)), 1),
             effect_of(recipients, rng.choice(mates, size=len(recipients)), 1))
    own = np.sort(rng.choice(members, size=min(n_pairs, len(members)), replace=False))
    kin = np.sort(rng.choice(mates, size=min(n_pairs, len(mates)), replace=False))
    removed = (effect_of(own, rng.choice(mates, size=len(own)), -1),
               effect_of(kin, rng.choice(mates, size=len(kin)), -1))
    return [added, removed]


def train_maps(run: RunDir) -> pd.DataFrame:
    """The training maps with their concept: ``sample_id`` (map id), ``image_id``, ``label`` (the explained class's
    shape index), ``row`` (the image's row) and ``concept_id`` (-1 noise or unassigned)."""
    from soxai.data.runner import read_samples
    from soxai.saliency.runner import read_index

    index = read_index(run)
    index = index.loc[index["split"] == "train", ["sample_id", "image_id", "label"]]
    rows = read_samples(run)[["sample_id", "row"]].rename(columns={"sample_id": "image_id"})
    maps = index.merge(rows, on="image_id", how="left", validate="many_to_one").merge(
        read_parquet(run.assignments)[["sample_id", "concept_id"]], on="sample_id", how="left",
        validate="one_to_one")
    maps["concept_id"] = maps["concept_id"].fillna(-1).astype(np.int64)
    return maps


def _row(cid: int, score: float, flag: bool, reason: str, p: float, effect: float, control: float) -> dict:
    return {"concept_id": cid, "detector": DETECTOR, "score": score, "is_bias": bool(flag), "reason": reason,
            "p_value": p, "effect": effect, "control_effect": control}


def run_segmentation_manifest(cfg: Config, run: RunDir) -> StageRecord:
    """Drop the training images a flagged concept holds a map of; write the pruned manifest (one row per image)."""
    from soxai.compare.stats import detection_scores
    from soxai.data.runner import read_samples
    from soxai.errors import StageError
    from soxai.run_dir import write_csv, write_json
    from soxai.segmentation.maps import flagged_images
    from soxai.segmentation.stages import LOGIC_VERSION

    fp = fingerprint("manifest", cfg.section_hash("manifest"), f"segmentation-v{LOGIC_VERSION}",
                     *upstream(run, "bias"))

    def body():
        samples = read_samples(run)
        scores = read_parquet(run.bias_scores)
        flagged = sorted(scores.loc[scores["is_bias"], "concept_id"].astype(int).unique().tolist())
        per_image = flagged_images(train_maps(run), flagged).rename(columns={"image_id": "sample_id"})
        train = samples[samples["split"] == "train"].merge(per_image, on="sample_id", how="left",
                                                           validate="one_to_one")
        dropped = train["dropped"].fillna(False).to_numpy(dtype=bool)
        labels = train["label"].to_numpy()
        for c in np.unique(labels):
            share = dropped[labels == c].mean()
            if share > cfg.manifest.max_class_drop:
                raise StageError(
                    f"the flagged concepts {flagged} hold maps of {share:.0%} of class {int(c)}'s training images, "
                    f"more than manifest.max_class_drop={cfg.manifest.max_class_drop}; raise "
                    "manifest.max_class_drop or check the flags (bias/scores.parquet)")
        table = pd.DataFrame({  # the classification manifest's columns, so soxai retrain --manifest reads it
            "sample_id": train["sample_id"].to_numpy(), "split": "train", "label": labels,
            "row": train["row"].to_numpy(), "keep": ~dropped,
            "concept_id": train["concept_id"].fillna(-1).astype(int).to_numpy(),
            "n_maps": train["n_maps"].fillna(0).astype(int).to_numpy(),
            "reason": np.where(dropped, "a flagged concept holds one of its maps", ""),
        })
        n_drop = int(dropped.sum())
        info = {"policy": "drop_flagged", "task": "segmentation", "flagged_concepts": [str(c) for c in flagged],
                "n_train": int(len(table)), "n_dropped": n_drop, "share_dropped": n_drop / max(len(table), 1)}
        if "group" in train:
            info["detection"] = detection_scores(dropped, (train["group"] == "artifact").to_numpy())
        out = [write_parquet(run.pruned_parquet, table), write_csv(run.pruned_csv, table),
               write_json(run.manifest_json, info)]
        return out, {k: info[k] for k in ("n_dropped", "share_dropped", "flagged_concepts")}

    return run_stage(run, "manifest", fp, body)
