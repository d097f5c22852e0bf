"""Terminal views: ``soxai concepts list|show`` and ``soxai compare``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from soxai.compare.stats import format_summary
from soxai.errors import StageError
from soxai.run_dir import RunDir, read_json, read_npy, read_parquet


def _need(path: Path, what: str) -> None:
    if not path.is_file():
        raise StageError(f"{what} is missing ({path}); run `soxai run` or `soxai explain` on this run directory")


def concepts_table(run_dir: str | Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from soxai.bias.decide import flagged_concepts

    run = RunDir(run_dir)
    _need(run.concepts, "the concepts table")
    concepts = read_parquet(run.concepts)
    scores = read_parquet(run.bias_scores) if run.bias_scores.is_file() else None
    flagged = flagged_concepts(scores) if scores is not None and len(scores) else {}
    table = Table(title=f"concepts of {run.root.name}")
    for col in ("id", "class", "size", "purity", "accuracy", "persistence", "best score", "flagged"):
        table.add_column(col, justify="right" if col not in ("flagged",) else "left")
    for c in concepts.sort_values("concept_id").itertuples():
        best = ""
        if scores is not None and not c.is_noise:
            s = scores[scores["concept_id"] == c.concept_id]
            best = f"{s['score'].max():.2f}" if len(s) else ""
        table.add_row(str(c.concept_id) + (" (noise)" if c.is_noise else ""), str(c.label), str(c.size),
                      f"{c.label_purity:.2f}", f"{c.accuracy:.3f}", f"{c.persistence:.3f}", best,
                      "[red]yes[/red]" if c.concept_id in flagged else "")
    Console().print(table)


def concept_detail(run_dir: str | Path, concept_id: int) -> Path:
    """Print one concept's numbers and reasons; write its gallery to report/concept-<id>.png."""
    from rich.console import Console

    from soxai.data.runner import read_images, read_samples
    from soxai.report.plots import concept_strip

    run = RunDir(run_dir)
    _need(run.concepts, "the concepts table")
    concepts = read_parquet(run.concepts)
    match = concepts[concepts["concept_id"] == concept_id]
    if match.empty:
        raise StageError(f"no concept {concept_id} in {run.root.name}; known: {sorted(concepts['concept_id'])}")
    c = match.iloc[0]
    console = Console()
    console.print(f"[bold]concept {concept_id}[/bold]: class {c['label']}, {c['size']} samples, "
                  f"label mix {c['label_mix']}, accuracy {c['accuracy']:.3f}, persistence {c['persistence']:.3f}")
    if run.bias_scores.is_file():
        scores = read_parquet(run.bias_scores)
        for s in scores[scores["concept_id"] == concept_id].itertuples():
            console.print(f"  {s.detector}: score {s.score:.3f}, flagged {bool(s.is_bias)} — {s.reason}")
    console.print("  exemplars: " + ", ".join(list(c["exemplars"])[:8]))
    samples = read_samples(run).set_index("sample_id")
    images = read_images(run)
    rows = samples.loc[list(c["exemplars"])[:8], "row"].to_numpy()
    exemplars = [np.asarray(images[r]) for r in rows]
    mean_map = read_npy(run.concept_maps)[int(c["map_index"])] if c["map_index"] >= 0 else np.zeros(images.shape[2:])
    png = run.report_dir / f"concept-{concept_id}.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    import base64

    from soxai.run_dir import write_bytes

    write_bytes(png, base64.b64decode(concept_strip(np.mean(exemplars, axis=0), mean_map, exemplars)))
    console.print(f"  gallery: {png}")
    return png


def comparison_table(run_dirs: list[Path]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="comparison (accuracy, mean [95% CI] over seeds)")
    for col in ("run", "variant", "split", "accuracy", "worst-group", "gain vs baseline"):
        table.add_column(col)
    for d in run_dirs:
        run = RunDir(d)
        _need(run.comparison, "the comparison")
        comp = read_json(run.comparison)
        for v, sp in comp["variants"].items():
            for s, ms in sp.items():
                gain = comp["gain_over_baseline"].get(v, {}).get(s, {}).get("accuracy")
                table.add_row(run.root.name, v, s, format_summary(ms.get("accuracy")),
                              format_summary(ms.get("worst_group_accuracy")), format_summary(gain))
    Console().print(table)

