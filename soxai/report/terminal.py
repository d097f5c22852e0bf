"""Terminal views: ``soxai concepts list|show`` and ``soxai compare``.

Tables fit an 80-column terminal: long reasons are cut with an ellipsis, runs are numbered, the
intervals are written as mean±half-width (Student-t intervals are symmetric). The full text is
one command away (``soxai concepts show``) and in the HTML report.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from soxai.errors import StageError
from soxai.run_dir import RunDir, check_output_path, read_json, write_bytes
from soxai.stage import stale_retraining

FLAG = "⚑"


def _console(console):
    if console is not None:
        return console
    from rich.console import Console

    return Console()


def _pm(summary: dict[str, Any] | None, signed: bool = False) -> str:
    """'0.806±0.080' (mean ± half the 95% interval), '0.806' alone below 3 seeds (no interval: the caption
    says so), '–' when missing."""
    from soxai.compare.stats import interval

    if not summary or summary.get("mean") is None or not math.isfinite(summary["mean"]):
        return "–"
    mean = f"{summary['mean']:+.3f}" if signed else f"{summary['mean']:.3f}"
    ci = interval(summary)
    return mean if ci is None else f"{mean}±{(ci[1] - ci[0]) / 2:.3f}"


def _table(title: str, caption: str = "", gap: int = 2):
    """A borderless table whose columns are ``gap`` spaces apart (1 or 2)."""
    from rich import box
    from rich.table import Table

    return Table(title=title, caption=caption, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
                 padding=(0, gap - 1), title_justify="left", caption_justify="left", show_edge=False)


def concepts_table(run_dir: str | Path, console=None) -> pd.DataFrame:
    """Print the concepts of a run as a table, flagged first; return the rows (``concept_overview``).

    Parameters
    ----------
    run_dir : a run directory that got as far as the concepts stage
    console : a ``rich.console.Console`` to print to (default: the terminal)
    """
    from rich.cells import cell_len
    from rich.text import Text

    from soxai.report.runner import concept_overview, read_run

    view = read_run(run_dir)
    rows = concept_overview(view)
    n_flagged = int(rows["flagged"].sum())
    table = _table(
        f"concepts of {view.run.root.name}: {int((~rows['is_noise']).sum())} concepts, {n_flagged} flagged",
        f"{FLAG} flagged (its samples are dropped from the manifest) · acc: the baseline's accuracy on the members "
        "· stab: HDBSCAN persistence · score: highest detector score, higher = more suspicious · "
        "`soxai concepts show RUN_DIR ID` prints the full reason and writes a gallery",
    )
    cells = [
        [
            FLAG if r.flagged else "",
            "noise" if r.is_noise else str(r.concept_id),
            Text(r.class_name if len(r.class_name) <= 12 else r.class_name[:11] + "…"),  # a name is not markup
            f"{r.size:,}",
            f"{r.accuracy:.3f}",
            "–" if r.is_noise else f"{r.persistence:.2f}",
            "" if np.isnan(r.score) else f"{r.score:+.2f}",
            f"{r.dropped:,}" if r.dropped else "",
        ]
        for r in rows.itertuples()
    ]
    headers = ["", "id", "class", "size", "acc", "stab", "score", "drop"]
    console = _console(console)
    # the reason gets what is left of the terminal's width, cut with an ellipsis: one line per concept
    used = sum(max([cell_len(h)] + [cell_len(str(row[i])) for row in cells]) for i, h in enumerate(headers))
    room = console.width - used - 2 * len(headers)
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i in (0, 2) else "right", no_wrap=True,
                         style="bold red" if i == 0 else None)
    if room >= 12:
        table.add_column("reason", no_wrap=True, width=room)
    for row, r in zip(cells, rows.itertuples(), strict=True):
        reason = Text(r.reason, style="red" if r.flagged else "dim")
        reason.truncate(room, overflow="ellipsis")
        table.add_row(*row, *([reason] if room >= 12 else []))
    console.print(table)
    return rows


def concept_detail(run_dir: str | Path, concept_id: int, console=None, out: str | Path | None = None) -> Path:
    """Print one concept's numbers, every detector's score and reason; write its gallery PNG.

    Parameters
    ----------
    run_dir : a run directory that got as far as the concepts stage
    concept_id : the concept (-1 = noise)
    out : where to write the gallery; default ``gallery/concept-<id>.png`` in the run directory (a folder no stage
        owns: nothing outside a stage writes into a stage's folder, ``soxai.run_dir.check_output_path``)

    Returns
    -------
    The path of the gallery PNG: the mean image and mean saliency, then exemplars with their saliency.
    """
    from rich.markup import escape
    from rich.table import Table

    from soxai.report.plots import figure_png
    from soxai.report.runner import (
        N_GALLERY,
        concept_figure,
        concept_overview,
        concept_scores,
        noise_exemplars,
        read_run,
    )

    console = _console(console)
    view = read_run(run_dir)
    overview = concept_overview(view)
    match = overview[overview["concept_id"] == concept_id]
    if match.empty:
        raise StageError(f"no concept {concept_id} in {view.run.root.name}; known concepts: "
                         f"{sorted(int(i) for i in overview['concept_id'])} (see `soxai concepts list RUN_DIR`)")
    c = match.iloc[0]
    name = "noise (concept -1)" if c["is_noise"] else f"concept {concept_id}"
    flag = f" · [bold red]{FLAG} flagged: {c['dropped']:,} samples dropped[/]" if c["flagged"] else " · not flagged"
    # the data's class names and the reasons that quote them are text, not rich markup ('[wild]' stays as written)
    where = "the unclustered samples of every class" if c["is_noise"] else escape(c["class_text"])
    console.print(f"[bold]{name}[/bold] · {where} · {c['size']:,} samples{flag}")
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    facts.add_row("label mix", f"{escape(c['label_mix'])} (purity {c['purity']:.0%})")
    facts.add_row("accuracy", f"{c['accuracy']:.3f} (the baseline's, on the members)")
    facts.add_row("persistence", f"{c['persistence']:.3f} (HDBSCAN stability; higher = more distinct)")
    stability = c.get("stability")
    if stability is not None and stability == stability:  # NaN when resampling was off
        facts.add_row("resampling", f"{c['stability']:.2f} (mean Jaccard with its best match when HDBSCAN is re-fitted "
                                    "on subsamples; 1 = always comes back)")
    if c["flagged"]:
        facts.add_row("why flagged", escape(view.flagged[int(concept_id)]))
    console.print(facts)
    scores = concept_scores(view, int(concept_id))
    if len(scores):
        table = _table("detectors (score: higher = more suspicious)")
        table.add_column("detector", no_wrap=True)
        table.add_column("score", justify="right", no_wrap=True)
        table.add_column("flag", no_wrap=True)
        table.add_column("reason", ratio=1)
        for s in scores.itertuples():
            table.add_row(s.detector, f"{s.score:+.3f}", "[bold red]yes[/]" if s.is_bias else "no", escape(s.reason))
        console.print(table)
    if concept_id < 0:
        console.print("exemplars (one of each class in turn, largest first): "
                      + ", ".join(noise_exemplars(view, N_GALLERY)))
    else:
        exemplars = [str(s) for s in view.concepts.set_index("concept_id").loc[concept_id, "exemplars"]][:N_GALLERY]
        console.print("exemplars (nearest the concept's centre): " + ", ".join(exemplars))
    fig = concept_figure(view, int(concept_id))
    suffix = "noise" if concept_id < 0 else str(concept_id)
    png = check_output_path(out if out is not None else view.run.root / "gallery" / f"concept-{suffix}.png",
                            example=f"concept-{suffix}.png")
    write_bytes(png, figure_png(fig, dpi=130))
    console.print(f"gallery: {png}", soft_wrap=True)
    return png


def comparison_table(run_dirs: list[str | Path], console=None) -> pd.DataFrame:
    """Print one table across runs: accuracy and worst-group accuracy per test split and variant.

    Several runs are numbered (#1, #2, ...) and named in the caption, which keeps the table within
    80 columns. Returns the rows: run, split, variant and the formatted cells.
    """
    from soxai.compare.stats import MIN_SEEDS_FOR_INTERVAL
    from soxai.report.comparison import reported_splits

    runs = [RunDir(d).existing() for d in run_dirs]
    comps = []
    for run in runs:
        if not run.comparison.is_file():
            raise StageError(f"{run.root} has no comparison ({run.comparison}); run `soxai run` on it, or "
                             f"`soxai retrain {run.root}` if it stopped after the manifest")
        comps.append(read_json(run.comparison))
    several = len(runs) > 1
    names = []
    for k, (run, comp) in enumerate(zip(runs, comps, strict=True), start=1):
        share = comp.get("cost", {}).get("share_dropped")
        dropped = f", pruned drops {share:.1%} of the training data" if share is not None else ""
        names.append((f"#{k} = " if several else "") + f"{run.root.name} ({len(comp.get('seeds', []))} seeds{dropped})")
    # under 3 seeds a run's cells hold the mean alone (soxai.compare.stats.summarize gives no interval): say so
    few = [len(c.get("seeds", [])) for c in comps if len(c.get("seeds", [])) < MIN_SEEDS_FOR_INTERVAL]
    how = "mean±half-width of the 95% CI over seeds"
    if few and not several:
        how = f"the mean alone, no interval from {few[0]} seed{'s' if few[0] != 1 else ''}"
    elif few:
        how += f"; the mean alone (no interval) for a run of under {MIN_SEEDS_FOR_INTERVAL} seeds"
    # segmentation runs compare mIoU and pixel accuracy (their comparison.json says "metric": "miou")
    seg = all(c.get("metric") == "miou" for c in comps)
    first, second = ("miou", "pixel_accuracy") if seg else ("accuracy", "worst_group_accuracy")
    table = _table(
        f"comparison: {how}" + ("" if several else f" — {names[0]}"),
        f"Δ base / Δ ctrl: {'mIoU' if seg else 'accuracy'} gain of the variant over the baseline / of pruned over "
        "the random control, "
        "paired by seed" + (" · runs: " + "; ".join(names) if several else ""),
        gap=1,
    )
    if several:
        table.add_column("#", no_wrap=True)
    for name in ("split", "variant"):
        table.add_column(name, no_wrap=True, overflow="ellipsis")
    for name in (("mIoU", "pixel acc") if seg else ("accuracy", "worst-grp")) + ("Δ base", "Δ ctrl"):
        table.add_column(name, justify="right", no_wrap=True)
    out = []
    for k, (run, comp) in enumerate(zip(runs, comps, strict=True), start=1):
        variants = list(comp["variants"].items())
        for i, split in enumerate(reported_splits(comp)):
            for j, (variant, per_split) in enumerate(variants):
                ms = per_split.get(split, {})
                gain = comp.get("gain_over_baseline", {}).get(variant, {}).get(split, {}).get(first)
                ctrl = comp.get("pruned_over_random_control", {}).get(split, {}).get(first) \
                    if variant == "pruned" else None
                row = {"run": run.root.name, "split": split, "variant": variant,
                       first: _pm(ms.get(first)), second: _pm(ms.get(second)),
                       "gain_over_baseline": _pm(gain, signed=True) if gain else "",
                       "gain_over_control": _pm(ctrl, signed=True) if ctrl else ""}
                out.append(row)
                cells = [split if j == 0 else "", variant.replace("random_control", "random ctl"), row[first],
                         row[second], row["gain_over_baseline"], row["gain_over_control"]]
                if several:
                    cells.insert(0, f"#{k}" if i == 0 and j == 0 else "")
                table.add_row(*cells, end_section=j == len(variants) - 1)
    _console(console).print(table)
    for run in runs:  # a comparison of another manifest than the run's own (soxai explain reran the manifest)
        why = stale_retraining(run).get("compare")
        if why:
            _console(console).print(f"[yellow]warning:[/] {run.root.name}'s comparison predates its manifest ({why}): "
                                    f"`soxai retrain {run.root}` measures the current one")
    return pd.DataFrame(out)
