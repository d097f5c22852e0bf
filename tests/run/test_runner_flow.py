"""A flow whose config names a Dask cluster (runner.local_workers), started without one as a deployment starts it:
its stages run as the subflow soxai-stages-on-dask on a local cluster, each retrained model a task there."""

from __future__ import annotations

import json
import shutil

import pytest

from soxai.run_dir import RunDir

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_retrain_flow__config_runner_sends_the_stages_to_a_local_cluster(prefect_harness, tiny_explained, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    from flows.pipeline import retrain
    from soxai.runs import init_run

    cfg, base = tiny_explained
    on_dask = cfg.model_copy(update={"runner": cfg.runner.model_copy(update={"local_workers": 2})})
    run = RunDir(shutil.copytree(base.root, tmp_path / "run"))
    init_run(on_dask, run.root)
    records = retrain(on_dask.model_dump(mode="json"), str(run.root), run_id="by-config")
    assert set(records) == {"train", "compare", "report"}
    assert records["train"]["metrics"]["models_trained"] >= 1
    assert "local_workers: 2" in run.config.read_text()  # the run's config.yaml says where it ran
    assert json.loads(run.run_json.read_text())["status"] == "completed"
    with get_client(sync_client=True) as client:
        parent = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=["by-config"])))
        children = [r for r in client.read_flow_runs() if r.parent_task_run_id is not None]
        tasks = client.read_task_runs()
        names = [client.read_flow(r.flow_id).name for r in children]
    assert len(parent) == 1 and parent[0].state.is_completed()
    assert names == ["soxai-stages-on-dask"] and children[0].state.is_completed()
    train = [t for t in tasks if t.name == "train" and t.flow_run_id == children[0].id]
    assert len(train) == 1  # the train stage ran as a task of the subflow, whose task runner is the cluster
