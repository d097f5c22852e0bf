"""run_in_process: the Prefect-free stage loop the tests and benchmarks share."""

import pytest

from soxai.config import load_config
from soxai.errors import ConfigError, DataError
from soxai.run_dir import read_json
from soxai.runs import run_in_process


def test_run_in_process__stops_before_until_and_marks_completed(tmp_path):
    cfg = load_config(None, ["data.source=digits", "data.n_train_per_class=20", "data.n_val_per_class=5",
                             "data.n_test_per_class=5"])
    run = run_in_process(cfg, tmp_path / "r", until="model")
    assert run.samples.is_file() and not run.baseline_model.exists()
    assert read_json(run.run_json)["status"] == "completed"
    with pytest.raises(ConfigError, match="unknown stage 'modle'"):
        run_in_process(cfg, tmp_path / "r", until="modle")


def test_run_in_process__a_failing_stage_marks_the_run_failed_and_raises(tmp_path):
    cfg = load_config(None, ["data.source=manifest", f"data.manifest={tmp_path / 'missing.csv'}"])
    with pytest.raises(DataError, match="does not exist"):
        run_in_process(cfg, tmp_path / "r")
    state = read_json(tmp_path / "r" / "run.json")
    assert state["status"] == "failed" and "DataError" in state["error"]
