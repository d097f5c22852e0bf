"""Flows for deployments (prefect.yaml, ``soxai schedule``): each run makes a fresh run directory.

The flows of flows/pipeline.py take a resolved config and a run directory; a scheduled run has
neither yet. These take a config *file* (read when the run starts, so edits apply to the next run)
and a folder for run directories, and name each flow run after the run id they create.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from flows.pipeline import EXPLAIN_STAGES, RETRAIN_STAGES, _run_stages


def _load(config_path: str, overrides: list[str] | None):
    from soxai.config import load_config
    from soxai.runs import resolve_paths

    return resolve_paths(load_config(config_path, overrides or []))


def _new_run_id() -> str:
    """``<config name>-<timestamp>``: the flow run's name and the run directory's name."""
    from soxai.runs import default_run_dir

    params = flow_run.parameters
    return default_run_dir(_load(params["config_path"], params.get("overrides"))).name


def _start(config_path: str, runs_dir: str, overrides: list[str] | None) -> tuple[dict[str, Any], str]:
    from soxai.runs import init_run

    cfg = _load(config_path, overrides)
    run = init_run(cfg, Path(runs_dir).resolve() / flow_run.name)
    print(f"run directory: {run.root}")
    return cfg.model_dump(mode="json"), str(run.root)


@flow(name="soxai-scheduled-pipeline", flow_run_name=_new_run_id, log_prints=True)
def scheduled_pipeline(config_path: str, runs_dir: str = "runs", overrides: list[str] | None = None) -> str:
    """The whole loop on a config file, into a new run directory under ``runs_dir``; returns it."""
    config, run_dir = _start(config_path, runs_dir, overrides)
    _run_stages(EXPLAIN_STAGES + RETRAIN_STAGES, config, run_dir)
    return run_dir


@flow(name="soxai-scheduled-explain", flow_run_name=_new_run_id, log_prints=True)
def scheduled_explain(config_path: str, runs_dir: str = "runs", overrides: list[str] | None = None) -> str:
    """Up to the pruned manifest, into a new run directory under ``runs_dir``; returns it."""
    config, run_dir = _start(config_path, runs_dir, overrides)
    _run_stages(EXPLAIN_STAGES, config, run_dir)
    return run_dir


def _run_dir_name() -> str:
    return Path(flow_run.parameters["run_dir"]).name


@flow(name="soxai-scheduled-retrain", flow_run_name=_run_dir_name, log_prints=True)
def scheduled_retrain(run_dir: str) -> str:
    """Retrain, compare and report an existing run directory (e.g. after editing its bias overrides)."""
    from soxai.run_dir import RunDir
    from soxai.run_lock import writer_lock
    from soxai.runs import init_run, load_run_config

    run = RunDir(run_dir)
    cfg = load_run_config(run)
    with writer_lock(run.root):  # an existing run directory: nobody else may write while run.json is reset
        init_run(cfg, run.root)
        _run_stages(RETRAIN_STAGES, cfg.model_dump(mode="json"), str(run.root))
    return str(run.root)


def _monitor_run_id() -> str:
    from soxai.monitor.runner import monitor_config
    from soxai.run_dir import RunDir
    from soxai.runs import default_run_dir

    params = flow_run.parameters
    cfg = monitor_config(RunDir(params["reference_dir"]), params.get("config_path"), params.get("overrides") or [])
    return "monitor-" + default_run_dir(cfg).name


@flow(name="soxai-scheduled-monitor", flow_run_name=_monitor_run_id, log_prints=True)
def scheduled_monitor(reference_dir: str, config_path: str | None = None, runs_dir: str = "runs",
                      overrides: list[str] | None = None, splits: list[str] | None = None,
                      alpha: float = 0.01) -> str:
    """New data (``config_path``'s data section, default the reference's config) against a reference run."""
    from flows.monitor import monitor
    from soxai.monitor.runner import monitor_config
    from soxai.run_dir import RunDir
    from soxai.runs import init_run

    cfg = monitor_config(RunDir(reference_dir), config_path, overrides or [])
    run = init_run(cfg, Path(runs_dir).resolve() / flow_run.name)
    print(f"run directory: {run.root}")
    monitor.fn(cfg.model_dump(mode="json"), str(run.root), str(Path(reference_dir).resolve()), run.root.name,
               splits, alpha)
    return str(run.root)


DEPLOYABLE = {"pipeline": scheduled_pipeline, "explain": scheduled_explain, "retrain": scheduled_retrain,
              "monitor": scheduled_monitor}
