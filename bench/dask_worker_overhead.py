"""The same torch training loop in this process, in a plain spawned process and as a task of a Dask worker process.

Not a test. Found while measuring retraining on a 2-worker LocalCluster (bench/retrain_scale.py, docs/BENCHMARKS.md):
each model's task took 2-3x as long on a worker as in one process on one torch thread. This isolates it from soxai:
a small CNN, 150 SGD steps on one random batch, one torch thread everywhere; one warm-up task per worker first.

The cause: Dask's nanny starts each worker with MALLOC_TRIM_THRESHOLD_=65536, which turns off glibc's dynamic
mmap threshold, so every tensor of 128 KiB or more is mmapped and faulted in afresh (the last rows: a plain process
started with that variable is as slow; a worker started without it, as soxai's runner now starts them
(soxai.scaleout.keep_malloc_defaults), is as fast as a plain process).

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD .venv/bin/python bench/dask_worker_overhead.py
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time


def work(seed: int = 0, steps: int = 150) -> str:
    """Seconds for ``steps`` SGD steps of a small CNN on one thread, with the process's minor page faults and
    system CPU time over them."""
    import resource

    import torch

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 4))
    opt = torch.optim.SGD(model.parameters(), 0.01)
    x, y = torch.randn(64, 1, 32, 32), torch.randint(0, 4, (64,))
    before = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    took = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF)
    return (f"{took:6.2f} s ({(after.ru_minflt - before.ru_minflt) / 1e6:.2f} M minor page faults, "
            f"{after.ru_stime - before.ru_stime:.1f} s system time)")


def _child(queue) -> None:
    queue.put(work())


def _spawned(ctx, env: dict[str, str]) -> str:
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=(queue,))
        proc.start()
        took = queue.get()
        proc.join()
        return took
    finally:
        os.environ.clear()
        os.environ.update(saved)


def main() -> None:
    from distributed import Client, LocalCluster

    print(f"load {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores")
    print(f"this process:          {work()}")
    ctx = mp.get_context("spawn")
    print(f"spawned process:       {_spawned(ctx, {})}")
    print(f"spawned process with MALLOC_TRIM_THRESHOLD_=65536: {_spawned(ctx, {'MALLOC_TRIM_THRESHOLD_': '65536'})}")
    from soxai.scaleout import keep_malloc_defaults

    for processes, what in ((False, "this process"), (True, "own process, Dask's environment"),
                            (True, "own process, soxai's environment")):
        if what.endswith("soxai's environment"):
            keep_malloc_defaults()
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=processes, dashboard_address=None) as cluster, \
                Client(cluster) as client:
            client.submit(work, 1, pure=False).result()  # warm-up: imports
            took = client.submit(work, 2, pure=False).result()
            print(f"Dask worker, {what}: {took}")
        os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)  # the nanny sets its pre-spawn variables here too
    print(f"this process again:    {work()}; load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
