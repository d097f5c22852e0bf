"""The stage table of ``task: segmentation``: each stage name of :func:`soxai.runs.stage_runners` to its runner.

embed and concepts are the classification stages, unchanged: they read one map per row of
``saliency/index.parquet``, and a segmentation run writes one per training image and the class present in it.
A stage with nothing to do for segmentation records that and writes nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from soxai.config import Config
from soxai.run_dir import RunDir
from soxai.stage import StageRecord, fingerprint, run_stage


def _not_for_segmentation(stage: str) -> Callable[[Config, RunDir], StageRecord]:
    def runner(cfg: Config, run: RunDir) -> StageRecord:
        return run_stage(run, stage, fingerprint(stage, "segmentation-skip"),
                         lambda: ([], {"skipped": "not part of task: segmentation"}))

    return runner


def segmentation_runner(stage: str) -> Callable[[Config, RunDir], Any]:
    """The runner of ``stage`` in a segmentation run."""
    from soxai.concepts.runner import run_concepts
    from soxai.embed.runner import run_embed
    from soxai.segmentation.flags import run_segmentation_bias, run_segmentation_manifest
    from soxai.segmentation.retrain import run_segmentation_compare, run_segmentation_report, run_segmentation_train
    from soxai.segmentation.stages import run_segmentation_data, run_segmentation_model, run_segmentation_saliency

    runners = {
        "data": run_segmentation_data, "model": run_segmentation_model, "saliency": run_segmentation_saliency,
        "embed": run_embed, "concepts": run_concepts, "bias": run_segmentation_bias,
        "manifest": run_segmentation_manifest, "train": run_segmentation_train, "compare": run_segmentation_compare,
        "report": run_segmentation_report,
    }
    return runners.get(stage) or _not_for_segmentation(stage)
