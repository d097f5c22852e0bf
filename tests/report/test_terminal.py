"""``soxai concepts list|show`` and ``soxai compare`` on a finished smoke run."""

import re

import pytest
from rich.console import Console

from soxai.errors import StageError


def _console(width: int = 80) -> Console:
    return Console(width=width, record=True, color_system=None, force_terminal=False)


def _lines(console: Console) -> list[str]:
    return console.export_text().splitlines()


@pytest.mark.slow
def test_concepts_table__fits_80_columns_one_line_per_concept_flagged_first(smoke_run_dir):
    from soxai.report.terminal import FLAG, concepts_table

    console = _console()
    rows = concepts_table(smoke_run_dir, console)
    lines = _lines(console)
    assert max(len(line) for line in lines) <= 80
    body = [line for line in lines if re.match(rf"^[{FLAG} ] +(\d+|noise) ", line)]
    assert len(body) == len(rows)  # reasons are cut, not wrapped
    n_flagged = int(rows["flagged"].sum())
    assert n_flagged and all(line.startswith(FLAG) for line in body[:n_flagged])
    assert not any(line.startswith(FLAG) for line in body[n_flagged:])
    assert "…" in "\n".join(body)  # the long transplant reasons are truncated at 80 columns


@pytest.mark.slow
def test_concepts_table__wide_terminal_shows_more_of_the_reason(smoke_run_dir):
    from soxai.report.terminal import concepts_table

    narrow, wide = _console(80), _console(160)
    concepts_table(smoke_run_dir, narrow)
    concepts_table(smoke_run_dir, wide)
    narrow_text, wide_text = narrow.export_text(), wide.export_text()
    assert max(len(x) for x in wide_text.splitlines()) > 100
    reasons = [line.split("transplant:")[1] for line in wide_text.splitlines() if "transplant:" in line]
    narrow_reasons = [line.split("transplant:")[1] for line in narrow_text.splitlines() if "transplant:" in line]
    assert all(len(w) > len(n) + 50 for w, n in zip(reasons, narrow_reasons, strict=True))


@pytest.mark.slow
def test_concept_detail__prints_numbers_reasons_and_writes_gallery(smoke_run_dir, tmp_path):
    from PIL import Image

    from soxai.report.runner import read_run
    from soxai.report.terminal import concept_detail

    cid = sorted(read_run(smoke_run_dir).flagged)[0]
    console = _console()
    png = concept_detail(smoke_run_dir, cid, console, out=tmp_path / "gallery.png")
    text = console.export_text()
    assert f"concept {cid}" in text and "flagged" in text and "why flagged" in text
    assert "accuracy" in text and "persistence" in text and "transplant" in text
    assert f"gallery: {png}" in text.replace("\n", "")
    with Image.open(png) as im:
        assert im.width > 3 * im.height > 600


@pytest.mark.slow
def test_concept_detail__noise_and_unknown_ids(smoke_run_dir, tmp_path):
    from soxai.report.terminal import concept_detail

    console = _console(120)
    assert concept_detail(smoke_run_dir, -1, console, out=tmp_path / "noise.png").is_file()
    # the noise row pools every class's unclustered samples: not named after its most common label
    text = console.export_text()
    assert "noise (concept -1) · the unclustered samples of every class · " in text
    assert re.search(r"exemplars \(one of each class in turn, largest first\): \S+", text)
    from soxai.report.terminal import concepts_table

    rows = concepts_table(smoke_run_dir, _console())
    assert rows.loc[rows["is_noise"], "class_name"].tolist() == ["all classes"]
    with pytest.raises(StageError, match="no concept 999.*known concepts"):
        concept_detail(smoke_run_dir, 999, _console())


@pytest.mark.slow
def test_comparison_table__two_runs_in_one_table_within_80_columns(smoke_run_dir):
    from soxai.report.terminal import comparison_table

    console = _console()
    rows = comparison_table([smoke_run_dir, smoke_run_dir], console)
    lines = _lines(console)
    assert max(len(line) for line in lines) <= 80
    table = "\n".join(lines)
    # the smoke config retrains on 2 seeds: the mean alone in each cell, and the title says why
    assert "#1" in table and "#2" in table and "no interval" in table.split("Δ base / Δ ctrl:")[0]
    assert not rows["accuracy"].str.contains("±").any()
    assert "…" not in table.split("Δ base / Δ ctrl:")[0]  # no number is cut
    assert set(rows["variant"]) == {"baseline", "pruned", "random_control"}
    assert (rows.loc[rows["variant"] == "pruned", "gain_over_control"] != "").all()


