"""Configuration of the model architecture."""

from typing import Literal

from pydantic import Field

from soxai._base import Section


class ModelConfig(Section):
    """A small CNN sized by config; the number of classes comes from the data."""

    name: Literal["small_cnn"] = Field("small_cnn", description="architecture from the model registry")
    channels: tuple[int, ...] = Field((16, 32), min_length=1, description="conv channels per block")
    hidden: int = Field(64, ge=1, description="width of the hidden dense layer")
    num_classes: int | None = Field(
        None, ge=2, description="number of outputs; null = number of classes in the data"
    )
    layer: str | None = Field(
        None,
        description="layer (a name from model.named_modules()) used by Grad-CAM and layer-based "
        "explanation features; null = the last Conv2d",
    )
