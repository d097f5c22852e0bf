"""Degenerate results are handled and reported, not crashed on."""

import json
import shutil

import pandas as pd

from soxai.config import load_config
from soxai.run_dir import RunDir


def test_only_noise__nothing_flagged_manifest_keeps_all_and_report_says_so(tiny_explained, tmp_path):
    from soxai.bias.runner import run_bias
    from soxai.concepts.runner import run_concepts
    from soxai.manifest.runner import run_manifest
    from soxai.report.runner import write_report

    _, base = tiny_explained
    run = RunDir(shutil.copytree(base.root, tmp_path / "noise"))
    cfg = load_config(run.config, ["concepts.min_cluster_size=100000"])
    metrics = run_concepts(cfg, run).metrics
    assert metrics["n_concepts"] == 0 and metrics["noise_share"] == 1.0
    assert run_bias(cfg, run).metrics["flagged"] == []
    run_manifest(cfg, run)
    manifest = pd.read_parquet(run.pruned_parquet)
    info = json.loads(run.manifest_json.read_text())
    assert manifest["keep"].all() and info["nothing_flagged"] and info["n_dropped"] == 0
    html = write_report(cfg, run).read_text()
    assert "nothing flagged" in html.lower()


def test_model_output_size_mismatch__names_both_sizes_and_the_fix():
    import pytest

    from soxai.errors import DataError
    from soxai.models.config import ModelConfig
    from soxai.models.registry import build_model

    with pytest.raises(DataError, match="3 classes but model.num_classes=5.*model.num_classes=3"):
        build_model(ModelConfig(num_classes=5), in_channels=1, n_classes=3, image_size=16, seed=0)
