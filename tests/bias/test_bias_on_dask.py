"""The bias stage on a Dask cluster: each concept's transplant test a task of its own, the same files as one
process."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from soxai.run_dir import RunDir

distributed = pytest.importorskip("distributed")



def _fresh_copy(base: RunDir, where) -> RunDir:
    run = RunDir(shutil.copytree(base.root, where))
    shutil.rmtree(run.root / "bias")  # computed afresh, not reused by fingerprint
    return run


def _bias(cfg, root: str) -> dict:
    from soxai.bias.runner import run_bias

    return run_bias(cfg, RunDir(root)).metrics


@pytest.mark.slow
def test_run_bias__local_cluster_one_task_per_concept_same_files_as_one_process(tiny_explained, tmp_path):
    cfg, base = tiny_explained
    one, on_dask = _fresh_copy(base, tmp_path / "one"), _fresh_copy(base, tmp_path / "dask")
    metrics = _bias(cfg, str(one.root))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        with distributed.get_task_stream(client) as tasks:
            assert client.submit(_bias, cfg, str(on_dask.root), pure=False).result() == metrics
    concepts = pd.read_parquet(one.concepts)
    pieces = [t for t in tasks.data if t["key"].startswith("score_one_concept-")]
    assert len(pieces) >= int((~concepts["is_noise"]).sum()) >= 2  # one task per concept (and per re-test)
    files = sorted(p.name for p in (one.root / "bias").iterdir() if p.name != "stage.json")
    assert {"scores.parquet", "carriers.parquet", "conflicts.parquet"} <= set(files)
    for name in files:
        assert (on_dask.root / "bias" / name).read_bytes() == (one.root / "bias" / name).read_bytes(), name
