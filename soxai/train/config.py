"""Configuration of training (baseline and retraining) and of the retrain variants."""

from typing import Literal

from pydantic import Field

from soxai._base import Section


class TrainConfig(Section):
    """The training recipe, shared by the baseline and every retrained variant."""

    epochs: int = Field(8, ge=1, description="passes over the training split")
    batch_size: int = Field(64, ge=1)
    lr: float = Field(2e-3, gt=0.0, description="Adam learning rate")
    weight_decay: float = Field(0.0, ge=0.0)
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="'auto' uses CUDA when present")


class RetrainConfig(Section):
    """Which variants are retrained, and over how many seeds."""

    variants: tuple[Literal["baseline", "pruned", "random_control", "jtt", "oracle"], ...] = Field(
        ("baseline", "pruned", "random_control"), min_length=1,
        description="also 'jtt' (just train twice: no group labels) and 'oracle' (trained without the "
        "artifact; evaluation only), opt-in because each adds a model per seed",
    )
    seeds: tuple[int, ...] = Field(
        (0, 1, 2, 3, 4), min_length=2,
        description="one model per variant and seed; 5 seeds keep the 95% intervals usable (t = 2.78)",
    )
    jtt_epochs: int = Field(
        2, ge=1, description="jtt: epochs of the first, brief model whose training errors are upweighted"
    )
    jtt_upweight: int = Field(
        20, ge=1, description="jtt: each training sample the first model got wrong is seen this many times"
    )
