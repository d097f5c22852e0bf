"""The soxai pipeline as a Prefect 3 flow. Read top to bottom, it is the data flow of DESIGN.md:

data -> train baseline -> saliency -> embed -> concepts -> bias flags -> pruned manifest -> retrain
-> compare -> report

Tasks pass ``(config, run_dir)`` in and small stage records out — never tensors or frames. Caching
is soxai's own (fingerprints in each ``stage.json``), so Prefect's is off.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from soxai.config import Config
from soxai.run_dir import RunDir
from soxai.runs import finish_run, stage_runners

RUNNERS = stage_runners()  # data, model, saliency, embed, concepts, bias, manifest, train, compare, report
EXPLAIN_STAGES = ("data", "model", "saliency", "embed", "concepts", "bias", "manifest")
RETRAIN_STAGES = ("train", "compare", "report")


@task(cache_policy=NO_CACHE, task_run_name="{stage}")
def stage_task(stage: str, config: dict[str, Any], run_dir: str) -> dict[str, Any]:
    record = RUNNERS[stage](Config.model_validate(config), RunDir(run_dir))
    get_run_logger().info(
        "%s: %s in %.1f s", stage, "reused" if record.reused else "computed", record.seconds
    )
    return record.to_dict()


def _run_stages(stages: tuple[str, ...], config: dict[str, Any], run_dir: str) -> dict[str, Any]:
    # Prefect forwards the "soxai" logger (PREFECT_LOGGING_EXTRA_LOGGERS) but leaves its level at
    # the root's WARNING; the library's stage messages are INFO.
    logging.getLogger("soxai").setLevel(logging.INFO)
    records: dict[str, Any] = {}
    try:
        for stage in stages:  # each stage reads the files the one before it wrote
            records[stage] = stage_task(stage, config, run_dir)
    except BaseException as exc:
        finish_run(RunDir(run_dir), "failed", f"{type(exc).__name__}: {exc}")
        raise
    finish_run(RunDir(run_dir), "completed")
    return records


@flow(name="soxai-pipeline", flow_run_name="{run_id}", log_prints=True)
def pipeline(config: dict[str, Any], run_dir: str, run_id: str = "run") -> dict[str, Any]:
    """The whole loop, from data to report."""
    return _run_stages(EXPLAIN_STAGES + RETRAIN_STAGES, config, run_dir)


@flow(name="soxai-explain", flow_run_name="{run_id}", log_prints=True)
def explain(config: dict[str, Any], run_dir: str, run_id: str = "run") -> dict[str, Any]:
    """Stop after the pruned manifest."""
    return _run_stages(EXPLAIN_STAGES, config, run_dir)


@flow(name="soxai-retrain", flow_run_name="{run_id}", log_prints=True)
def retrain(config: dict[str, Any], run_dir: str, run_id: str = "run") -> dict[str, Any]:
    """Retrain the variants from an existing manifest, compare, report."""
    return _run_stages(RETRAIN_STAGES, config, run_dir)
