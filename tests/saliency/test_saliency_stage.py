"""The saliency stage: shards, resume after a kill, the explained class, degenerate maps."""

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
from soxai.run_dir import RunDir, read_json
from soxai.runs import init_run
from soxai.saliency.runner import (
    _degenerate,
    prepare_saliency,
    read_index,
    read_maps,
    run_saliency,
    run_saliency_shard,
)
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
    with pytest.raises(StageError, match=r"are degenerate \(\d+ all zero, 0 constant, 0 not finite") as caught:
        run_saliency(load_config(run.config, ["saliency.method=gradient"]), run)
    assert "saliency.target=predicted" in str(caught.value)
    assert "Constant maps usually mean" not in str(caught.value)
    assert not run.stage_json("saliency").exists()


def test_run_saliency__mostly_constant_maps_fail_with_a_hint_on_what_they_mean(trained, tmp_path, monkeypatch):
    from soxai.errors import StageError
    from soxai.saliency import methods

    _, base = trained
    run = _copy(base, tmp_path / "constant")

    def flat(model, x, target, **kwargs):  # what Grad-CAM on a 1x1 layer gives after upsampling
        return x * 0.0 + 0.5

    monkeypatch.setitem(methods.SALIENCY_METHODS, "gradient", flat)
    with pytest.raises(StageError, match=r"0 all zero, (\d+) constant, 0 not finite") as caught:
        run_saliency(load_config(run.config, ["saliency.method=gradient"]), run)
    assert "Constant maps usually mean" in str(caught.value) and "model.layer" in str(caught.value)
    assert not run.stage_json("saliency").exists()


def test_run_saliency__constant_maps_counted_in_the_stage_metrics(trained, tmp_path, monkeypatch):
    import torch

    from soxai.saliency import methods

    _, base = trained
    run = _copy(base, tmp_path / "some-constant")

    def flat_for_class_0(model, x, target, **kwargs):  # a minority of constant maps: counted, not fatal
        return torch.where((target == 0)[:, None, None, None], torch.full_like(x, 0.5), x.detach())

    monkeypatch.setitem(methods.SALIENCY_METHODS, "gradient", flat_for_class_0)
    record = run_saliency(load_config(run.config, ["saliency.method=gradient"]), run)

    n_class_0 = int((read_index(run)["target"] == 0).sum())
    assert 0 < n_class_0 < record.metrics["n_maps"] / 2
    assert record.metrics["constant"] == n_class_0
    assert record.metrics["all_zero"] == record.metrics["non_finite"] == 0
    assert read_json(run.stage_json("saliency"))["metrics"]["constant"] == n_class_0


def test_degenerate__counts_zero_constant_and_non_finite_maps_apart():
    maps = np.array([
        np.zeros((3, 4)),                      # all zero
        np.full((3, 4), -2.0),                 # constant, non-zero
        np.full((3, 4), 1e-3),                 # constant, tiny
        np.where(np.eye(3, 4) > 0, np.nan, 1),  # not finite (and constant elsewhere): non-finite only
        np.where(np.eye(3, 4) > 0, np.inf, 0),  # not finite
        np.eye(3, 4),                          # an ordinary map
        np.eye(3, 4) * 1e-30 + 1,              # rounds to constant in float32
    ])

    assert _degenerate(maps) == (1, 3, 2)
    assert _degenerate(maps[5:6]) == (0, 0, 0)
    assert _degenerate(np.zeros((0, 3, 4))) == (0, 0, 0)


