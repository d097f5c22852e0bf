"""Runner of the report stage (one self-contained HTML file), and the views of a run it is built from.

``read_run`` loads what a person inspects — concepts, detector scores, manifest, comparison — once;
``concept_overview``, ``concept_gallery``, ``comparison_frame`` and ``summary_sentence`` turn it into
the rows, images and sentence that the HTML report, ``soxai concepts|compare`` and the notebook show,
so the three always agree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from soxai.compare.stats import format_summary  # noqa: F401  (re-exported with the comparison text)
from soxai.config import Config
from soxai.data.class_names import class_text
from soxai.errors import StageError

# The comparison's tables and sentences live in soxai.report.comparison; these names stay importable from here.
from soxai.report.comparison import (  # noqa: E402,F401
    CORRECTION_NAMES,
    comparison_frame,
    corrections_rows,
    reported_splits,
    signed_summary,
    summary_sentence,
)
from soxai.run_dir import RunDir, read_json, read_npy, read_parquet, write_text
from soxai.stage import StageRecord, fingerprint, run_stage, stale_retraining, upstream

MAX_CARDS = 40  # concepts with a full card (flagged first); the rest get a table row — keeps the file small
N_GALLERY = 8  # exemplars per card
MAX_SCATTER = 20000  # points drawn in the embedding plot; larger runs are subsampled per concept
MEAN_IMAGE_SAMPLES = 256  # members averaged for a concept's mean image


def run_report(cfg: Config, run: RunDir) -> StageRecord:
    fp = fingerprint("report", *upstream(run, "compare"))
    return run_stage(run, "report", fp, lambda: ([write_report(cfg, run)], {}))


# ---------------------------------------------------------------- reading a run


@dataclass
class RunView:
    """What there is to inspect in one run directory, read once. Missing later stages are None/empty."""

    run: RunDir
    info: dict[str, Any]
    samples: pd.DataFrame  # indexed by sample_id
    concepts: pd.DataFrame
    assignments: pd.DataFrame
    scores: pd.DataFrame
    flagged: dict[int, str]
    manifest: pd.DataFrame | None
    manifest_info: dict[str, Any] | None
    comparison: dict[str, Any] | None
    # the conflict test's concepts (bias/conflicts.parquet rows with is_conflict, by concept_id); none before it
    conflicts: pd.DataFrame = field(default_factory=lambda: _no_conflicts())
    # retraining stages whose files predate the manifest (soxai.stage.stale_retraining): their comparison is not
    # read, and the summary says why
    stale: dict[str, str] = field(default_factory=dict)
    _saliency_index: pd.DataFrame | None = field(default=None, repr=False)

    def class_name(self, label: int) -> str:
        names = self.info.get("class_names") or []
        return str(names[label]) if 0 <= label < len(names) else str(label)

    def class_text(self, label: int, is_noise: bool = False) -> str:
        """'class round' in a sentence or heading, as the reasons write it (soxai.data.class_names.class_text);
        'all classes' for the noise, which pools every class's unclustered samples."""
        return "all classes" if is_noise else class_text(label, self.info.get("class_names") or ())

    @property
    def saliency_index(self) -> pd.DataFrame:
        if self._saliency_index is None:
            from soxai.saliency.runner import read_index

            index = read_index(self.run) if self.run.saliency_index.is_file() else pd.DataFrame(
                columns=["sample_id", "shard", "offset"])
            self._saliency_index = index.set_index("sample_id")
        return self._saliency_index


def _need(path: Path, what: str) -> None:
    if not path.is_file():
        raise StageError(
            f"{what} is missing ({path}); pass a run directory printed by `soxai run`, or run "
            "`soxai run` / `soxai explain` on this one until it has concepts"
        )


