"""The runner section (soxai.scaleout.RunnerConfig): one executor setting for the whole run, in no hash, refused
before anything is written when its scheduler does not answer."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from soxai.cli import app
from soxai.config import _NOT_HASHED, Config, load_config
from soxai.errors import ConfigError
from soxai.scaleout import RunnerConfig, with_flags

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
SMOKE = DEMO.parent / "smoke.yaml"


def _closed_port() -> int:
    with socket.socket() as probe:  # free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _hash_without_a_runner_section(cfg: Config) -> str:
    """The manifest's config_hash as it was computed before the runner section existed: every other section."""
    dumped = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in ("runner", "task")}
    for section, fields in _NOT_HASHED.items():
        for field in fields:
            dumped[section].pop(field, None)
    return hashlib.sha256(json.dumps(dumped, sort_keys=True).encode()).hexdigest()[:16]


@pytest.mark.parametrize("runner", [[], ["runner.local_workers=2"], ["runner.address=tcp://10.0.0.1:8786"]])
def test_config_hash__runner_never_changes_the_demo_config_hash(runner):
    cfg = load_config(DEMO, runner)
    assert cfg.section_hash(*Config.model_fields) == _hash_without_a_runner_section(load_config(DEMO))
    assert cfg.section_hash("runner") == load_config(DEMO).section_hash()


def test_to_yaml__runner_at_its_default_is_not_written_and_a_set_one_reads_back(tmp_path):
    assert "runner" not in load_config(DEMO).to_yaml()
    assert "runner" not in load_config(DEMO).model_dump(mode="json")
    cfg = load_config(DEMO, ["runner.local_workers=3"])
    (tmp_path / "config.yaml").write_text(cfg.to_yaml())
    assert load_config(tmp_path / "config.yaml").runner == RunnerConfig(local_workers=3)
    assert Config.model_validate(cfg.model_dump(mode="json")).runner.local_workers == 3  # as the flows get it


def test_runner__unknown_key_lists_the_allowed_keys():
    with pytest.raises(ConfigError, match=r"did you mean runner.address\? \(allowed here: address, local_workers\)"):
        load_config(None, ["runner.adress=tcp://h:8786"])


def test_runner__address_and_local_workers_together_name_the_fix():
    with pytest.raises(ConfigError, match="runner.local_workers: 0 to use the scheduler"):
        load_config(None, ["runner.address=tcp://h:8786", "runner.local_workers=2"])


def test_with_flags__dask_flags_set_the_runner():
    assert with_flags(RunnerConfig()) == RunnerConfig()
    assert with_flags(RunnerConfig(), dask=True) == RunnerConfig(local_workers=2)
    assert with_flags(RunnerConfig(local_workers=4), dask=True) == RunnerConfig(local_workers=4)
    assert with_flags(RunnerConfig(local_workers=4), address="tcp://h:1") == RunnerConfig(address="tcp://h:1")
    assert not RunnerConfig().on_dask and RunnerConfig(local_workers=1).on_dask


def test_soxai_run__config_address_that_does_not_answer_fails_before_any_file(tmp_path):
    port = _closed_port()
    res = CliRunner().invoke(app, ["run", str(SMOKE), "--run-dir", str(tmp_path / "run"),
                                   "--set", f"runner.address=tcp://127.0.0.1:{port}"])
    assert res.exit_code == 2, res.output
    assert f"no Dask scheduler answers at tcp://127.0.0.1:{port}" in res.output
    assert not (tmp_path / "run").exists()


def test_run_stages__a_scheduled_runs_config_address_that_does_not_answer_fails_before_any_stage(tmp_path):
    from flows.pipeline import _run_stages
    from soxai.runs import init_run

    port = _closed_port()
    cfg = load_config(SMOKE, [f"runner.address=tcp://127.0.0.1:{port}"])
    run = init_run(cfg, tmp_path / "run")  # as a deployment's flow makes it, then reads the runner
    with pytest.raises(ConfigError, match=f"no Dask scheduler answers at tcp://127.0.0.1:{port}"):
        _run_stages(("data",), cfg.model_dump(mode="json"), str(run.root))
    state = json.loads(run.run_json.read_text())
    assert state["status"] == "failed" and "no Dask scheduler answers" in state["error"]
    assert not run.stage_json("data").exists()
