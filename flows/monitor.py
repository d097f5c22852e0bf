"""The monitor flow: new data scored and assigned to the concepts of a reference run.

data (the new samples) -> monitor (saliency with the reference model, concept assignment, drift,
exclusion list) -> a markdown artifact with the findings and a table artifact of the concept mix.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.pipeline import stage_task
from soxai.config import Config
from soxai.run_dir import RunDir, read_parquet
from soxai.runs import finish_run


@task(cache_policy=NO_CACHE, task_run_name="monitor")
def monitor_task(config: dict[str, Any], run_dir: str, reference_dir: str, splits: list[str],
                 alpha: float) -> dict[str, Any]:
    from soxai.monitor.runner import run_monitor

    record = run_monitor(Config.model_validate(config), RunDir(run_dir), RunDir(reference_dir), tuple(splits), alpha)
    get_run_logger().info("monitor: %s in %.1f s", "reused" if record.reused else "computed", record.seconds)
    return record.to_dict()


@flow(name="soxai-monitor", flow_run_name="{run_id}", log_prints=True)
def monitor(config: dict[str, Any], run_dir: str, reference_dir: str, run_id: str = "run",
            splits: list[str] | None = None, alpha: float = 0.01) -> dict[str, Any]:
    """Check the new samples of ``run_dir`` against the concepts of the run in ``reference_dir``."""
    logging.getLogger("soxai").setLevel(logging.INFO)
    try:
        records = {"data": stage_task("data", config, run_dir),
                   "monitor": monitor_task(config, run_dir, reference_dir, list(splits or ["train"]), alpha)}
    except BaseException as exc:
        finish_run(RunDir(run_dir), "failed", f"{type(exc).__name__}: {exc}")
        raise
    finish_run(RunDir(run_dir), "completed")
    publish_monitor(run_dir)
    return records


def publish_monitor(run_dir: str) -> None:
    from soxai.monitor.runner import summary_lines

    run = RunDir(run_dir)
    text = "\n".join(f"- {line}" for line in summary_lines(run))
    create_markdown_artifact(markdown=f"# soxai monitor `{run.root.name}`\n\n{text}\n", key="soxai-monitor",
                             description=f"monitor run {run.root.name}: {run.root}")
    mix = read_parquet(run.monitor_drift)
    rows = [{k: (round(v, 4) if isinstance(v, float) else v.item() if hasattr(v, "item") else v)
             for k, v in row.items()} for row in mix.to_dict(orient="records")]
    create_table_artifact(table=rows, key="soxai-monitor-mix", description="concept mix: new data vs reference")
