"""The train stage on a Dask cluster: one task per variant x seed, the same models' metrics and comparison as in one
process, and a worker lost mid-stage retried by Dask with the stage's outputs still whole."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from soxai.run_dir import RunDir

distributed = pytest.importorskip("distributed")

LOST = ("pruned", 1)  # the model whose first attempt takes its worker down


def _metrics(run: RunDir, cfg) -> dict[tuple[str, int], dict]:
    return {(v, s): json.loads(run.variant_metrics(v, s).read_text())
            for v in cfg.retrain.variants for s in cfg.retrain.seeds}


def _train_and_compare(cfg, root: str) -> dict:
    from soxai.compare.runner import run_compare
    from soxai.train.runner import run_train

    run = RunDir(root)
    record = run_train(cfg, run)
    run_compare(cfg, run)
    return record.metrics


def _on_worker(client, cfg, root: Path) -> dict:
    # the stage as the flow runs it on a cluster: a task on a worker, from which its models fan out
    return client.submit(_train_and_compare, cfg, str(root), pure=False).result()


class _LoseAWorkerOnce(distributed.WorkerPlugin):
    """On every worker (a restarted one too): train_model exits its process on the first attempt of LOST."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def setup(self, worker) -> None:
        import soxai.train.runner as runner

        if not hasattr(runner, "_whole_train_model"):
            runner._whole_train_model = runner.train_model
        runner._lost_marker = self.marker
        runner.train_model = _dies_once_then_trains


def _dies_once_then_trains(model, inputs, job):
    import soxai.train.runner as runner

    marker = Path(runner._lost_marker)
    if tuple(model) == LOST and not marker.exists():
        marker.write_text(str(os.getpid()))
        os._exit(1)  # the worker process is gone mid-stage, as on a machine that died
    return runner._whole_train_model(model, inputs, job)


@pytest.fixture(scope="module")
def one_process(tiny_explained, tmp_path_factory):
    """The tiny run's train and compare stages in this process (the reference), on one torch thread as each Dask
    worker (its nanny sets OMP_NUM_THREADS=1): float sums over another number of threads round otherwise, and at
    the bench's size a near-chance model's metrics differed (docs/BENCHMARKS.md, bench/retrain_scale.py)."""
    import torch

    cfg, base = tiny_explained
    run = RunDir(shutil.copytree(base.root, tmp_path_factory.mktemp("one") / "run"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        metrics = _train_and_compare(cfg, str(run.root))
    finally:
        torch.set_num_threads(threads)
    return cfg, base, run, metrics


@pytest.mark.slow
def test_run_train__local_cluster_same_metrics_and_comparison_as_one_process(one_process, tmp_path):
    cfg, base, one, record = one_process
    on_dask = RunDir(shutil.copytree(base.root, tmp_path / "dask"))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        with distributed.get_task_stream(client) as tasks:
            assert _on_worker(client, cfg, on_dask.root) == record
    pieces = [t for t in tasks.data if t["key"].startswith("train_model-")]
    assert len(pieces) == len(cfg.retrain.variants) * len(cfg.retrain.seeds)  # one task per variant x seed
    assert len({t["worker"] for t in pieces}) == 2  # on both workers
    assert _metrics(on_dask, cfg) == _metrics(one, cfg)
    assert on_dask.comparison.read_text() == one.comparison.read_text()


@pytest.mark.slow
def test_run_train__a_worker_lost_mid_stage_is_retried_and_outputs_are_whole(one_process, tmp_path):
    cfg, base, one, _ = one_process
    lost = RunDir(shutil.copytree(base.root, tmp_path / "lost"))
    marker = tmp_path / "lost-once"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        client.register_plugin(_LoseAWorkerOnce(str(marker)))
        _on_worker(client, cfg, lost.root)
    assert marker.is_file(), "no worker was lost: the test tested nothing"
    assert _metrics(lost, cfg) == _metrics(one, cfg)
    assert lost.comparison.read_text() == one.comparison.read_text()
    stage = json.loads(lost.stage_json("train").read_text())
    assert stage["outputs"] == json.loads(one.stage_json("train").read_text())["outputs"]
    assert not list((lost.root / "train").rglob("*.tmp*"))  # no half-written file left behind
