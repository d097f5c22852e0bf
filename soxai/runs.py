"""Starting and finishing a run: config.yaml, run.json, env.json."""

from __future__ import annotations

import datetime as dt
import functools
import platform
import sys
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

# load_run_config lives in soxai.config, below the stages that read it (this module imports every stage's
# runner); it stays importable from here.
from soxai.config import Config, load_run_config  # noqa: F401
from soxai.errors import ConfigError
from soxai.run_dir import RunDir, read_json, write_json, write_text

PACKAGES = ("soxai", "torch", "captum", "numpy", "scikit-learn", "umap-learn", "hdbscan", "pandas", "pyarrow",
            "prefect", "pydantic")


def stage_runners() -> dict[str, Callable[[Config, RunDir], Any]]:
    """Every stage's runner, in run order: each stage reads what the ones before it wrote.

    The flows and the Prefect-free test helper both take the order from here.
    """
    from soxai.bias.runner import run_bias
    from soxai.compare.runner import run_compare
    from soxai.concepts.runner import run_concepts
    from soxai.data.runner import run_data
    from soxai.embed.runner import run_embed
    from soxai.manifest.runner import run_manifest
    from soxai.report.runner import run_report
    from soxai.saliency.runner import run_saliency
    from soxai.spectral.runner import run_spectral
    from soxai.train.runner import run_model, run_train

    runners = {
        "data": run_data, "model": run_model, "saliency": run_saliency, "embed": run_embed,
        "concepts": run_concepts, "spectral": run_spectral, "bias": run_bias, "manifest": run_manifest,
        "train": run_train, "compare": run_compare, "report": run_report,
    }
    # task: segmentation swaps in its own runners where a stage differs (soxai.segmentation.runners)
    return {name: _for_task(name, runner) for name, runner in runners.items()}


def _for_task(stage: str, classification: Callable[[Config, RunDir], Any]) -> Callable[[Config, RunDir], Any]:
    @functools.wraps(classification)
    def runner(cfg: Config, run: RunDir) -> Any:
        if cfg.task == "segmentation":
            from soxai.segmentation.runners import segmentation_runner

            return segmentation_runner(stage)(cfg, run)
        return classification(cfg, run)

    return runner


def check_setup(cfg: Config, run: RunDir | None, stages: Iterable[str]) -> None:
    """The checks before ``stages`` write anything: the model section for the task (a classifier's
    :func:`soxai.models.preflight.check_model_setup`, or a segmentation network's probe).

    Raises
    ------
    ConfigError or DataError
        Naming the key and the fix.
    """
    stages = tuple(stages)
    if cfg.task == "segmentation":
        from soxai.models.preflight import MODEL_STAGES
        from soxai.segmentation.model import check_segmentation_setup

        if set(stages) & set(MODEL_STAGES):
            info = read_json(run.data_info) if run is not None and "data" not in stages and run.data_info.is_file() \
                else None
            check_segmentation_setup(cfg, info)
        return
    from soxai.models.preflight import check_model_setup

    check_model_setup(cfg, run, stages)


def check_inputs(cfg: Config) -> None:
    """The user's data files checked before a command starts Prefect or makes its run directory: a manifest's table
    and its image paths (:func:`soxai.data.manifest_source.check_manifest`; the images, and masks, are read by the
    data stage). Not for a run on a remote Dask scheduler (``runner.address``): its files may be the workers' only.
    Raises DataError naming the rows and the fix."""
    if cfg.data.source == "manifest" and not cfg.runner.address:
        from soxai.data.manifest_source import check_manifest

        check_manifest(cfg.data)


def resolve_paths(cfg: Config) -> Config:
    """Make user file paths absolute (against the working directory) so the run dir is self-contained."""
    updates = {}
    if cfg.data.manifest:
        updates["data"] = cfg.data.model_copy(update={"manifest": str(Path(cfg.data.manifest).resolve())})
    if cfg.data.root:
        data = updates.get("data", cfg.data)
        updates["data"] = data.model_copy(update={"root": str(Path(cfg.data.root).expanduser().resolve())})
    if cfg.model.checkpoint:
        updates["model"] = cfg.model.model_copy(
            update={"checkpoint": str(Path(cfg.model.checkpoint).expanduser().resolve())})
    if cfg.bias.overrides:
        updates["bias"] = cfg.bias.model_copy(update={"overrides": str(Path(cfg.bias.overrides).resolve())})
    return cfg.model_copy(update=updates) if updates else cfg


