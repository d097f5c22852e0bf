"""One map for a stage's independent pieces of work (per-class clustering, per-concept tests, per-model training).

A stage runs in one process, or, when the run was started with ``--dask`` / ``--dask-address``, as a task on a Dask
worker. :func:`parallel_map` then hands each piece to the cluster as its own task (the worker secedes while it
waits, so the pieces can run on its own slot too); given a :func:`process_pool` it hands them to local worker
processes; elsewhere it runs them in turn. Each piece must be a pure function of its arguments (its own seed among
them), so the results are the same either way, in the same order.

The library knows Dask, not Prefect: the flow decides where a stage runs; this module only asks whether the
current thread is a Dask worker's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

log = logging.getLogger(__name__)

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
                 resources: dict[str, float] | None = None, pool: LocalPool | None = None,
                 on_result: Callable[[R], None] | None = None) -> list[R]:
    """``[fn(item, *args) for item in items]``, as one Dask task per item when this runs on a Dask worker, or one
    task per item of ``pool`` (:func:`process_pool`) where one is given.

    Parameters
    ----------
    fn : a module-level function (Dask pickles it by reference), pure in its arguments
    items : the pieces, one task each
    args : the same for every piece (sent to a cluster once, not once per piece; a pool's are its own ``shared``)
    resources : Dask worker resources each task needs, e.g. ``{"GPU": 1}``; asked for only where some worker of
        the cluster has them, so a CPU cluster still runs the tasks
    pool : a local process pool (:func:`process_pool`), used where this is not a Dask worker; None: in turn
    on_result : called in this process with each result, in the order of ``items``, as it arrives (a progress bar)

    Returns
    -------
    The results in the order of ``items``. The first piece that fails raises its own exception.
    """
    items = list(items)
    done = on_result or (lambda result: None)
    if len(items) >= 2 and on_dask_worker():
        return [_noted(result, done) for result in _on_cluster(fn, items, args, resources)]
    if pool is not None:
        return _in_pool(pool, fn, items, args, done)
    return [_noted(fn(item, *args), done) for item in items]


def _in_pool(pool: LocalPool, fn: Callable[..., R], items: list[T], args: tuple[Any, ...],
             done: Callable[[R], None]) -> list[R]:
    """The pieces in ``pool``'s worker processes, each task carrying only its piece (``args`` are the pool's
    ``shared`` ones, sent to each worker at its start); where a worker could not start or died, the pieces without a
    result run in this process, on the workers' torch thread count (the same arithmetic), with one warning that
    says why."""
    from concurrent.futures.process import BrokenProcessPool

    if len(args) != len(pool.shared) or any(a is not b for a, b in zip(args, pool.shared, strict=False)):
        raise ValueError("parallel_map with a pool takes the arguments the pool was made with (process_pool(n, *args))")
    futures: list[Any] = []
    results: list[R] = []
    if pool.broken is None:
        try:
            futures = [pool.executor.submit(_with_shared, fn, item) for item in items]
            for future in futures:
                results.append(_noted(future.result(), done))
            return results
        except (BrokenProcessPool, BrokenPipeError) as exc:  # a worker that died before it read its start
            pool.broken = str(exc) or type(exc).__name__
            log.warning(
                "the worker processes stopped (%s), so the pieces without a result run in this process. A worker "
                "killed (out of memory?): set retrain.processes lower. Workers that cannot start: they import the "
                "script that started soxai, so run it from a file whose work sits under "
                "`if __name__ == \"__main__\":` (not from stdin), or set retrain.processes: 1", exc)
    finished = [f.done() and not f.cancelled() and f.exception() is None for f in futures]
    from soxai.device import torch_threads

    with torch_threads(pool.threads):
        for i in range(len(results), len(items)):  # each result noted once, in the order of items
            results.append(_noted(futures[i].result() if i < len(finished) and finished[i] else fn(items[i], *args),
                                  done))
    return results


def _on_cluster(fn: Callable[..., R], items: list[T], args: tuple[Any, ...],
                resources: dict[str, float] | None) -> list[R]:
    from distributed import worker_client

    with worker_client() as client:  # secedes from the worker's thread pool while the pieces run
        shared = [client.scatter(a, broadcast=True) if _large(a) else a for a in args]
        wanted = _available(client, resources)
        futures = [client.submit(fn, item, *shared, pure=False, resources=wanted) for item in items]
        return client.gather(futures)


def _noted(result: R, done: Callable[[R], None]) -> R:
    done(result)
    return result


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


@dataclass
class LocalPool:
    """Worker processes of :func:`process_pool`: each runs torch on ``threads`` threads and holds ``shared``;
    ``broken`` says why they stopped (the pieces then run in this process)."""

    executor: Any
    threads: int
    shared: tuple[Any, ...] = ()
    broken: str | None = None


@contextlib.contextmanager
def process_pool(processes: int, *shared: Any) -> Iterator[LocalPool | None]:
    """A pool of ``processes`` spawned worker processes for :func:`parallel_map`, or None where ``processes`` < 2 or
    this is a Dask worker (the cluster is the pool there). ``shared``: the arguments every piece of the maps will
    get, pickled once into a temporary file that each worker reads at its start instead of with every task.

    Each worker runs torch on ``usable_cores() // processes`` threads (at least one) and without progress bars
    (``SOXAI_PROGRESS=0``; the caller shows one for the whole map). The workers end with the block, also when a
    piece fails or the caller is interrupted (terminated, not waited for), and each one exits by itself once its
    parent is gone, so a ``soxai`` process killed outright leaves no worker training on.
    """
    if processes < 2 or on_dask_worker():
        yield None
        return
    import multiprocessing
    import tempfile
    from concurrent.futures import ProcessPoolExecutor

    _remove_stale_shared(tempfile.gettempdir())
    try:
        path = _write_shared(shared)
    except OSError as exc:  # a full or read-only temporary folder: no pool, the pieces run in this process
        log.warning("no worker processes: their inputs could not be written to the temporary folder %s (%s); the "
                    "pieces run in this process. Set TMPDIR to a folder with room", tempfile.gettempdir(), exc)
        yield None
        return
    threads = max(1, usable_cores() // processes)
    with contextlib.ExitStack() as stack:
        stack.callback(os.unlink, path)
        pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_start_worker, initargs=(os.getpid(), threads, path))
        stack.callback(_stop_pool, pool)
        yield LocalPool(pool, threads, shared)


_SHARED_PREFIX = "soxai-pool-"  # then the pool's process id, "-", _host(), "-", mkstemp's letters, ".pkl"


def _host() -> str:
    """This machine's name as a file name part: the sweep leaves other machines' files (a shared TMPDIR)."""
    import socket

    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def _write_shared(shared: tuple[Any, ...]) -> str:
    """``shared`` pickled into a new temporary file (mkstemp: this user's only); its path.

    The workers read their shared arguments from it, not from spawn's start-up pipe: a worker that dies before
    reading all it was started with (an unguarded script that it re-imports) left the parent's write, and the run,
    waiting forever once that was over the pipe's 64 KiB."""
    import pickle
    import tempfile

    fd, path = tempfile.mkstemp(prefix=f"{_SHARED_PREFIX}{os.getpid()}-{_host()}-", suffix=".pkl")
    try:
        with os.fdopen(fd, "wb") as file:
            pickle.dump(shared, file, protocol=pickle.HIGHEST_PROTOCOL)
    except BaseException:
        os.unlink(path)
        raise
    return path


def _remove_stale_shared(folder: str) -> None:
    """Remove this user's shared-input files in ``folder`` left by pools of this machine whose process is gone (a
    ``kill -9`` or a power cut skips the pool's own removal; each file holds about the size of the training images).
    A file whose process is still running, whose number a new process has taken, or of another machine (by its
    name; a container sharing the host's /tmp has a name of its own) is left."""
    import glob

    if os.name != "posix":  # the process test below is POSIX's (on Windows os.kill(pid, 0) sends CTRL_C_EVENT)
        return
    host = _host()
    for path in glob.glob(os.path.join(glob.escape(folder), f"{_SHARED_PREFIX}*-{glob.escape(host)}-*.pkl")):
        pid = os.path.basename(path)[len(_SHARED_PREFIX):].partition("-")[0]
        try:
            if not pid.isdigit() or os.stat(path).st_uid != os.getuid() or _alive(int(pid)):
                continue
            os.unlink(path)
        except OSError:  # gone meanwhile, or not ours to remove
            continue
        log.info("removed %s, the inputs of a pool whose process %s is gone", path, pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: running
        pass
    return True


def _stop_pool(pool: Any) -> None:
    for worker in list((getattr(pool, "_processes", None) or {}).values()):  # Python 3.11 cannot stop a running
        worker.terminate()  # task through the executor; its workers are processes of their own
    pool.shutdown(wait=True, cancel_futures=True)


_SHARED: tuple[Any, ...] = ()  # in a worker of process_pool: its shared arguments


def _with_shared(fn: Callable[..., R], item: Any) -> R:
    return fn(item, *_SHARED)


def _start_worker(parent: int, threads: int, shared_path: str) -> None:
    import pickle
    import sys
    import threading

    global _SHARED
    with open(shared_path, "rb") as file:  # written by process_pool for its own workers (mkstemp: 0600)
        _SHARED = pickle.load(file)
    os.environ["SOXAI_PROGRESS"] = "0"
    os.environ["OMP_NUM_THREADS"] = str(threads)  # what torch takes as its thread count when a task imports it
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    threading.Thread(target=_exit_with, args=(parent,), daemon=True, name="soxai-parent-watch").start()


def _exit_with(parent: int, every_s: float = 1.0) -> None:
    """End this worker process once ``parent`` is no longer its parent (it was killed: the worker was re-parented)."""
    import time

    while os.getppid() == parent:
        time.sleep(every_s)
    os._exit(1)


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
