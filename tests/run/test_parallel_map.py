"""soxai.parallel: the same results in the same order in one process and as tasks of a Dask cluster."""

from __future__ import annotations

import os

import numpy as np
import pytest

from soxai.parallel import on_dask_worker, parallel_map


def _square_plus(x: int, offset: np.ndarray) -> tuple[int, int, bool]:
    return x * x + int(offset.sum()), os.getpid(), on_dask_worker()


def _fails_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("piece 3 failed")
    return x


def _stage_like(items: list[int], offset: np.ndarray):
    return parallel_map(_square_plus, items, offset)


def _stage_failing(items: list[int]):
    return parallel_map(_fails_on_three, items)


def test_parallel_map__one_process_runs_in_turn():
    out = parallel_map(_square_plus, [3, 1, 2], np.ones(4))
    assert [r[0] for r in out] == [13, 5, 8]
    assert {r[1] for r in out} == {os.getpid()} and not any(r[2] for r in out)


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as c:
        yield c


def test_parallel_map__on_a_worker_same_results_as_tasks(client):
    offset = np.ones(300_000)  # over the scatter size: sent once
    items = list(range(7))
    out = client.submit(_stage_like, items, offset, pure=False).result()
    assert [r[0] for r in out] == [x * x + 300_000 for x in items]
    assert all(r[2] for r in out)  # each piece ran as a task on a worker
    assert [r[0] for r in out] == [r[0] for r in parallel_map(_square_plus, items, offset)]


def test_parallel_map__a_failing_piece_raises_its_error(client):
    with pytest.raises(ValueError, match="piece 3 failed"):
        client.submit(_stage_failing, [1, 2, 3, 4], pure=False).result()