def read_run(run_dir: str | Path | RunDir) -> RunView:
    """Read a run directory that has got at least as far as the concepts stage.

    Raises
    ------
    StageError
        When the directory is not a run, or its concepts stage has not run.
    """
    from soxai.bias.decide import flagged_concepts

    run = (run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)).existing()
    for path, what in ((run.data_info, "the data stage's info"), (run.samples, "the samples table"),
                       (run.concepts, "the concepts table"), (run.assignments, "the concept assignments")):
        _need(path, what)
    stale = stale_retraining(run)
    scores = read_parquet(run.bias_scores) if run.bias_scores.is_file() else pd.DataFrame(
        columns=["concept_id", "detector", "score", "is_bias", "reason"])
    return RunView(
        run=run,
        info=read_json(run.data_info),
        samples=read_parquet(run.samples).set_index("sample_id"),
        concepts=read_parquet(run.concepts),
        assignments=read_parquet(run.assignments),
        scores=scores,
        flagged=flagged_concepts(scores, _min_flags(run)) if len(scores) else {},
        conflicts=_conflicts(run),
        manifest=read_parquet(run.pruned_parquet) if run.pruned_parquet.is_file() else None,
        manifest_info=read_json(run.manifest_json) if run.manifest_json.is_file() else None,
        comparison=read_json(run.comparison) if run.comparison.is_file() and "compare" not in stale else None,
        stale=stale,
    )


def _no_conflicts() -> pd.DataFrame:
    from soxai.bias.conflicts import CONFLICT_COLUMNS

    return pd.DataFrame(columns=list(CONFLICT_COLUMNS)).set_index("concept_id")


def _conflicts(run: RunDir) -> pd.DataFrame:
    """The concepts the conflict test found (bias/conflicts.parquet rows with is_conflict; none in a run from
    before it), indexed by concept_id."""
    if not run.bias_conflicts.is_file():
        return _no_conflicts()
    table = read_parquet(run.bias_conflicts)
    return table[table["is_conflict"].astype(bool)].set_index("concept_id")


def _min_flags(run: RunDir) -> int:
    """The run's bias.min_flags (1 when the config cannot be read: any detector's flag counts)."""
    import yaml

    try:
        return int(((yaml.safe_load(run.config.read_text()) or {}).get("bias") or {}).get("min_flags", 1))
    except (OSError, yaml.YAMLError, AttributeError, TypeError, ValueError):
        return 1


# ---------------------------------------------------------------- concepts


