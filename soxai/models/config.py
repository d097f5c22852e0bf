"""Configuration of the model architecture."""

import re
from typing import Any, Literal

from pydantic import Field, field_validator

from soxai._base import Section

_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class ModelConfig(Section):
    """A built-in architecture sized by config, or the user's own; the number of classes comes from the data."""

    name: Literal["small_cnn", "resnet", "mobilenet", "unet"] = Field(
        "small_cnn", description="built-in architecture from the model registry (ignored when model.factory is set); "
        "'unet' is the segmentation network of task: segmentation (soxai.models.unet), levels of model.channels"
    )
    channels: tuple[int, ...] = Field((16, 32), min_length=1, description="conv channels per block / stage")
    hidden: int = Field(64, ge=1, description="width of the hidden dense layer")
    num_classes: int | None = Field(
        None, ge=2, description="number of outputs; null = number of classes in the data"
    )
    layer: str | None = Field(
        None,
        description="layer (a name from model.named_modules()) used by Grad-CAM and layer-based "
        "explanation features; null = the last Conv2d",
    )
    depth: int = Field(2, ge=1, le=8, description="resnet / mobilenet: blocks per stage")
    factory: str | None = Field(
        None,
        description="'package.module:function' building the user's own nn.Module; called with model.kwargs "
        "plus num_classes (and in_channels where its signature names it); used for the baseline and retraining",
    )
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of model.factory")
    checkpoint: str | None = Field(
        None,
        description="a state dict (torch.save(model.state_dict(), path)) loaded with weights_only=True as the "
        "baseline: the audited model is this one and the baseline is not trained; retrained variants start "
        "from fresh weights",
    )

    @field_validator("factory")
    @classmethod
    def _factory_form(cls, value: str | None) -> str | None:
        if value is not None and not _FACTORY.match(value.strip()):
            raise ValueError(
                f"model.factory must look like 'package.module:function' (a module importable from PYTHONPATH, a "
                f"colon, a callable in it), got {value!r}"
            )
        return value.strip() if value is not None else None