def run_in_process(cfg: Config, root: str | Path, until: str | None = None) -> RunDir:
    """Run the stages in order in this process (no Prefect), up to but not including ``until`` (default: all).

    For tests and benchmarks. ``run.json`` ends ``completed``, or ``failed`` with the error, which is re-raised.
    Holds the run directory's writer lock throughout (:mod:`soxai.run_lock`): a second writer is refused.
    """
    from soxai.run_lock import writer_lock

    runners = stage_runners()
    if until is not None and until not in runners:
        raise ConfigError(f"unknown stage {until!r}; expected one of {list(runners)}")
    stages = list(runners)[: list(runners).index(until)] if until is not None else list(runners)
    with writer_lock(root):
        run = init_run(cfg, root)
        try:
            check_setup(cfg, run, stages)  # before the first stage writes: seconds, not a training run
            for name, runner in runners.items():
                if name == until:
                    break
                runner(cfg, run)
        except BaseException as exc:
            finish_run(run, "failed", f"{type(exc).__name__}: {exc}")
            raise
        finish_run(run, "completed")
    return run


def default_run_dir(cfg: Config, base: str | Path = "runs") -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(base) / f"{cfg.name}-{stamp}"


def init_run(cfg: Config, root: str | Path) -> RunDir:
    """Create (or reopen) a run directory and write the resolved config and the environment.

    Raises
    ------
    ConfigError
        If this is a worker process still importing the script that started soxai (an unguarded script would
        otherwise start a whole run again in each worker of ``retrain.processes`` or ``train.num_workers``).
    """
    process = sys.modules.get("multiprocessing")
    if process is not None and getattr(process.current_process(), "_inheriting", False):
        raise ConfigError(
            "a soxai run was started while a worker process was importing the script that started soxai (worker "
            "processes import it anew); put the script's work under `if __name__ == \"__main__\":`"
        )
    run = RunDir(root)
    if run.root.exists() and not run.root.is_dir():
        raise ConfigError(f"run directory {run.root} exists and is not a directory; choose another --run-dir")
    run.root.mkdir(parents=True, exist_ok=True)
    write_text(run.config, cfg.to_yaml())
    state = read_json(run.run_json) if run.run_json.is_file() else {}
    state.setdefault("run_id", run.root.name)
    state.setdefault("created_at", _now())
    state.update(status="running", started_at=_now())
    state.pop("error", None)
    write_json(run.run_json, state)
    write_json(run.env_json, environment())
    return run


def finish_run(run: RunDir, status: str, error: str | None = None) -> None:
    state = read_json(run.run_json) if run.run_json.is_file() else {}
    state.update(status=status, finished_at=_now())
    if error:
        state["error"] = error
    write_json(run.run_json, state)


def environment() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"python": sys.version.split()[0], "platform": platform.platform(), "machine": platform.machine(),
            "packages": versions, "cpu": cpu_facts()}


def cpu_facts() -> dict:
    """What decides the float rounding of a run beside the package versions: the CPU's model name, the vector
    instructions torch's kernels use, and the BLAS libraries loaded with the kernel set each picked at run time.
    The same code, seeds and packages on another CPU trained baselines that differed in the last digits, enough to
    move concepts across a bar (docs/DETECTION-METHOD.md, 'The bars'). None for what cannot be read."""
    model = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), None)
    except OSError:
        model = platform.processor() or None
    try:
        import torch

        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:  # noqa: BLE001 - a fact for the record, never a reason to fail a run
        capability = None
    try:
        from threadpoolctl import threadpool_info

        blas = [{k: lib.get(k) for k in ("internal_api", "version", "architecture")} for lib in threadpool_info()
                if lib.get("user_api") == "blas"]
    except Exception:  # noqa: BLE001
        blas = None
    return {"model": model, "torch_capability": capability, "blas": blas}


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
