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


def test_environment__records_what_decides_the_rounding_beside_the_packages():
    """env.json names the CPU, the vector instructions torch's kernels use and the BLAS kernels picked at run time:
    the same code and packages on another CPU trained baselines that differed in the last digits."""
    import numpy as np  # noqa: F401 - its BLAS is loaded, so there is one to name

    from soxai.runs import environment

    cpu = environment()["cpu"]
    assert set(cpu) == {"model", "torch_capability", "blas"}
    assert isinstance(cpu["torch_capability"], str) and cpu["torch_capability"]
    assert cpu["blas"] and all({"internal_api", "version", "architecture"} <= set(lib) for lib in cpu["blas"])
