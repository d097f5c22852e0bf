"""The train stage: a kill between models loses at most the model in progress."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from soxai.models.weights import read_checkpoint
from soxai.run_dir import RunDir


@pytest.mark.slow
def test_run_train__resume_after_kill_equals_uninterrupted(tiny_explained, tmp_path):
    from soxai.train.runner import run_train

    cfg, base = tiny_explained

    def train_in_a_new_process(run: RunDir) -> subprocess.Popen:
        # Every training run of this test runs in a process of its own: with one thread (OMP_NUM_THREADS=1) a
        # model trained in this pytest process differed from the same model trained in a new process by up to
        # 6e-5 in its weights (float32 rounding; equal metrics), so comparing across the two would test the
        # float arithmetic of the process, not the resume.
        code = ("from soxai.config import load_config; from soxai.run_dir import RunDir; "
                "from soxai.train.runner import run_train; "
                f"run = RunDir({str(run.root)!r}); run_train(load_config(run.config), run)")
        return subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "SOXAI_PROGRESS": "0"})

    whole = RunDir(shutil.copytree(base.root, tmp_path / "whole"))
    killed = RunDir(shutil.copytree(base.root, tmp_path / "killed"))
    uninterrupted = train_in_a_new_process(whole)  # beside the killed one: a run's results do not depend on timing
    try:
        proc = train_in_a_new_process(killed)
        first = killed.variant_metrics("baseline", 1)
        deadline = time.time() + 120
        while not first.exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not killed.stage_json("train").exists(), "the stage finished before it could be killed"
        survivors = {p: p.stat().st_mtime_ns for p in (killed.root / "train").rglob("metrics.json")}
        assert survivors
        assert uninterrupted.wait() == 0
    finally:
        if uninterrupted.poll() is None:
            uninterrupted.kill()
            uninterrupted.wait()

    assert train_in_a_new_process(killed).wait() == 0
    record = run_train(cfg, killed)  # every model is there now: the stage reuses them all
    assert record.metrics["models_reused"] >= len(survivors)
    assert all(p.stat().st_mtime_ns == t for p, t in survivors.items())
    for variant in cfg.retrain.variants:
        for seed in cfg.retrain.seeds:
            a = json.loads(whole.variant_metrics(variant, seed).read_text())
            b = json.loads(killed.variant_metrics(variant, seed).read_text())
            assert a == b
            wa = read_checkpoint(whole.variant_model(variant, seed))["state_dict"]
            wb = read_checkpoint(killed.variant_model(variant, seed))["state_dict"]
            assert all(torch.equal(wa[k], wb[k]) for k in wa)
