"""The smoke config through the Prefect flow, resume, and partial recomputation."""

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from soxai.config import load_config
from soxai.runs import init_run

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ARTIFACTS = [
    "config.yaml", "run.json", "env.json", "data/samples.parquet", "model/baseline.safetensors", "model/baseline.json",
    "saliency/index.parquet", "saliency/shard-00000.npy", "embed/features.npy", "embed/embedding.parquet",
    "concepts/assignments.parquet", "concepts/concepts.parquet", "bias/scores.parquet",
    "manifest/pruned.parquet", "manifest/pruned.csv", "manifest/manifest.json",
    "train/baseline/seed0/model.safetensors", "train/pruned/seed1/metrics.json",
    "train/random_control/seed0/metrics.json",
    "compare/comparison.json", "report/report.html",
]


@pytest.fixture(scope="module")
def prefect_env(tmp_path_factory, no_flow_heartbeats):
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

    with no_flow_heartbeats(), prefect_test_harness(server_startup_timeout=90):
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
    # run.json (status, timings) and run.lock (the writer lock's last holder) change with every run
    changed = [p for p, t in mtimes.items() if p.stat().st_mtime_ns != t and p.name not in ("run.json", "run.lock")]
    assert not changed


def test_cli__run_on_finished_run_dir_resumes_without_work(smoke_run):
    from typer.testing import CliRunner

    from soxai.cli import app

    _, run, _ = smoke_run
    result = CliRunner().invoke(app, ["run", "--run-dir", str(run.root)])
    assert result.exit_code == 0, result.output
    assert str(run.root) in result.output
    state = json.loads(run.run_json.read_text())
    assert state["status"] == "completed" and all(s["reused"] for s in state["stages"].values())