def _label_mix(view: RunView, mix: str) -> str:
    counts = json.loads(mix) if isinstance(mix, str) else dict(mix)
    ordered = sorted(counts.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{view.class_name(int(k))} {v}" for k, v in ordered)


def concept_overview(view: RunView) -> pd.DataFrame:
    """One row per concept, flagged concepts first, then by id; noise (-1) last.

    Columns: concept_id, flagged, is_noise, class_name, class_text (how a heading names it: 'class round', 'all
    classes' for the noise), size, purity, label_mix, accuracy (of the
    baseline on the members), persistence (HDBSCAN stability), score (the highest detector score,
    higher = more suspicious), detector (whose score it is), reason (why it is flagged; else the
    top detector's reason), dropped (members the pruned manifest drops).
    """
    dropped = {}
    if view.manifest is not None and "concept_id" in view.manifest:
        gone = view.manifest[~view.manifest["keep"].astype(bool)]
        dropped = gone.groupby("concept_id").size().to_dict()
    rows = []
    for c in view.concepts.itertuples():
        cid = int(c.concept_id)
        s = view.scores[view.scores["concept_id"] == cid]
        top = s.loc[s["score"].astype(float).idxmax()] if len(s) else None
        reason = view.flagged.get(cid) or (f"{top['detector']}: {top['reason']}" if top is not None else "")
        rows.append({
            "concept_id": cid,
            "flagged": cid in view.flagged,
            "is_noise": bool(c.is_noise),
            # the noise row pools every class's unclustered samples: its label is only their most common one
            "class_name": "all classes" if c.is_noise else view.class_name(int(c.label)),
            "class_text": view.class_text(int(c.label), bool(c.is_noise)),  # for headings
            "size": int(c.size),
            "purity": float(c.label_purity),
            "label_mix": _label_mix(view, c.label_mix),
            "accuracy": float(c.accuracy),
            "persistence": float(c.persistence),
            "stability": float(getattr(c, "stability", np.nan)),
            "score": float(top["score"]) if top is not None else np.nan,
            "detector": str(top["detector"]) if top is not None else "",
            "reason": reason,
            "dropped": int(dropped.get(cid, 0)),
        })
    columns = ["concept_id", "flagged", "is_noise", "class_name", "class_text", "size", "purity", "label_mix",
               "accuracy", "persistence", "stability", "score", "detector", "reason", "dropped"]
    frame = pd.DataFrame(rows, columns=columns)
    order = np.lexsort((frame["concept_id"].to_numpy(), ~frame["flagged"].to_numpy(), frame["is_noise"].to_numpy()))
    return frame.iloc[order].reset_index(drop=True)


def concept_scores(view: RunView, concept_id: int) -> pd.DataFrame:
    """Every detector's row for one concept: detector, score, is_bias, reason."""
    rows = view.scores[view.scores["concept_id"] == concept_id]
    return rows[["detector", "score", "is_bias", "reason"]].reset_index(drop=True)


@dataclass(frozen=True)
class ConceptGallery:
    """What a concept looks like: its mean image and mean saliency, and exemplars with their maps.

    mean_image : (C, H, W); mean_map : (H, W); images : (n, C, H, W); maps : (n, H, W)
    box : (row0, col0, row1, col1) of the region a detector tested (end exclusive), or None
    """

    concept_id: int
    mean_image: np.ndarray
    mean_map: np.ndarray
    images: np.ndarray
    maps: np.ndarray
    sample_ids: list[str]
    captions: list[str]
    box: tuple[int, int, int, int] | None


def _image_ids(view: RunView, ids) -> list[str]:
    """The images' sample_ids of the maps ``ids``: a segmentation run keys its maps by a map id and names the image
    in the saliency index's ``image_id`` (soxai.segmentation.maps); elsewhere a map's id is its image's."""
    index = view.saliency_index
    if "image_id" not in index.columns:
        return [str(i) for i in ids]
    return index.loc[list(ids), "image_id"].astype(str).tolist()


def concept_gallery(view: RunView, concept_id: int, n: int = N_GALLERY) -> ConceptGallery:
    """The gallery of one concept: up to ``n`` exemplars (closest to the concept's centre; for the noise, which
    holds every class's unclustered samples, :func:`noise_exemplars`).

    Raises
    ------
    StageError
        When the run has no such concept.
    """
    from soxai.data.runner import read_images
    from soxai.saliency.runner import read_maps

    match = view.concepts[view.concepts["concept_id"] == concept_id]
    if match.empty:
        known = sorted(int(i) for i in view.concepts["concept_id"])
        raise StageError(f"no concept {concept_id} in {view.run.root.name}; known concepts: {known} "
                         "(see `soxai concepts list RUN_DIR`)")
    c = match.iloc[0]
    images = read_images(view.run)
    members = view.assignments.loc[view.assignments["concept_id"] == concept_id, "sample_id"]
    rows = np.sort(view.samples.loc[_image_ids(view, members), "row"].to_numpy()[:MEAN_IMAGE_SAMPLES])
    mean_image = np.asarray(images[rows], dtype=np.float32).mean(axis=0) if len(rows) else np.zeros(images.shape[1:])
    ids = noise_exemplars(view, n) if bool(c["is_noise"]) else [str(s) for s in list(c["exemplars"])[:n]]
    ex_rows = view.samples.loc[_image_ids(view, ids), "row"]
    ex_images = np.stack([np.asarray(images[r], dtype=np.float32) for r in ex_rows]) \
        if ids else np.zeros((0, *images.shape[1:]), dtype=np.float32)
    hw = images.shape[2:]
    index = view.saliency_index
    have = [s for s in ids if s in index.index]
    maps = np.zeros((len(ids), *hw), dtype=np.float32)
    if have:
        got = read_maps(view.run, index.loc[have].reset_index())
        for s, m in zip(have, got, strict=True):
            maps[ids.index(s)] = m
    if int(c["map_index"]) >= 0 and view.run.concept_maps.is_file():
        mean_map = np.asarray(read_npy(view.run.concept_maps)[int(c["map_index"])], dtype=np.float32)
    else:  # noise has no stored mean map: average the exemplars' maps, each scaled to max 1
        peak = np.abs(maps).reshape(len(maps), -1).max(axis=1, initial=0) if len(maps) else np.zeros(0)
        mean_map = (np.abs(maps) / np.where(peak > 0, peak, 1)[:, None, None]).mean(axis=0) if len(maps) \
            else np.zeros(hw, dtype=np.float32)
    preds = view.assignments.set_index("sample_id")["pred"] if "pred" in view.assignments else None
    captions = []
    for s in ids:
        label = view.class_name(int(view.samples.loc[_image_ids(view, [s])[0], "label"]))
        pred = f" → {view.class_name(int(preds.loc[s]))}" if preds is not None and s in preds.index else ""
        captions.append(f"{s.rsplit('-', 1)[-1]}\n{label}{pred}")
    return ConceptGallery(int(concept_id), mean_image, mean_map, ex_images, maps, ids, captions,
                          _detector_box(view, concept_id))


def noise_exemplars(view: RunView, n: int = N_GALLERY) -> list[str]:
    """Up to ``n`` unclustered samples spread over the classes: one of each class in turn (the largest class first),
    each class's nearest to the centre of its own unclustered samples in the embedding (by sample id where the run
    has no embedding). The stored exemplars are the nearest to the centre of them all, often of one class only."""
    noise = view.assignments[view.assignments["concept_id"] == -1]
    if view.run.embedding.is_file():
        emb = read_parquet(view.run.embedding).set_index("sample_id")[["u0", "u1"]]
        noise = noise.join(emb, on="sample_id")
    queues = []
    for _, part in sorted(noise.groupby("label"), key=lambda kv: (-len(kv[1]), kv[0])):
        part = part.sort_values("sample_id", kind="stable")
        if {"u0", "u1"} <= set(part.columns) and part[["u0", "u1"]].notna().all(axis=None):
            xy = part[["u0", "u1"]].to_numpy(dtype=float)
            part = part.iloc[np.argsort(np.linalg.norm(xy - xy.mean(axis=0), axis=1), kind="stable")]
        queues.append([str(s) for s in part["sample_id"]])
    return [s for turn in zip_longest(*queues) for s in turn if s is not None][:n]


def concept_figure(view: RunView, concept_id: int, n: int = N_GALLERY):
    """``concept_gallery`` drawn with captions (sample id, label → baseline prediction) and a title."""
    from soxai.report.plots import concept_gallery_figure

    g = concept_gallery(view, concept_id, n)
    c = view.concepts[view.concepts["concept_id"] == concept_id].iloc[0]
    name = "noise (concept -1)" if bool(c["is_noise"]) else f"concept {concept_id}"
    flag = " · FLAGGED" if concept_id in view.flagged else ""
    title = f"{name} · {view.class_text(int(c['label']), bool(c['is_noise']))} · {int(c['size']):,} samples{flag}"
    return concept_gallery_figure(g.mean_image, g.mean_map, g.images, g.maps, g.captions, title=title, box=g.box)


def embedding_points(view: RunView) -> tuple[np.ndarray, np.ndarray]:
    """The embedding's 2-D coordinates (n, 2) and each point's concept id (n,), -1 for noise.

    Empty arrays when the run has no embedding.
    """
    if not view.run.embedding.is_file():
        return np.zeros((0, 2)), np.zeros(0, dtype=int)
    emb = read_parquet(view.run.embedding)
    cids = view.assignments.set_index("sample_id")["concept_id"].reindex(emb["sample_id"]).fillna(-1)
    return emb[["u0", "u1"]].to_numpy(), cids.to_numpy(dtype=int)


def _detector_box(view: RunView, concept_id: int) -> tuple[int, int, int, int] | None:
    if "box" not in view.scores:
        return None
    s = view.scores[(view.scores["concept_id"] == concept_id) & view.scores["box"].notna()]
    if s.empty:
        return None
    box = s.sort_values("score", ascending=False).iloc[0]["box"]
    return tuple(int(v) for v in box) if box is not None and len(box) == 4 else None


# ---------------------------------------------------------------- comparison


def write_report(cfg: Config, run: RunDir) -> Path:
    """Render ``report/report.html`` from the run's artifacts (works on a run stopped after manifest)."""
    import jinja2

    from soxai.report.network import network_section
    from soxai.report.plots import comparison_chart, embedding_scatter

    view = read_run(run)
    overview = concept_overview(view)
    real = overview[~overview["is_noise"]]
    coords, cids = embedding_points(view)
    scatter = embedding_scatter(coords, cids, set(view.flagged), MAX_SCATTER) if len(coords) else ""
    conflicts = view.conflicts["reason"].to_dict()
    cards = _concept_cards(view, overview, conflicts)
    rest = [{"concept_id": int(c.concept_id), "label": c.class_name, "size": f"{c.size:,}",
             "accuracy": f"{c.accuracy:.3f}", "persistence": f"{c.persistence:.3f}",
             "score": "" if np.isnan(c.score) else f"{c.score:+.3f}"}
            for c in real.iloc[MAX_CARDS:].itertuples()]
    comp = view.comparison
    info = view.manifest_info or {}
    detection = (comp or {}).get("detection")
    run_info = read_json(run.run_json) if run.run_json.is_file() else {}
    env = read_json(run.env_json) if run.env_json.is_file() else {}
    template = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True
    ).get_template("report.html")
    saliency_eval = _saliency_eval(run)
    html = template.render(
        network=network_section(cfg, run),
        saliency_eval=saliency_eval,
        saliency_counts=saliency_counts(run),
        run_id=run_info.get("run_id", run.root.name),
        run_info=run_info,
        stages={k: v.get("seconds") for k, v in run_info.get("stages", {}).items()},
        source=view.info.get("source", "?"),
        n_train=f"{int((view.samples['split'] == 'train').sum()):,}",
        n_concepts=len(real),
        noise_share=f"{float((view.assignments['concept_id'] < 0).mean()):.1%}" if len(view.assignments) else "–",
        flagged=sorted(view.flagged),
        conflicts=sorted(conflicts),
        unclustered=[(k, view.class_text(int(k)), why) for k, why in
                     sorted((info.get("flagged_unclustered") or {}).items(), key=lambda kv: int(kv[0]))],
        summary=summary_sentence(view),
        n_dropped=f"{info.get('n_dropped', 0):,}",
        share_dropped=f"{info['share_dropped']:.1%}" if info else "–",
        policy=info.get("policy", ""),
        detection=_detection(detection),
        clean_change=signed_summary((comp or {}).get("cost", {}).get("clean_test_accuracy_change")),
        scatter=scatter,
        comparison=comp,
        chart=comparison_chart(comp) if comp else "",
        comparison_rows=comparison_frame(comp).to_dict("records") if comp else [],
        corrections=corrections_rows(comp),
        claims=sorted((comp or {}).get("claims", {}).items()),
        seeds=(comp or {}).get("seeds", []),
        n_train_variants=(comp or {}).get("n_train", {}),
        cards=cards,
        rest=rest,
        max_cards=MAX_CARDS,
        env=env,
        config=run.config.read_text() if run.config.is_file() else cfg.to_yaml(),
    )
    return write_text(run.report_html, html)