@pytest.mark.parametrize("fanned_out", [False, True])
def test_run_saliency__target_predicted_explains_the_model_prediction(trained, tmp_path, fanned_out):
    import torch

    from soxai.data.runner import read_images, read_samples
    from soxai.saliency.methods import compute_maps
    from soxai.train.runner import load_baseline

    _, base = trained
    run = _copy(base, tmp_path / "predicted")
    cfg = load_config(run.config, ["saliency.method=gradient", "saliency.target=predicted"])
    if fanned_out:  # shards made first, as the flow's workers make them; the stage then only predicts
        for shard in range(prepare_saliency(cfg, run)):
            run_saliency_shard(cfg, run, shard)
    run_saliency(cfg, run)

    index = read_index(run)
    rows = read_samples(run).set_index("sample_id").loc[index["sample_id"], "row"].to_numpy()
    images = np.asarray(read_images(run)[rows], dtype=np.float32)
    model = load_baseline(cfg, run)
    with torch.no_grad():
        pred = model(torch.from_numpy(images)).argmax(dim=1).numpy()
    np.testing.assert_array_equal(index["target"].to_numpy(), pred)
    np.testing.assert_array_equal(index["pred"].to_numpy(), pred)
    wrong = index["label"].to_numpy() != pred
    assert wrong.any(), "the one-epoch baseline should get some training samples wrong, else this proves nothing"

    def peak_scaled(maps):  # stored maps may be rescaled per map before float16 (runner._to_half)
        return maps / np.abs(maps).reshape(len(maps), -1).max(axis=1)[:, None, None]

    options = {"method": "gradient", "batch_size": cfg.saliency.batch_size, "ig_steps": cfg.saliency.ig_steps,
               "reduce": cfg.saliency.reduce, "device": torch.device("cpu")}
    stored = peak_scaled(read_maps(run, index)[wrong])
    of_pred = peak_scaled(compute_maps(model, images[wrong], pred[wrong], **options))
    of_label = peak_scaled(compute_maps(model, images[wrong], index["label"].to_numpy()[wrong], **options))
    # Stored maps are float16 (unit roundoff 2**-11): a value and the map's peak are each rounded once, so the
    # peak-scaled values (|v| <= 1) are within 2 * 2**-11, plus 2**-25 / 1e-3 for float16 subnormals (peaks
    # below 1e-3 are scaled up first): ~1.0e-3 (7.3e-4 seen). atol 2e-3 keeps that bound and the same again
    # for the float32 recomputation here, which need not batch the images as the stage did.
    np.testing.assert_allclose(stored, of_pred, atol=2e-3)
    assert np.abs(stored - of_label).max() > 0.1


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


def test_run_saliency__shards_made_by_tasks_bring_their_predictions_so_the_stage_predicts_nothing(
        trained, tmp_path, monkeypatch):
    from soxai.train import loop

    cfg, base = trained
    single = _copy(base, tmp_path / "single")
    cfg = load_config(single.config, ["saliency.method=gradient", "saliency.target=predicted"])
    run_saliency(cfg, single)
    fanned = _copy(base, tmp_path / "fanned")
    n = prepare_saliency(cfg, fanned)
    for shard in range(n):
        run_saliency_shard(cfg, fanned, shard)
    assert all(fanned.saliency_predictions(s).is_file() for s in range(n))
    forward_passes = []
    real = loop.predict_logits
    monkeypatch.setattr(loop, "predict_logits", lambda *a, **k: forward_passes.append(1) or real(*a, **k))
    run_saliency(cfg, fanned)
    assert forward_passes == []  # the index took the tasks' predictions
    assert not list((fanned.root / "saliency").glob("pred-*.npy"))  # folded in, then deleted
    assert fanned.saliency_index.read_bytes() == single.saliency_index.read_bytes()

    # a task that died between its shard and its predictions: the stage predicts that shard itself
    again = _copy(base, tmp_path / "again")
    for shard in range(prepare_saliency(cfg, again)):
        run_saliency_shard(cfg, again, shard)
    again.saliency_predictions(1).unlink()
    forward_passes.clear()
    run_saliency(cfg, again)
    assert len(forward_passes) == 1
    assert again.saliency_index.read_bytes() == single.saliency_index.read_bytes()

    # predictions whose shard is gone go when the stage makes that shard itself, so a crash before the index
    # cannot leave them to be paired with it; a new fingerprint deletes them with the shards
    from soxai.saliency import runner

    stale = _copy(base, tmp_path / "stale")
    for shard in range(prepare_saliency(cfg, stale)):
        run_saliency_shard(cfg, stale, shard)
    stale.saliency_shard(2).unlink()

    def crash(*args, **kwargs):
        raise RuntimeError("killed before the index")

    monkeypatch.setattr(runner, "write_parquet", crash)
    with pytest.raises(RuntimeError, match="killed before the index"):
        run_saliency(cfg, stale)
    monkeypatch.undo()
    assert stale.saliency_shard(2).is_file() and not stale.saliency_predictions(2).exists()
    assert stale.saliency_predictions(1).is_file()  # the tasks' own, still paired with their shards
    other = load_config(stale.config, ["saliency.method=input_x_gradient", "saliency.target=predicted"])
    prepare_saliency(other, stale)
    assert not list((stale.root / "saliency").glob("pred-*.npy"))
    assert not list((stale.root / "saliency").glob("shard-*.npy"))
