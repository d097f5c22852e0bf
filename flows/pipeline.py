"""The soxai pipeline as a Prefect 3 flow. Read top to bottom, it is the data flow of DESIGN.md:

data -> train baseline -> saliency -> embed -> concepts -> spectral view -> bias flags -> pruned manifest -> retrain
-> compare -> report

Tasks pass ``(config, run_dir)`` in and small stage records out — never tensors or frames. Caching
is soxai's own (fingerprints in each ``stage.json``), so Prefect's is off.

Where the stages run is the config's ``runner`` section (soxai.scaleout.RunnerConfig): in this process, or on a
Dask cluster, where the saliency shards are tasks of their own and the stages in :data:`DASK_STAGES` run on a
worker, from which they hand their independent pieces to the cluster (soxai.parallel.parallel_map: each retrained
model, each concept's bias test, each class's clustering, each block of samples placed or assigned beyond
embed.fit_sample). The others, and the report, run here.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.futures import wait

from soxai.config import Config
from soxai.errors import ConfigError
from soxai.run_dir import STAGES, RunDir
from soxai.run_lock import writer_lock
from soxai.runs import check_setup, finish_run, stage_runners
from soxai.scaleout import RunnerConfig, check_dask_address, keep_malloc_defaults
from soxai.stage import RETRAIN_STAGES

RUNNERS = stage_runners()  # data, model, saliency, embed, concepts, spectral, bias, manifest, train, compare, report
EXPLAIN_STAGES = STAGES[:STAGES.index(RETRAIN_STAGES[0])]  # data .. manifest: what `soxai explain` runs
# stages that run as a task on a Dask worker when the run is on a cluster, so that parallel_map can fan their
# pieces out; the rest need nothing a worker offers (saliency fans out at the flow level, below)
DASK_STAGES = ("embed", "concepts", "bias", "train")  # placement blocks, per-class HDBSCAN and assignment blocks too


def _retry_on_io_error(task, task_run, state) -> bool:
    # Retry what can fail for reasons outside soxai (a file system, a lost Dask worker), not a bad config,
    # nor an OS error a retry cannot change (a permission, a full disk: the model would train three times)
    from soxai.errors import is_permanent

    try:
        state.result()
    except OSError as exc:
        return not is_permanent(exc)
    except Exception:
        return False
    return False


@task(cache_policy=NO_CACHE, task_run_name="{stage}", retries=2, retry_delay_seconds=2,
      retry_condition_fn=_retry_on_io_error)
def stage_task(stage: str, config: dict[str, Any], run_dir: str) -> dict[str, Any]:
    logging.getLogger("soxai").setLevel(logging.INFO)  # also on a Dask worker (see _run_stages)
    record = RUNNERS[stage](Config.model_validate(config), RunDir(run_dir))
    get_run_logger().info(
        "%s: %s in %.1f s", stage, "reused" if record.reused else "computed", record.seconds
    )
    return record.to_dict()


def _run_stages(stages: tuple[str, ...], config: dict[str, Any], run_dir: str) -> dict[str, Any]:
    runner = RunnerConfig.model_validate(config.get("runner") or {})
    if runner.on_dask and not _on_dask():
        # a flow whose task runner was fixed before its config was read (a deployment's, soxai schedule's): the
        # stages as a subflow on the cluster the config names
        if runner.address:
            try:
                check_dask_address(runner.address, source="runner.address")
            except ConfigError as exc:  # before any stage: the run directory says why it stopped
                finish_run(RunDir(run_dir), "failed", f"ConfigError: {exc}")
                raise
        return stages_on_dask.with_options(task_runner=dask_task_runner(runner))(stages, config, run_dir)
    # Prefect forwards the "soxai" logger (PREFECT_LOGGING_EXTRA_LOGGERS) but leaves its level at
    # the root's WARNING; the library's stage messages are INFO.
    logging.getLogger("soxai").setLevel(logging.INFO)
    records: dict[str, Any] = {}
    # one writer at a time; re-entrant, so the CLI (which took it before writing config.yaml) passes; task
    # threads and Dask's shard workers write under the lock this process holds
    with writer_lock(run_dir):
        try:
            check_setup(Config.model_validate(config), RunDir(run_dir), stages)  # before the first stage writes
            for stage in stages:  # each stage reads the files the one before it wrote
                # the shard fan-out is the classification saliency's; a segmentation run's saliency is one task
                if stage == "saliency" and _on_dask() and config.get("task") != "segmentation":
                    _saliency_fan_out(config, run_dir)
                if stage in DASK_STAGES and _on_dask():
                    records[stage] = stage_task.submit(stage, config, run_dir).result()
                else:
                    records[stage] = stage_task(stage, config, run_dir)
        except BaseException as exc:
            finish_run(RunDir(run_dir), "failed", f"{type(exc).__name__}: {exc}")
            raise
        finish_run(RunDir(run_dir), "completed")
    publish_run(run_dir)
    return records


# ---------------------------------------------------------------- scale-out: saliency shards on Dask


def _on_dask() -> bool:
    ctx = FlowRunContext.get()
    return ctx is not None and type(ctx.task_runner).__name__ == "DaskTaskRunner"


@task(cache_policy=NO_CACHE, task_run_name="saliency-shard-{shard}", retries=2, retry_delay_seconds=2,
      retry_condition_fn=_retry_on_io_error)
def saliency_shard_task(shard: int, config: dict[str, Any], run_dir: str) -> str:
    from soxai.saliency.runner import run_saliency_shard

    return run_saliency_shard(Config.model_validate(config), RunDir(run_dir), shard)


@task(cache_policy=NO_CACHE, task_run_name="saliency-plan")
def saliency_plan_task(config: dict[str, Any], run_dir: str) -> int:
    from soxai.saliency.runner import prepare_saliency

    return prepare_saliency(Config.model_validate(config), RunDir(run_dir))


def _saliency_fan_out(config: dict[str, Any], run_dir: str) -> None:
    """One task per saliency shard on the Dask cluster; the saliency stage then finds them all made."""
    n_shards = saliency_plan_task(config, run_dir)
    futures = [saliency_shard_task.submit(s, config, run_dir) for s in range(n_shards)]
    wait(futures)
    for future in futures:
        future.result()  # raises the first failure


def dask_task_runner(runner: RunnerConfig | None = None, n_workers: int = 2, threads_per_worker: int = 1):
    """A DaskTaskRunner on the scheduler at ``runner.address``, or on a local cluster of ``runner.local_workers``
    processes (``n_workers`` without a runner section), ``threads_per_worker`` threads each."""
    from prefect_dask import DaskTaskRunner

    if runner is not None and runner.address:
        return DaskTaskRunner(address=runner.address)
    if runner is not None and runner.local_workers:
        n_workers = runner.local_workers
    keep_malloc_defaults()  # Dask's worker malloc setting made training tasks 2-3x slower (soxai.scaleout)
    return DaskTaskRunner(cluster_kwargs={"n_workers": n_workers, "threads_per_worker": threads_per_worker,
                                          "processes": True, "dashboard_address": None})


# ---------------------------------------------------------------- what Prefect's UI shows per run


def publish_run(run_dir: str) -> None:
    """A markdown artifact with the headline numbers and a table artifact of the concepts."""
    from soxai.report.summary import concept_table_rows, run_summary_markdown

    run = RunDir(run_dir)
    if not run.concepts.is_file():
        return  # a retrain of a run without concepts has nothing to show here
    create_markdown_artifact(markdown=run_summary_markdown(run), key="soxai-summary",
                             description=f"soxai run {run.root.name}: {run.root}")
    create_table_artifact(table=concept_table_rows(run), key="soxai-concepts",
                          description=f"concepts of soxai run {run.root.name}")


@flow(name="soxai-stages-on-dask", log_prints=True)
def stages_on_dask(stages: tuple[str, ...], config: dict[str, Any], run_dir: str) -> dict[str, Any]:
    """The stages of a flow whose config sends them to a Dask cluster (see :func:`_run_stages`)."""
    return _run_stages(stages, config, run_dir)


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
