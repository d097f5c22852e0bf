"""Local Dask workers start with glibc's own malloc tuning: Dask's MALLOC_TRIM_THRESHOLD_ made every model trained on
a worker 2-3x slower (soxai.scaleout.keep_malloc_defaults; bench/dask_worker_overhead.py)."""

from __future__ import annotations

import os

import pytest

from soxai.scaleout import MALLOC_KEY, RunnerConfig


def _worker_env() -> dict[str, str | None]:
    return {k: os.environ.get(k) for k in ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS")}


@pytest.fixture
def dask_config():
    dask = pytest.importorskip("dask")
    pytest.importorskip("distributed")  # loads its defaults into the Dask config
    before = dask.config.get(MALLOC_KEY, default=None)
    yield dask
    dask.config.set({MALLOC_KEY: before})


def _env_of_a_worker() -> dict[str, str | None]:
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        return next(iter(client.run(_worker_env).values()))


def test_the_flows_local_cluster_leaves_out_dasks_malloc_setting(dask_config):
    from flows.pipeline import dask_task_runner

    dask_config.config.set({MALLOC_KEY: 65536})  # Dask's default (an earlier flow in this process may have cleared it)
    assert _env_of_a_worker()["MALLOC_TRIM_THRESHOLD_"] == "65536"
    os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)  # the nanny sets it in this process too

    dask_task_runner(RunnerConfig(local_workers=1))
    assert dask_config.config.get(MALLOC_KEY) is None
    env = _env_of_a_worker()
    assert env["MALLOC_TRIM_THRESHOLD_"] is None
    assert env["OMP_NUM_THREADS"] == "1"  # Dask's other pre-spawn variables stay: one thread per worker
