"""Runner of the report stage: one self-contained HTML file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from soxai.compare.stats import format_summary
from soxai.config import Config
from soxai.run_dir import RunDir, read_json, read_npy, read_parquet, write_text
from soxai.stage import StageRecord, fingerprint, run_stage, upstream

MAX_CARDS = 60  # galleries stay readable (and the file small) on large runs


def run_report(cfg: Config, run: RunDir) -> StageRecord:
    fp = fingerprint("report", *upstream(run, "compare"))
    return run_stage(run, "report", fp, lambda: ([write_report(cfg, run)], {}))



def write_report(cfg: Config, run: RunDir) -> Path:
    """Render ``report/report.html`` from the run's artifacts (works on a run stopped after manifest)."""
    import jinja2

    from soxai.bias.decide import flagged_concepts
    from soxai.data.runner import read_images, read_info, read_samples
    from soxai.report.plots import comparison_chart, concept_strip, embedding_scatter

    info = read_info(run)
    samples = read_samples(run).set_index("sample_id")
    images = read_images(run)
    emb = read_parquet(run.embedding)
    assign = read_parquet(run.assignments).set_index("sample_id").loc[emb["sample_id"]]
    concepts = read_parquet(run.concepts)
    scores = read_parquet(run.bias_scores)
    flagged = flagged_concepts(scores) if len(scores) else {}
    maps = read_npy(run.concept_maps)
    manifest = read_json(run.manifest_json)
    comparison = read_json(run.comparison) if run.comparison.is_file() else None
    cards = []
    real = concepts[~concepts["is_noise"]].sort_values(["is_noise", "concept_id"])
    for _, c in real.head(MAX_CARDS).iterrows():
        cid = int(c["concept_id"])
        member_rows = samples.loc[assign.index[assign["concept_id"] == cid], "row"].to_numpy()
        mean_image = np.asarray(images[np.sort(member_rows[:256])], dtype=np.float32).mean(axis=0)
        ex_rows = samples.loc[list(c["exemplars"])[:8], "row"].to_numpy()
        cards.append({
            "concept_id": cid, "flagged": cid in flagged, "label": info["class_names"][int(c["label"])],
            "size": int(c["size"]), "label_mix": c["label_mix"], "accuracy": f"{c['accuracy']:.3f}",
            "persistence": f"{c['persistence']:.3f}",
            "strip": concept_strip(mean_image, maps[int(c["map_index"])], [images[r] for r in ex_rows]),
            "scores": [
                {"detector": s.detector, "score": f"{s.score:.3f}", "is_bias": bool(s.is_bias), "reason": s.reason}
                for s in scores[scores["concept_id"] == cid].itertuples()
            ],
        })
    rows = []
    if comparison:
        for v, sp in comparison["variants"].items():
            for s, ms in sp.items():
                gain = comparison["gain_over_baseline"].get(v, {}).get(s, {}).get("accuracy")
                rows.append({"variant": v, "split": s, "acc": format_summary(ms.get("accuracy")),
                             "wga": format_summary(ms.get("worst_group_accuracy")), "gain": format_summary(gain)})
        for s, g in comparison.get("pruned_over_random_control", {}).items():
            rows.append({"variant": "pruned − random_control", "split": s, "acc": "", "wga": "",
                         "gain": format_summary(g.get("accuracy"))})
    detection = (comparison or {}).get("detection")
    env = Path(run.env_json).read_text() if run.env_json.is_file() else ""
    template = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True
    ).get_template("report.html")
    html = template.render(
        run_id=run.root.name,
        status=(read_json(run.run_json) if run.run_json.is_file() else {}).get("status", "?"),
        source=info["source"],
        n_train=manifest["n_train"],
        n_concepts=len(real),
        noise_share=f"{float((assign['concept_id'] < 0).mean()):.1%}",
        flagged=sorted(flagged),
        n_dropped=manifest["n_dropped"],
        share_dropped=f"{manifest['share_dropped']:.1%}",
        detection={k: f"{detection[k]:.3f}" for k in ("precision", "recall")} if detection else None,
        scatter=embedding_scatter(emb, assign["concept_id"].to_numpy(), set(flagged)),
        comparison=comparison,
        chart=comparison_chart(comparison) if comparison else "",
        comparison_rows=rows,
        cards=cards,
        env=env,
        config=json.dumps(cfg.model_dump(mode="json"), indent=1),
    )
    return write_text(run.report_html, html)