def test_cli__inspect_export_compare_report(smoke_run, tmp_path):
    from typer.testing import CliRunner

    from soxai.cli import app

    _, run, _ = smoke_run
    cli = CliRunner()
    listed = cli.invoke(app, ["concepts", "list", str(run.root)])
    assert listed.exit_code == 0 and "concepts of" in listed.output
    concepts = pd.read_parquet(run.concepts)
    cid = int(concepts.loc[~concepts["is_noise"], "concept_id"].iloc[0])
    shown = cli.invoke(app, ["concepts", "show", str(run.root), str(cid)])
    assert shown.exit_code == 0 and (run.root / "gallery" / f"concept-{cid}.png").is_file()  # not in report/
    missing = cli.invoke(app, ["concepts", "show", str(run.root), "999"])
    assert missing.exit_code == 2 and "no concept 999" in missing.output
    for fmt in ("csv", "parquet", "json"):
        out = tmp_path / f"m.{fmt}"
        res = cli.invoke(app, ["manifest", "export", str(run.root), "--format", fmt, "--out", str(out)])
        assert res.exit_code == 0 and out.is_file()
    assert len(pd.read_csv(tmp_path / "m.csv")) == len(pd.read_parquet(run.pruned_parquet))
    bad = cli.invoke(app, ["manifest", "export", str(run.root), "--format", "xml", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "csv, parquet, json" in bad.output
    compared = cli.invoke(app, ["compare", str(run.root)])
    assert compared.exit_code == 0 and "baseline" in compared.output and "pruned" in compared.output
    reported = cli.invoke(app, ["report", str(run.root)])
    assert reported.exit_code == 0 and "report.html" in reported.output


def test_cli__bad_config_value_fails_before_any_output(tmp_path):
    from typer.testing import CliRunner

    from soxai.cli import app

    res = CliRunner().invoke(app, ["run", "--run-dir", str(tmp_path / "r"), "--set", "concepts.min_cluster_sise=3"])
    assert res.exit_code == 2 and "did you mean concepts.min_cluster_size" in res.output
    assert not (tmp_path / "r").exists()


def test_pipeline_flow__same_config_and_seed_give_identical_concepts_and_manifest(smoke_run, tmp_path):
    """`soxai explain` of the smoke config in a process of its own writes the same concepts and manifest files,
    byte for byte, as the module's run in this one (manifest.json apart from the run id it names)."""
    import hashlib
    import subprocess
    import sys

    from prefect.settings import PREFECT_API_URL

    _, run, _ = smoke_run
    again = tmp_path / "again"
    # the harness's server, so that the CLI starts no server of its own
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "SOXAI_PROGRESS": "0"}
    res = subprocess.run([str(Path(sys.executable).parent / "soxai"), "explain", "configs/smoke.yaml",
                          "--run-dir", str(again)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]

    def digests(root: Path) -> dict[str, str]:
        out = {}
        for path in sorted([*(root / "concepts").rglob("*"), *(root / "manifest").rglob("*")]):
            if path.is_file() and path.name != "stage.json":
                data = path.read_bytes()
                if path.name == "manifest.json":  # names its run, which differs; all else must not
                    info = json.loads(data)
                    assert info.pop("run_id") == root.name
                    data = json.dumps(info, sort_keys=True).encode()
                out[str(path.relative_to(root))] = hashlib.sha256(data).hexdigest()
        return out

    first, second = digests(run.root), digests(again)
    assert {"concepts/assignments.parquet", "manifest/pruned.parquet", "manifest/pruned.csv",
            "manifest/manifest.json"} <= set(first)
    assert first == second


def test_cli__retrain_with_a_user_manifest_follows_it(smoke_run, tmp_path):
    from typer.testing import CliRunner

    from soxai.cli import app

    _, run, _ = smoke_run
    manifest = pd.read_parquet(run.pruned_parquet)
    train_ids = manifest.loc[manifest["split"] == "train", "sample_id"]
    user = pd.DataFrame({"sample_id": train_ids, "keep": True})
    user.loc[user.index[:5], "keep"] = False
    user.to_csv(tmp_path / "mine.csv", index=False)
    res = CliRunner().invoke(app, ["retrain", str(run.root), "--manifest", str(tmp_path / "mine.csv")])
    assert res.exit_code == 0, res.output
    pruned = json.loads(run.variant_metrics("pruned", 0).read_text())
    assert pruned["n_train"] == len(train_ids) - 5
    assert json.loads(run.comparison.read_text())["cost"]["n_dropped"] == 5
    bad = pd.DataFrame({"sample_id": ["nope"], "keep": [False]})
    bad.to_csv(tmp_path / "bad.csv", index=False)
    res = CliRunner().invoke(app, ["retrain", str(run.root), "--manifest", str(tmp_path / "bad.csv")])
    assert res.exit_code == 2 and "does not know" in res.output


def test_pipeline_flow__clustering_change_reuses_saliency(smoke_run):
    from flows.pipeline import explain

    cfg, run, _ = smoke_run
    cfg2 = load_config(REPO / "configs" / "smoke.yaml", ["concepts.min_cluster_size=12"])
    init_run(cfg2, run.root)
    records = explain(cfg2.model_dump(mode="json"), str(run.root), run_id="smoke-recluster")
    reused = {stage for stage, r in records.items() if r["reused"]}
    assert reused == {"data", "model", "saliency", "embed"}
    assert not records["concepts"]["reused"]


def test_pipeline_flow__manifest_source_from_files_on_disk(prefect_env, tmp_path):
    from flows.pipeline import pipeline
    from soxai.data.sources import build_dataset
    from soxai.testing.files import write_image_files

    smoke = load_config(REPO / "configs" / "smoke.yaml")
    csv = write_image_files(build_dataset(smoke.data, seed=3), tmp_path / "files")
    cfg = load_config(REPO / "configs" / "smoke.yaml",
                      ["data.source=manifest", f"data.manifest={csv}", "retrain.variants=[baseline, pruned]"])
    run = init_run(cfg, tmp_path / "run")
    pipeline(cfg.model_dump(mode="json"), str(run.root), run_id="smoke-manifest")
    samples = pd.read_parquet(run.samples)
    assert set(samples["split"]) == {"train", "val", "test", "test_attacked"}
    assert samples["path"].str.startswith("images/").all()
    comparison = json.loads(run.comparison.read_text())
    assert comparison["detection"]["n_planted"] > 0
    exported = pd.read_parquet(run.pruned_parquet)
    assert "path" in exported and exported["keep"].any()
