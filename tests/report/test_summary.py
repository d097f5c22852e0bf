"""The headline markdown and concept rows that the flows publish as Prefect artifacts."""

import json

import pandas as pd

from soxai.report.summary import concept_table_rows, run_summary_markdown


def test_run_summary_markdown__names_counts_flags_and_what_is_missing(tiny_explained):
    _, run = tiny_explained
    text = run_summary_markdown(run.root)
    concepts = pd.read_parquet(run.concepts)
    n_real = int((~concepts["is_noise"]).sum())
    manifest = json.loads(run.manifest_json.read_text())
    assert f"| concepts found | {n_real} " in text
    assert f"| samples dropped | {manifest['n_dropped']:,} of {manifest['n_train']:,}" in text
    assert "not retrained yet" in text and "no HTML report yet" in text
    for cid in manifest["flagged_concepts"]:
        assert f"**concept {cid}**: transplant" in text


def test_concept_table_rows__one_json_safe_row_per_concept_flagged_first(tiny_explained):
    _, run = tiny_explained
    rows = concept_table_rows(run.root)
    assert len(rows) == len(pd.read_parquet(run.concepts))
    json.dumps(rows)  # what Prefect's table artifact needs
    assert rows[0]["flagged"] and rows[-1]["is_noise"]


def test_run_summary_markdown__a_gain_row_per_correction_variant(tiny_explained, tmp_path):
    import shutil

    from soxai.run_dir import RunDir, write_json

    _, base = tiny_explained
    run = RunDir(shutil.copytree(base.root, tmp_path / "run"))

    def cell(m):
        return {"mean": m, "ci95": [m - 0.05, m + 0.05], "values": [m, m, m], "n": 3}

    splits = ("test", "test_attacked")
    write_json(run.comparison, {
        "seeds": [0, 1, 2],
        "variants": {v: {s: {"accuracy": cell(0.5)} for s in splits} for v in ("baseline", "pruned", "reweight")},
        "gain_over_baseline": {"pruned": {s: {"accuracy": cell(0.3)} for s in splits},
                               "reweight": {s: {"accuracy": cell(0.1), "worst_group_accuracy": cell(0.2)}
                                            for s in splits}}})
    text = run_summary_markdown(run.root)
    assert "| gain on test_attacked (pruned − baseline, accuracy) | +0.300 [+0.250, +0.350] |" in text
    assert "| gain on test (reweight − baseline, accuracy) | +0.100 [+0.050, +0.150] |" in text
    assert "| gain on test (reweight − baseline, worst-group accuracy) | +0.200 [+0.150, +0.250] |" in text
    assert "not retrained yet" not in text and "| seeds | 3 (mean [95% CI]) |" in text


def test_run_summary_markdown__two_seeds_say_there_is_no_interval(tiny_explained, tmp_path):
    import shutil

    from soxai.compare.stats import summarize
    from soxai.run_dir import RunDir, write_json

    _, base = tiny_explained
    run = RunDir(shutil.copytree(base.root, tmp_path / "run"))
    splits = ("test", "test_attacked")
    write_json(run.comparison, {
        "seeds": [0, 1],
        "variants": {v: {s: {"accuracy": summarize([0.4, 0.6])} for s in splits} for v in ("baseline", "pruned")},
        "gain_over_baseline": {"pruned": {s: {"accuracy": summarize([0.2, 0.4])} for s in splits}}})
    text = run_summary_markdown(run.root)
    assert "| gain on test_attacked (pruned − baseline, accuracy) | +0.300 (n=2, no interval) |" in text
    assert "| seeds | 2 (mean; no interval below 3 seeds) |" in text
