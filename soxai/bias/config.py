"""Configuration of the bias stage."""

from pydantic import Field, field_validator

from soxai._base import Section


class TransplantConfig(Section):
    """Paste a concept's salient region into other classes' images; count flips to its class."""

    region_frac: float = Field(
        0.1875, gt=0.0, le=1.0,
        description="side of the pasted box / image side (6 px on 32 px: room for a small mark, "
        "too small to carry a whole cell's shape)",
    )
    n_pairs: int = Field(
        200, ge=4, description="(donor, recipient) pairs per concept; only predictions, so cheap"
    )
    threshold: float = Field(
        0.2, ge=0.0, le=1.0,
        description="flag when flip rate minus control flip rate reaches this; in our runs real "
        "concepts stayed at or below 0.14 and planted marks reached 0.33 (digits) to 0.98 (cells)",
    )
    max_p_value: float = Field(
        0.01, gt=0.0, le=1.0,
        description="and when a one-sided Fisher exact test of flips vs control flips is this significant",
    )


class BiasConfig(Section):
    """Which detectors score the concepts, and a person's overrides."""

    detectors: tuple[str, ...] = Field(("transplant",), min_length=1)
    transplant: TransplantConfig = Field(default_factory=TransplantConfig)
    overrides: str | None = Field(
        None, description="YAML file: {drop: [concept ids], keep: [concept ids]}; wins over detectors"
    )

    @field_validator("detectors")
    @classmethod
    def _known_detectors(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from soxai.bias.detectors import BIAS_DETECTORS

        unknown = [d for d in value if d not in BIAS_DETECTORS]
        if unknown:
            raise ValueError(f"unknown detector(s) {unknown}; choose from {sorted(BIAS_DETECTORS)}")
        return value
