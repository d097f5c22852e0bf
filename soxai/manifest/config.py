"""Configuration of the manifest stage."""

from pydantic import Field, field_validator

from soxai._base import Section


class ManifestConfig(Section):
    """How flagged concepts turn into dropped samples."""

    policy: str = Field(
        "drop_carriers",
        description="a name from soxai.manifest.policies.PRUNE_POLICIES: drop_carriers (the samples that carry a "
        "flagged concept's shortcut, in the concept or not; where the per-sample test cannot tell, the members), "
        "drop_flagged (every member of a flagged concept), drop_flagged_region (members with relevance on the region)",
    )
    region_threshold: float = Field(
        0.15, ge=0.0, le=1.0,
        description="drop_flagged_region: drop a flagged concept's member when this share of its relevance "
        "lies in the concept's salient region (the transplant box; a uniform map puts ~3.5% in a 6x6 box of 32x32)",
    )
    max_class_drop: float = Field(
        0.5, ge=0.0, le=1.0,
        description="a prune that would take more than this share of a class, leaving samples the baseline "
        "gets wrong more often than not (the shortcut is the class's typical sample, the rest its counter-"
        "examples), keeps the class whole with the reason: it is corrected by the reweight or augment retrain "
        "variant; 1.0 turns this off (soxai.manifest.policies.keep_majority_classes)",
    )
    allow_empty_class: bool = Field(
        False, description="allow a prune that removes every training sample of a class (with max_class_drop=1)"
    )

    @field_validator("policy")
    @classmethod
    def _known_policy(cls, value: str) -> str:
        from soxai.manifest.policies import PRUNE_POLICIES

        if value not in PRUNE_POLICIES:
            raise ValueError(f"unknown prune policy {value!r}; choose one of {sorted(PRUNE_POLICIES)}")
        return value