def _concept_cards(view: RunView, overview: pd.DataFrame, conflicts: dict[int, str]) -> list[dict[str, Any]]:
    """One card per concept, noise last: the first MAX_CARDS real ones (flagged first), then the conflicts."""
    from soxai.report.plots import gallery_tiles, png_data_uri

    real = overview[~overview["is_noise"]]
    cards = []
    # past the cap only the conflicts get a card (the flagged come first and are within it)
    if len(real):  # (an empty overview has no columns)
        real = real[(np.arange(len(real)) < MAX_CARDS) | real["concept_id"].isin(list(conflicts))]
    carded = pd.concat([real, overview[overview["is_noise"]]])
    for c in carded.itertuples():
        gallery = concept_gallery(view, int(c.concept_id))
        # tiles at one pixel per pixel, enlarged by the browser (CSS pixelated): a quarter of the bytes
        tiles = gallery_tiles(gallery.mean_image, gallery.mean_map, gallery.images, gallery.maps, scale=1, gap=1,
                              box=gallery.box)
        zoom = max(1, min(4, round(64 / max(gallery.mean_map.shape[0], 1))))
        cards.append({
            "concept_id": int(c.concept_id), "flagged": bool(c.flagged), "is_noise": bool(c.is_noise),
            "label": c.class_text, "size": f"{c.size:,}", "label_mix": c.label_mix, "purity": f"{c.purity:.0%}",
            "accuracy": f"{c.accuracy:.3f}", "persistence": f"{c.persistence:.3f}", "dropped": f"{c.dropped:,}",
            "reason": view.flagged.get(int(c.concept_id), ""),
            "conflict": conflicts.get(int(c.concept_id), ""),
            "gallery": png_data_uri(tiles), "gallery_width": tiles.shape[1] * zoom,
            "gallery_height": tiles.shape[0] * zoom,
            "n_exemplars": len(gallery.sample_ids), "has_box": gallery.box is not None,
            "scores": [
                {"detector": s.detector, "score": f"{s.score:+.3f}", "is_bias": bool(s.is_bias), "reason": s.reason}
                for s in concept_scores(view, int(c.concept_id)).itertuples()
            ],
        })
    return cards


