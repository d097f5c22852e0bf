"""A run's headline numbers as markdown and its concepts as table rows, for dashboards (Prefect's UI).

Plain text and dicts only: the flows hand them to Prefect's artifacts; the library never imports Prefect.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from soxai.run_dir import RunDir


def run_summary_markdown(run_dir: str | Path | RunDir) -> str:
    """Markdown: concepts found, concepts flagged and why, samples dropped, gain with its 95% interval,
    and where the HTML report is. Works on a run that has got at least as far as the concepts stage."""
    from soxai.compare.stats import MIN_SEEDS_FOR_INTERVAL
    from soxai.report.comparison import reported_splits, signed_summary, summary_sentence
    from soxai.report.runner import read_run

    view = read_run(run_dir)
    run = view.run
    real = view.concepts[~view.concepts["is_noise"].astype(bool)]
    noise = view.concepts[view.concepts["is_noise"].astype(bool)]
    lines = [f"# soxai run `{run.root.name}`", "", summary_sentence(view), "",
             "| | |", "|---|---|",
             f"| concepts found | {len(real)} (noise: {int(noise['size'].sum()) if len(noise) else 0} samples) |",
             f"| concepts flagged | {len(view.flagged)} |"]
    info = view.manifest_info
    if info:
        lines.append(f"| samples dropped | {info['n_dropped']:,} of {info['n_train']:,} "
                     f"({info['share_dropped']:.1%}) |")
    comp = view.comparison
    corrected = [v for v in ("pruned", "reweight", "augment") if v in (comp or {}).get("gain_over_baseline", {})]
    if comp and corrected:
        for variant in corrected:
            gains = comp["gain_over_baseline"][variant]
            for split in reported_splits(comp):
                g = gains.get(split, {})
                gain = signed_summary(g.get("accuracy"))
                lines.append(f"| gain on {split} ({variant} − baseline, accuracy) | {gain} |")
                if g.get("worst_group_accuracy"):
                    lines.append(f"| gain on {split} ({variant} − baseline, worst-group accuracy) | "
                                 f"{signed_summary(g.get('worst_group_accuracy'))} |")
        n_seeds = len(comp.get("seeds", []))
        how = "mean [95% CI]" if n_seeds >= MIN_SEEDS_FOR_INTERVAL else \
            f"mean; no interval below {MIN_SEEDS_FOR_INTERVAL} seeds"
        lines.append(f"| seeds | {n_seeds} ({how}) |")
    else:
        lines.append("| gain | not retrained yet |")
    if view.flagged:
        lines += ["", "## Flagged concepts", ""]
        lines += [f"- **concept {cid}**: {why}" for cid, why in sorted(view.flagged.items())]
    report = run.report_html
    lines += ["", "## Report", "",
              f"[{report}]({report.as_uri()})" if report.is_file() else "no HTML report yet (`soxai report RUN_DIR`)",
              "", f"run directory: `{run.root}`"]
    return "\n".join(lines) + "\n"


def concept_table_rows(run_dir: str | Path | RunDir) -> list[dict[str, Any]]:
    """One row per concept (flagged first, noise last) with JSON-safe values."""
    from soxai.report.runner import concept_overview, read_run

    frame = concept_overview(read_run(run_dir))
    rows = []
    for row in frame.to_dict(orient="records"):
        rows.append({k: (None if isinstance(v, float) and math.isnan(v) else
                         round(v, 4) if isinstance(v, float) else v.item() if hasattr(v, "item") else v)
                     for k, v in row.items()})
    return rows
