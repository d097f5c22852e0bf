"""One map for a stage's independent pieces of work (per-class clustering, per-concept tests, per-model training).

A stage runs in one process, or, when the run was started with ``--dask`` / ``--dask-address``, as a task on a Dask
worker. :func:`parallel_map` then hands each piece to the cluster as its own task (the worker secedes while it
waits, so the pieces can run on its own slot too); elsewhere it runs them in turn. Each piece must be a pure function
of its arguments (its own seed among them), so the results are the same either way, in the same order.

The library knows Dask, not Prefect: the flow decides where a stage runs; this module only asks whether the
current thread is a Dask worker's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def on_dask_worker() -> bool:
    """Whether this thread runs a task of a Dask worker (and so can submit more tasks to its cluster)."""
    try:
        from distributed import get_worker
    except ImportError:  # dask is an optional extra
        return False
    try:
        get_worker()
    except ValueError:  # "No worker found"
        return False
    return True


def parallel_map(fn: Callable[..., R], items: Iterable[T], *args: Any,
                 resources: dict[str, float] | None = None) -> list[R]:
    """``[fn(item, *args) for item in items]``, as one Dask task per item when this runs on a Dask worker.

    Parameters
    ----------
    fn : a module-level function (Dask pickles it by reference), pure in its arguments
    items : the pieces, one task each
    args : the same for every piece (sent to the cluster once, not once per piece)
    resources : Dask worker resources each task needs, e.g. ``{"GPU": 1}``; asked for only where some worker of
        the cluster has them, so a CPU cluster still runs the tasks

    Returns
    -------
    The results in the order of ``items``. The first piece that fails raises its own exception.
    """
    items = list(items)
    if len(items) < 2 or not on_dask_worker():
        return [fn(item, *args) for item in items]
    from distributed import worker_client

    with worker_client() as client:  # secedes from the worker's thread pool while the pieces run
        shared = [client.scatter(a, broadcast=True) if _large(a) else a for a in args]
        wanted = _available(client, resources)
        futures = [client.submit(fn, item, *shared, pure=False, resources=wanted) for item in items]
        return client.gather(futures)


def _large(value: Any) -> bool:
    nbytes = getattr(value, "nbytes", None)
    return isinstance(nbytes, int) and nbytes > 1_000_000


def _available(client, resources: dict[str, float] | None) -> dict[str, float] | None:
    """``resources`` if some worker of the cluster offers every one of them, else None (a CPU-only cluster)."""
    if not resources:
        return None
    workers: Sequence[dict] = list(client.scheduler_info().get("workers", {}).values())
    for worker in workers:
        have = worker.get("resources", {}) or {}
        if all(have.get(name, 0) >= amount for name, amount in resources.items()):
            return resources
    return None
