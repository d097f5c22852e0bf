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
