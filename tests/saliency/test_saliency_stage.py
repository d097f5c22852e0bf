"""The saliency stage: shards, resume after a kill, degenerate maps."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from soxai.config import load_config
from soxai.data.runner import run_data
from soxai.run_dir import RunDir
from soxai.runs import init_run
from soxai.saliency.runner import read_index, read_maps, run_saliency
from soxai.train.runner import run_model

REPO = Path(__file__).resolve().parents[2]
OVERRIDES = ["data.n_train_per_class=60", "data.n_val_per_class=5", "data.n_test_per_class=10", "train.epochs=1",
             "saliency.method=integrated_gradients", "saliency.shard_size=20", "saliency.batch_size=10"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    cfg = load_config(REPO / "configs" / "smoke.yaml", OVERRIDES)
    run = init_run(cfg, tmp_path_factory.mktemp("sal") / "base")
    run_data(cfg, run)
    run_model(cfg, run)
    return cfg, run


def _copy(run: RunDir, dest: Path) -> RunDir:
    shutil.copytree(run.root, dest)
    return RunDir(dest)


def _stage_process(run: RunDir) -> subprocess.Popen:
    """The saliency stage of ``run`` in a fresh process, as `soxai run` would run it: the test process's
    own state (allocator, thread pools) left by earlier tests can move a float16 map by one unit."""
    code = (
        "import json; from soxai.config import load_config; from soxai.run_dir import RunDir; "
        "from soxai.saliency.runner import run_saliency; "
        f"run = RunDir({str(run.root)!r}); print(json.dumps(run_saliency(load_config(run.config), run).reused))"
    )
    return subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "SOXAI_PROGRESS": "0"},
                            stdout=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_run_saliency__resume_after_kill_recomputes_only_missing_shards(trained, tmp_path):
    _, base = trained
    whole = _copy(base, tmp_path / "whole")
    assert _stage_process(whole).communicate(timeout=300)[0].strip() == "false"
    expected = read_maps(whole, read_index(whole))

    killed = _copy(base, tmp_path / "killed")
    proc = _stage_process(killed)
    deadline = time.time() + 120
    while not killed.saliency_shard(2).exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not killed.stage_json("saliency").exists(), "the stage finished before it could be killed"
    done = {p: p.stat().st_mtime_ns for p in (killed.root / "saliency").glob("shard-*.npy")}
    assert len(done) >= 3

    resumed = _stage_process(killed)
    assert resumed.communicate(timeout=300)[0].strip() == "false"  # run, not reused: the stage was incomplete
    assert all(p.stat().st_mtime_ns == t for p, t in done.items())  # finished shards were not recomputed
    np.testing.assert_array_equal(read_maps(killed, read_index(killed)), expected)


def test_run_saliency__other_method_discards_old_shards(trained, tmp_path):
    cfg, base = trained
    run = _copy(base, tmp_path / "switch")
    cfg_fast = load_config(run.config, ["saliency.method=gradient"])
    run_saliency(cfg_fast, run)
    first = read_maps(run, read_index(run))
    cfg_other = load_config(run.config, ["saliency.method=input_x_gradient"])
    run_saliency(cfg_other, run)
    second = read_maps(run, read_index(run))
    assert not np.array_equal(first, second)
    assert run_saliency(cfg_other, run).reused


def test_run_saliency__mostly_zero_maps_fail_with_a_hint(trained, tmp_path, monkeypatch):
    from soxai.errors import StageError
    from soxai.saliency import methods

    cfg, base = trained
    run = _copy(base, tmp_path / "zero")

    def zeros(model, x, target, **kwargs):
        return x * 0.0

    monkeypatch.setitem(methods.SALIENCY_METHODS, "gradient", zeros)
    with pytest.raises(StageError, match="all zero or not finite"):
        run_saliency(load_config(run.config, ["saliency.method=gradient"]), run)
    assert not run.stage_json("saliency").exists()


@pytest.mark.slow
def test_row_view__worker_prefetch_reads_the_same_batches(tmp_path):
    from soxai.saliency.runner import _RowView

    images = np.random.default_rng(0).random((10, 1, 4, 4)).astype(np.float32)
    np.save(tmp_path / "im.npy", images)
    mm = np.load(tmp_path / "im.npy", mmap_mode="r")
    rows = np.array([9, 3, 5, 0, 1, 7, 2])
    view = _RowView(mm, rows, batch_size=3, num_workers=1)
    got = [view[start : min(start + 3, len(rows))] for start in range(0, len(rows), 3)]
    np.testing.assert_array_equal(np.concatenate(got), images[rows])
    np.testing.assert_array_equal(view[1:2], images[rows[1:2]])  # out of sequence: read directly
