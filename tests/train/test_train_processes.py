"""retrain.processes: the train stage's models side by side in worker processes, with the same files as in turn."""

import functools
import json
import logging
import math
import operator
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool

import pytest

from soxai.config import load_config
from soxai.errors import ConfigError
from soxai.parallel import LocalPool, parallel_map, process_pool, usable_cores
from soxai.run_dir import RunDir
from soxai.train.runner import AUTO_MIN_SAMPLE_EPOCHS, train_processes


def test_auto__one_process_per_core_only_where_the_models_outweigh_a_worker_start(monkeypatch):
    import soxai.parallel

    monkeypatch.setattr(soxai.parallel, "usable_cores", lambda: 8)
    cfg = load_config(None, ["train.device=cpu"])
    epochs = cfg.train.epochs
    assert train_processes(cfg, 15, 2100) == 8  # the demo: 252,000 sample-epochs
    assert train_processes(cfg, 3, AUTO_MIN_SAMPLE_EPOCHS // (3 * epochs) + 1) == 3  # at most one per model
    assert train_processes(cfg, 3, AUTO_MIN_SAMPLE_EPOCHS // (3 * epochs) - 1) == 1  # a start costs more
    assert train_processes(load_config(None, ["retrain.processes=1"]), 15, 2100) == 1
    assert train_processes(load_config(None, ["retrain.processes=3"]), 15, 10) == 3  # asked for: as asked

    import torch

    import soxai.saliency.methods

    monkeypatch.setattr(soxai.saliency.methods, "resolve_device", lambda name: torch.device("cuda"))
    assert train_processes(cfg, 15, 2100) == 1  # one GPU: the models take turns on it


def test_processes__not_hashed_and_checked_at_load():
    base = load_config(None).section_hash("retrain", "model", "train")
    assert load_config(None, ["retrain.processes=4"]).section_hash("retrain", "model", "train") == base
    with pytest.raises(ConfigError, match="retrain.processes"):
        load_config(None, ["retrain.processes=0"])


@pytest.mark.slow
def test_run_train__in_two_processes_writes_the_files_of_one(tiny_explained, tmp_path):
    from soxai.train.runner import run_train

    _, base = tiny_explained
    fewer = ["retrain.seeds=[0, 1]", "retrain.variants=[baseline, pruned]", "train.epochs=1"]  # 4 short models
    alone, pooled = (RunDir(shutil.copytree(base.root, tmp_path / name)) for name in ("alone", "pooled"))
    # the reference trains in a process of its own, beside the pool: a model trained in this pytest process can
    # differ in its last float digits from one trained in a fresh process (tests/train/test_train_stage.py)
    code = ("import json; from soxai.config import load_config; from soxai.run_dir import RunDir; "
            "from soxai.train.runner import run_train; "
            f"run = RunDir({str(alone.root)!r}); "
            f"print(json.dumps(run_train(load_config(run.config, {[*fewer, 'retrain.processes=1']!r}), run).metrics))")
    # on the threads each of the pool's 2 workers gets: one thread and several can round differently (CONFIG.md)
    threads = str(max(1, usable_cores() // 2))
    reference = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                                 env={**os.environ, "SOXAI_PROGRESS": "0", "OMP_NUM_THREADS": threads})
    try:
        cfg = load_config(pooled.config, [*fewer, "retrain.processes=2"])
        record = run_train(cfg, pooled)
    finally:
        out, _ = reference.communicate(timeout=300)
    assert reference.returncode == 0
    assert record.metrics == {**json.loads(out), "processes": 2} and record.metrics["models_trained"] == 4
    files = sorted(p.relative_to(alone.root / "train") for p in (alone.root / "train").rglob("*")
                   if p.is_file() and p.name != "stage.json")
    assert len(files) == 3 * len(cfg.retrain.variants) * len(cfg.retrain.seeds)
    for name in files:  # checkpoints, metrics and training ids, byte for byte
        assert (pooled.root / "train" / name).read_bytes() == (alone.root / "train" / name).read_bytes(), name


@pytest.mark.slow
def test_process_pool__a_failing_piece_raises_its_own_error_and_the_workers_end():
    pieces = [functools.partial(math.sqrt, 4.0), functools.partial(math.sqrt, -1.0), functools.partial(time.sleep, 120)]
    started = time.monotonic()
    with pytest.raises(ValueError, match="math domain error"):
        with process_pool(2) as pool:
            workers = pool.executor._processes  # noqa: SLF001 — the test looks at what the block must end
            seen = []
            parallel_map(operator.call, pieces, pool=pool, on_result=seen.append)
    assert seen == [2.0]
    assert workers and not any(worker.is_alive() for worker in workers.values())
    assert time.monotonic() - started < 60  # the sleeping piece was stopped, not waited for


class _BrokenExecutor:
    """An executor whose first piece finished before a worker died; the others fail with the pool."""

    def __init__(self) -> None:
        self.submitted = 0

    def submit(self, fn, *args):
        self.submitted += 1
        future = Future()
        if self.submitted == 1:
            future.set_result("from the worker")
        else:
            future.set_exception(BrokenProcessPool("A child process terminated abruptly"))
        return future


def test_parallel_map__a_broken_pool_keeps_finished_pieces_and_runs_the_rest_here(caplog):
    ran = []

    def piece(item):
        ran.append(item)
        return f"here {item}"

    pool = LocalPool(_BrokenExecutor(), threads=1)
    noted = []
    with caplog.at_level(logging.WARNING, logger="soxai.parallel"):
        assert parallel_map(piece, [1, 2, 3], pool=pool, on_result=noted.append) == [
            "from the worker", "here 2", "here 3"]
        assert parallel_map(piece, [4, 5], pool=pool) == ["here 4", "here 5"]
    assert ran == [2, 3, 4, 5]  # the finished piece is not run again
    assert noted == ["from the worker", "here 2", "here 3"]  # each result noted once (a progress bar's advance)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "the pieces without a result run in this process" in warnings[0]
    assert 'if __name__ == "__main__":' in warnings[0] and "retrain.processes lower" in warnings[0]
    assert pool.executor.submitted == 3  # a broken pool is not tried again


def test_process_pool__one_process_or_a_dask_worker_makes_no_pool():
    with process_pool(1) as pool:
        assert pool is None


def test_worker__exits_once_its_parent_is_gone():
    # a worker whose parent was killed outright is re-parented: os.getppid() is no longer the pid it was given
    code = "from soxai.parallel import _exit_with; _exit_with(-1, 0.01)"
    done = subprocess.run([sys.executable, "-c", code], timeout=60)
    assert done.returncode == 1


def test_init_run__refuses_to_start_in_a_worker_importing_the_script(tmp_path, monkeypatch):
    import multiprocessing

    from soxai.runs import init_run

    monkeypatch.setattr(multiprocessing.current_process(), "_inheriting", True, raising=False)
    with pytest.raises(ConfigError, match='__name__ == "__main__"'):
        init_run(load_config(None), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_parallel_map__a_pool_takes_only_the_arguments_it_was_made_with():
    pool = LocalPool(_BrokenExecutor(), threads=1, shared=("inputs",))
    with pytest.raises(ValueError, match="process_pool"):
        parallel_map(math.pow, [2.0], 3.0, pool=pool)
    assert pool.executor.submitted == 0


# An unguarded script with a pool whose shared arguments are over a pipe's 64 KiB: each spawned worker re-imports
# it and dies there (a process cannot start workers while it is still starting).
UNGUARDED = """
import sys
sys.path.insert(0, sys.argv[1])
from soxai.parallel import parallel_map, process_pool
def piece(item, data):
    return item + len(data)
big = bytes(1_000_000)
with process_pool(2, big) as pool:
    print(parallel_map(piece, [0, 1], big, pool=pool))
"""


def test_process_pool__workers_that_die_starting_leave_their_pieces_here_not_a_hang(tmp_path):
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED)
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run([sys.executable, str(script), repo], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "SOXAI_PROGRESS": "0"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[1000000, 1000001]"
    assert "the pieces without a result run in this process" in done.stderr


def test_process_pool__no_room_for_the_inputs_runs_here_with_a_warning(monkeypatch, caplog):
    import errno
    import tempfile

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "mkstemp", full)
    with caplog.at_level(logging.WARNING, logger="soxai.parallel"), process_pool(2, b"inputs") as pool:
        assert pool is None
    assert "No space left on device" in caplog.text and "TMPDIR" in caplog.text


KILLED_HOLDING_A_POOL = """
import sys, time
sys.path.insert(0, sys.argv[1])
from soxai.parallel import process_pool
if __name__ == "__main__":
    with process_pool(2, bytes(1000)):
        print("in the pool", flush=True)
        time.sleep(120)
"""


def test_process_pool__inputs_left_by_a_killed_process_are_removed_by_the_next_pool(tmp_path, monkeypatch, caplog):
    import signal
    import tempfile

    script = tmp_path / "holds.py"
    script.write_text(KILLED_HOLDING_A_POOL)
    folder = tmp_path / "tmp"
    folder.mkdir()
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    holder = subprocess.Popen([sys.executable, str(script), repo], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "TMPDIR": str(folder)})
    try:
        assert holder.stdout.readline().strip() == "in the pool"
        left = sorted(folder.glob(f"soxai-pool-{holder.pid}-*.pkl"))
        assert len(left) == 1
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert left[0].exists()  # a kill -9 skips the pool's own removal
    from soxai.parallel import _host

    assert left[0].name.startswith(f"soxai-pool-{holder.pid}-{_host()}-")
    running = folder / f"soxai-pool-{os.getpid()}-{_host()}-abc.pkl"  # a process still running: its file stays
    running.write_bytes(b"")
    elsewhere = folder / f"soxai-pool-{holder.pid}-another_machine-abc.pkl"  # a shared TMPDIR: stays
    elsewhere.write_bytes(b"")
    other = folder / "soxai-pool-notes.pkl"  # not a pool's name: stays
    other.write_bytes(b"")
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    with caplog.at_level(logging.INFO, logger="soxai.parallel"), process_pool(2, b"inputs"):
        mine = set(folder.glob(f"soxai-pool-{os.getpid()}-*.pkl"))
    assert not left[0].exists() and f"process {holder.pid} is gone" in caplog.text
    assert running.exists() and elsewhere.exists() and other.exists() and len(mine) == 2
    assert not (set(folder.glob(f"soxai-pool-{os.getpid()}-*.pkl")) - {running})  # this pool's own file went