def test_comparison_table__lists_the_correction_variants_with_their_gains(tmp_path):
    from soxai.report.terminal import comparison_table
    from soxai.run_dir import RunDir, write_json

    def cell(m):
        return {"mean": m, "ci95": [m - 0.05, m + 0.05], "values": [m, m, m], "n": 3}

    names = ("baseline", "pruned", "random_control", "reweight", "augment", "jtt", "oracle")
    run = RunDir(tmp_path / "run")
    write_json(run.comparison, {
        "seeds": [0, 1, 2], "cost": {"share_dropped": 0.1},
        "variants": {v: {"test": {"accuracy": cell(0.5), "worst_group_accuracy": cell(0.4)}} for v in names},
        "gain_over_baseline": {v: {"test": {"accuracy": cell(0.1)}} for v in names[1:]},
        "pruned_over_random_control": {"test": {"accuracy": cell(0.2)}}})
    console = _console()
    rows = comparison_table([run.root], console)
    assert rows["variant"].tolist() == list(names)
    assert rows.set_index("variant").loc["augment", "gain_over_baseline"] == "+0.100±0.050"
    lines = _lines(console)
    assert "no interval" not in "\n".join(lines)
    assert max(len(line) for line in lines) <= 80
    assert any(line.split()[:1] == ["reweight"] for line in lines)


def test_comparison_table__run_without_comparison_says_how_to_fix(tmp_path):
    from soxai.report.terminal import comparison_table

    with pytest.raises(StageError, match="no comparison.*soxai retrain"):
        comparison_table([tmp_path], _console())


@pytest.mark.slow
def test_cli__concepts_list_show_and_compare(smoke_run_dir, tmp_path):
    from typer.testing import CliRunner

    from soxai.cli import app

    runner = CliRunner()
    listed = runner.invoke(app, ["concepts", "list", str(smoke_run_dir)])
    assert listed.exit_code == 0, listed.output
    assert "concepts of" in listed.output
    shown = runner.invoke(app, ["concepts", "show", str(smoke_run_dir), "0"])
    assert shown.exit_code == 0, shown.output
    assert "gallery:" in shown.output
    missing = runner.invoke(app, ["concepts", "list", str(tmp_path)])
    assert missing.exit_code == 2
    compared = runner.invoke(app, ["compare", str(smoke_run_dir)])
    assert compared.exit_code == 0 and "accuracy" in compared.output


def test_concept_commands__class_names_and_reasons_are_text_not_markup(smoke_run_dir, tmp_path):
    """Reasons quote the data's class names (bias logic 20): a name like 'cat [/x]' crashed `concepts show` with a
    rich MarkupError, and 'dog [wild]' lost its bracket."""
    import json
    import shutil

    import pandas as pd

    from soxai.report.terminal import concept_detail, concepts_table

    run = tmp_path / "run"
    shutil.copytree(smoke_run_dir, run)
    info = json.loads((run / "data" / "info.json").read_text())
    info["class_names"] = ["cat [/x]", "dog [wild]", *info["class_names"][2:]]
    (run / "data" / "info.json").write_text(json.dumps(info))
    scores = pd.read_parquet(run / "bias" / "scores.parquet")
    scores["reason"] = scores["reason"] + " to class cat [/x]"
    scores.to_parquet(run / "bias" / "scores.parquet")
    flagged = int(scores.loc[scores["is_bias"], "concept_id"].iloc[0])
    console = _console(200)
    concepts_table(run, console)
    concept_detail(run, flagged, console, out=tmp_path / "c.png")
    text = console.export_text()
    assert "cat [/x]" in text and "to class cat [/x]" in text.replace("\n", " ")


def test_headings__a_class_named_by_digits_other_than_its_code_is_quoted_with_the_code(smoke_run_dir, tmp_path):
    """Image folders 1, 2, 10 sort as text to codes 0, 1, 2: a heading saying 'class 10' for code 1 would read as
    another class. The card, `concepts show` and the closing sentence say "class '10' (label 1)"."""
    import json
    import shutil

    from soxai.config import load_run_config
    from soxai.report.runner import concept_overview, read_run, summary_sentence, write_report
    from soxai.report.terminal import concept_detail
    from soxai.run_dir import RunDir

    run = RunDir(shutil.copytree(smoke_run_dir, tmp_path / "run"))
    info = json.loads(run.data_info.read_text())
    info["class_names"] = ["10", *info["class_names"][1:]]
    run.data_info.write_text(json.dumps(info))
    rows = concept_overview(read_run(run))
    cid = int(rows.loc[~rows["is_noise"] & (rows["class_name"] == "10"), "concept_id"].iloc[0])
    console = _console(200)
    concept_detail(run, cid, console, out=tmp_path / "c.png")
    assert f"concept {cid} · class '10' (label 0) · " in console.export_text()
    page = write_report(load_run_config(run), run).read_text()
    assert f"concept {cid} · class &#39;10&#39; (label 0) · " in page  # jinja's escape of the quotes
    if cid in read_run(run).flagged:
        assert f"{cid}: class '10' (label 0)," in summary_sentence(read_run(run))
