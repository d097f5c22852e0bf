"""The smoke config through the Prefect flow, resume, and partial recomputation."""

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from soxai.config import load_config
from soxai.run_dir import RunDir
from soxai.runs import init_run

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ARTIFACTS = [
    "config.yaml", "run.json", "env.json", "data/samples.parquet", "model/baseline.pt", "model/baseline.json",
    "saliency/index.parquet", "saliency/shard-00000.npy", "embed/features.npy", "embed/embedding.parquet",
    "concepts/assignments.parquet", "concepts/concepts.parquet", "bias/scores.parquet",
    "manifest/pruned.parquet", "manifest/pruned.csv", "manifest/manifest.json",
    "train/baseline/seed0/model.pt", "train/pruned/seed1/metrics.json", "train/random_control/seed0/metrics.json",
    "compare/comparison.json", "report/report.html",
]


@pytest.fixture(scope="module")
def prefect_env(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-home")
    env = {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_LOGGING_EXTRA_LOGGERS": "soxai",
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def smoke_run(prefect_env, tmp_path_factory):
    from flows.pipeline import pipeline

    cfg = load_config(REPO / "configs" / "smoke.yaml")
    run = init_run(cfg, tmp_path_factory.mktemp("runs") / "smoke")
    records = pipeline(cfg.model_dump(mode="json"), str(run.root), run_id="smoke")
    return cfg, run, records


def test_pipeline_flow__writes_every_artifact(smoke_run):
    _, run, records = smoke_run
    missing = [a for a in ARTIFACTS if not (run.root / a).exists()]
    assert not missing
    assert all(not r["reused"] for r in records.values())
    assert json.loads(run.run_json.read_text())["status"] == "completed"
    for stage in records:
        assert json.loads(run.stage_json(stage).read_text())["fingerprint"] == records[stage]["fingerprint"]


def test_pipeline_flow__sample_id_joins_every_table(smoke_run):
    _, run, _ = smoke_run
    samples = pd.read_parquet(run.samples)
    manifest = pd.read_parquet(run.pruned_parquet)
    assign = pd.read_parquet(run.assignments)
    assert set(manifest["sample_id"]) == set(samples["sample_id"])
    assert set(assign["sample_id"]) == set(samples.loc[samples["split"] == "train", "sample_id"])
    dropped = manifest[~manifest["keep"]]
    assert (dropped["split"] == "train").all() and dropped["reason"].str.contains("flagged concept").all()


def test_pipeline_flow__second_run_is_a_no_op(smoke_run):
    from flows.pipeline import pipeline

    cfg, run, _ = smoke_run
    mtimes = {p: p.stat().st_mtime_ns for p in run.root.rglob("*") if p.is_file() and p.name != "stage.json"}
    again = pipeline(cfg.model_dump(mode="json"), str(run.root), run_id="smoke-again")
    assert all(r["reused"] for r in again.values())
    changed = [p for p, t in mtimes.items() if p.stat().st_mtime_ns != t and p.name not in ("run.json",)]
    assert not changed


def test_pipeline_flow__clustering_change_reuses_saliency(smoke_run):
    from flows.pipeline import explain

    cfg, run, _ = smoke_run
    cfg2 = load_config(REPO / "configs" / "smoke.yaml", ["concepts.min_cluster_size=12"])
    init_run(cfg2, run.root)
    records = explain(cfg2.model_dump(mode="json"), str(run.root), run_id="smoke-recluster")
    reused = {stage for stage, r in records.items() if r["reused"]}
    assert reused == {"data", "model", "saliency", "embed"}
    assert not records["concepts"]["reused"]