def _detection(detection: dict[str, Any] | None) -> dict[str, str] | None:
    if not detection:
        return None

    def num(x: Any) -> str:
        return "–" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.3f}"

    out = {"precision": num(detection.get("precision")), "recall": num(detection.get("recall")),
           "n_dropped": f"{detection.get('n_dropped', 0):,}", "n_planted": f"{detection.get('n_planted', 0):,}"}
    share = detection.get("artifact_concepts_flagged_share")
    out["concepts_flagged"] = "–" if share is None or np.isnan(share) else f"{share:.0%}"
    return out


def saliency_counts(run: RunDir) -> str | None:
    """The saliency stage's map counts in one line, or None when the stage has not completed.

    'saliency: 1,200 maps (input_x_gradient), 0 all-zero, 3 constant, 0 non-finite', from the metrics
    in ``saliency/stage.json``. A run made before constant maps were counted has no 'constant' part.
    """
    from soxai.stage import read_stage

    metrics = (read_stage(run, "saliency") or {}).get("metrics") or {}
    if "n_maps" not in metrics:
        return None
    method = f" ({metrics['method']})" if metrics.get("method") else ""
    parts = [f"{int(metrics[key]):,} {name}" for key, name in
             (("all_zero", "all-zero"), ("constant", "constant"), ("non_finite", "non-finite")) if key in metrics]
    return ", ".join([f"saliency: {int(metrics['n_maps']):,} maps{method}", *parts])


def _saliency_eval(run: RunDir) -> dict | None:
    """The table `soxai evaluate-saliency` wrote, as rows of strings, or None when it has not run."""
    from soxai.saliency.evaluation import METRIC_DIRECTIONS, eval_paths

    paths = eval_paths(run)
    if not paths.table_parquet.is_file():
        return None
    table = read_parquet(paths.table_parquet)
    columns = [c for c in table.columns if c != "method"]
    arrows = {c: {"higher": " ↑", "lower": " ↓"}.get(str(METRIC_DIRECTIONS.get(c, "")), "") for c in columns}
    rows = [
        [str(r["method"])] + [f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in columns]
        for _, r in table.iterrows()
    ]
    return {"columns": ["method"] + [c + arrows[c] for c in columns], "rows": rows}
