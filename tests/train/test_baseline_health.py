"""The trained baseline is checked before anything explains it (soxai.train.health, the model stage)."""

import logging
from pathlib import Path

import numpy as np
import pytest

from soxai.config import load_config
from soxai.errors import StageError
from soxai.run_dir import RunDir, read_json
from soxai.runs import run_in_process
from soxai.train.health import check_not_at_chance

SMOKE = Path(__file__).resolve().parents[2] / "configs" / "smoke.yaml"
TINY = ["data.n_train_per_class=40", "data.n_val_per_class=5", "data.n_test_per_class=10", "train.epochs=2"]
# a rate so small that two epochs change nothing: the baseline answers one class, a third of a balanced val split
UNTRAINED = [*TINY, "train.lr=1e-12", "train.epochs=1"]


def test_run_model__infinite_lr__stops_naming_train_lr_and_writes_no_checkpoint(tmp_path):
    cfg = load_config(SMOKE, [*TINY, "train.lr=.inf", "train.epochs=1"])
    with pytest.raises(StageError, match=r"baseline's weights are NaN or infinite after training .*train.lr=inf is "
                                         r"not a finite number. Set a finite rate, e.g. the default train.lr=0.002"):
        run_in_process(cfg, tmp_path / "run", until="saliency")
    run = RunDir(tmp_path / "run")
    assert not run.baseline_model.exists() and not run.stage_json("model").exists()


def test_run_model__diverging_finite_lr__stops_naming_train_lr(tmp_path):
    cfg = load_config(SMOKE, [*TINY, "train.lr=1e30", "train.epochs=1"])
    with pytest.raises(StageError, match=r"training diverged at train.lr=1e\+30 .*Set a smaller rate"):
        run_in_process(cfg, tmp_path / "run", until="saliency")


def test_run_model__chance_level_baseline__refused(tmp_path):
    cfg = load_config(SMOKE, UNTRAINED)
    with pytest.raises(StageError, match=r"baseline's val accuracy is 0.3\d\d on 15 samples, within 0.05 of chance "
                                         r"\(0.333: 1/3 classes\).*train.allow_chance_baseline=true"):
        run_in_process(cfg, tmp_path / "run", until="saliency")
    assert not RunDir(tmp_path / "run").baseline_model.exists()


def test_run_model__chance_level_baseline_allowed__warns_and_goes_on(tmp_path, caplog):
    cfg = load_config(SMOKE, [*UNTRAINED, "train.allow_chance_baseline=true"])
    with caplog.at_level(logging.WARNING, logger="soxai"):
        run = run_in_process(cfg, tmp_path / "run", until="saliency")
    assert run.baseline_model.is_file()
    assert read_json(run.baseline_metrics)["val"]["accuracy"] < 0.4
    assert any("within 0.05 of chance" in r.getMessage() and "allow_chance_baseline is true" in r.getMessage()
               for r in caplog.records)


def test_check_not_at_chance__majority_share_is_the_bar_when_larger():
    labels = np.array([0] * 8 + [1] * 2)  # always answering 0 scores 0.8
    with pytest.raises(StageError, match=r"chance \(0.800: always answering the commonest class, 80% of val\)"):
        check_not_at_chance({"val": {"accuracy": 0.82}}, labels, "val", 2, allow=False)
    check_not_at_chance({"val": {"accuracy": 0.9}}, labels, "val", 2, allow=False)  # 0.1 above it: goes on


def test_check_not_at_chance__loaded_checkpoint__names_it_in_the_fix():
    labels = np.array([0, 1, 2] * 5)
    with pytest.raises(StageError, match=r"Check that model.checkpoint /m.pt was trained on these classes"):
        check_not_at_chance({"val": {"accuracy": 0.3}}, labels, "val", 3, allow=False, checkpoint="/m.pt")
