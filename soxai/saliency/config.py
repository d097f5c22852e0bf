"""Configuration of the saliency stage."""

from typing import Literal

from pydantic import Field, field_validator

from soxai._base import Section


class SaliencyConfig(Section):
    """Which attribution method, on which samples, batched how."""

    method: str = Field(
        "input_x_gradient",
        description="a name from soxai.saliency.methods.SALIENCY_METHODS; input x gradient separated the "
        "planted shortcut best per second of compute on the cells data (docs/RESULTS.md)",
    )
    target: Literal["label", "predicted"] = Field("label", description="class the map explains")
    reduce: Literal["abs_sum", "sum", "max_abs"] = Field(
        "abs_sum", description="how channels are reduced to one map per image"
    )
    batch_size: int = Field(128, ge=1)
    ig_steps: int = Field(32, ge=2, description="integration steps of integrated gradients")
    splits: tuple[str, ...] = Field(("train",), min_length=1, description="splits that get maps")
    shard_size: int = Field(4096, ge=1, description="maps per float16 shard file")
    device: Literal["auto", "cpu", "cuda"] = Field("auto")
    mixed_precision: bool = Field(
        False,
        description="opt-in autocast (float16 on CUDA, bfloat16 on CPU): faster on a GPU; maps agree with "
        "float32 in ranking, not exactly",
    )

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        from soxai.saliency.methods import SALIENCY_METHODS

        if value not in SALIENCY_METHODS:
            raise ValueError(f"unknown saliency method {value!r}; choose one of {sorted(SALIENCY_METHODS)}")
        return value
