"""Saliency shards fanned out over a Dask LocalCluster of 2 worker processes (the flow's own, or a running
one given by address as `--dask-address` does) give the single-process run's artifacts byte for byte; and the
monitor command on the result (same Prefect harness)."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from soxai.runs import init_run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
COMPARED = ("saliency", "embed", "concepts", "bias", "manifest")


@pytest.fixture(scope="module")
def two_runs(prefect_harness, tiny_explained, tmp_path_factory):
    """The explain flow twice from the tiny run's data and baseline (reused by fingerprint), saliency onwards
    computed afresh: in the flow's process, and with shards of 25 maps fanned out over 2 Dask workers."""
    from flows.pipeline import dask_task_runner, explain

    tiny_cfg, tiny = tiny_explained
    cfg = tiny_cfg.model_copy(update={"saliency": tiny_cfg.saliency.model_copy(update={"shard_size": 25})})
    root = tmp_path_factory.mktemp("dask")
    single, fanned = init_run(cfg, root / "single"), init_run(cfg, root / "dask")
    for run in (single, fanned):
        for stage in ("data", "model"):
            shutil.copytree(tiny.root / stage, run.root / stage)
    explain(cfg.model_dump(mode="json"), str(single.root), run_id="single")
    records = explain.with_options(task_runner=dask_task_runner(n_workers=2))(
        cfg.model_dump(mode="json"), str(fanned.root), run_id="dask")
    return single, fanned, records


def test_dask__saliency_shards_fanned_out_equal_the_single_process_run(two_runs):
    single, fanned, records = two_runs
    shards = sorted(p.name for p in (fanned.root / "saliency").glob("shard-*.npy"))
    assert len(shards) == 5  # 120 training maps in shards of 25
    assert records["saliency"]["metrics"]["n_maps"] == 120 and records["model"]["reused"]
    assert not records["saliency"]["reused"]
    differ, compared = [], 0
    for stage in COMPARED:
        for path in sorted((single.root / stage).rglob("*")):
            if path.is_file() and path.name != "stage.json":
                compared += 1
                other = fanned.root / path.relative_to(single.root)
                if path.name == "manifest.json":  # names its run id, which differs; all else must not
                    a, b = (json.loads(p.read_text()) for p in (path, other))
                    assert (a.pop("run_id"), b.pop("run_id")) == ("single", "dask")
                    same = a == b
                else:
                    same = other.is_file() and other.read_bytes() == path.read_bytes()
                if not same:
                    differ.append(str(path.relative_to(single.root)))
        a, b = (json.loads(r.stage_json(stage).read_text()) for r in (single, fanned))
        assert (a["fingerprint"], a["outputs"], a["metrics"]) == (b["fingerprint"], b["outputs"], b["metrics"])
    assert compared >= 15 and not differ


def test_dask__shards_ran_as_their_own_task_runs(two_runs):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=["dask"])))
        assert len(runs) == 1 and runs[0].state.is_completed()
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=["dask"])))
    names = sorted(t.name for t in tasks)
    assert [n for n in names if n.startswith("saliency-shard-")] == [f"saliency-shard-{i}" for i in range(5)]
    assert all(t.state.is_completed() for t in tasks)


def test_cli__dask_address_fans_shards_out_to_a_running_scheduler(two_runs, tmp_path):
    """`soxai explain --dask-address` on a LocalCluster's scheduler: the saliency shards run as task runs there
    and equal the single-process run's maps. Only saliency is computed: the other stages are copied from the
    single-process run and reused by fingerprint."""
    from distributed import LocalCluster
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
    from typer.testing import CliRunner

    from soxai.cli import app

    single, _, _ = two_runs
    by_address = tmp_path / "by-address"
    by_address.mkdir()
    for stage in ("data", "model", "embed", "concepts", "spectral", "bias", "manifest"):
        shutil.copytree(single.root / stage, by_address / stage)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        res = CliRunner().invoke(app, ["explain", str(single.config), "--run-dir", str(by_address),
                                       "--dask-address", cluster.scheduler_address])
        # the tasks this cluster's scheduler (in this process) saw through: one per shard, and the embed, concepts
        # and bias stages (stages that fan their pieces out from a worker: flows.pipeline.DASK_STAGES), reused here
        ran_here = {entry[0] for entry in cluster.scheduler.transition_log if entry[2] == "memory"}
    assert res.exit_code == 0, res.output
    assert len([key for key in ran_here if key.startswith("saliency_shard_task-")]) == 5
    assert len([key for key in ran_here if key.startswith("stage_task-")]) == 3
    state = json.loads((by_address / "run.json").read_text())["stages"]
    assert {s for s, r in state.items() if not r["reused"]} == {"saliency"}
    saliency = sorted(p.relative_to(single.root) for p in (single.root / "saliency").rglob("*")
                      if p.is_file() and p.name != "stage.json")
    assert len(saliency) >= 6
    assert [p for p in saliency if (by_address / p).read_bytes() != (single.root / p).read_bytes()] == []
    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=["by-address"])))
    shards = sorted(t.name for t in tasks if t.name.startswith("saliency-shard-"))
    assert shards == [f"saliency-shard-{i}" for i in range(5)]


def test_cli__monitor_reports_drift_into_the_flagged_concept(two_runs, tmp_path):
    from typer.testing import CliRunner

    from soxai.cli import app

    single, _, _ = two_runs
    out = tmp_path / "monitor"
    res = CliRunner().invoke(app, ["monitor", str(single.root), "--run-dir", str(out), "--set", "seed=11",
                                   "--set", "data.n_train_per_class=60", "--set", "data.artifact.rate=0.8"])
    assert res.exit_code == 0, res.output
    assert "drift into flagged concepts" in res.output and "exclude.csv" in res.output
    excluded = pd.read_csv(out / "monitor" / "exclude.csv")
    assert len(excluded) > 0 and json.loads((out / "run.json").read_text())["status"] == "completed"


def test_scheduled_monitor__flow_run_named_after_its_new_run_dir(two_runs, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    from flows.deploy import scheduled_monitor

    single, _, _ = two_runs
    out = scheduled_monitor(str(single.root), runs_dir=str(tmp_path), overrides=["seed=5"])
    name = Path(out).name
    assert name.startswith("monitor-") and Path(out).parent == tmp_path
    assert json.loads((Path(out) / "monitor" / "monitor.json").read_text())["n_new"] == 120
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))
        assert len(runs) == 1 and runs[0].state.is_completed()
        keys = {a.key for a in client.read_artifacts() if a.flow_run_id == runs[0].id}
    assert keys == {"soxai-monitor", "soxai-monitor-mix"}
