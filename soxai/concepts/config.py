"""Configuration of the concepts stage."""

from typing import Annotated, Literal

from pydantic import Field

from soxai._base import Section


class ConceptsConfig(Section):
    """HDBSCAN on the explanation embedding."""

    min_cluster_size: Annotated[int, Field(ge=2)] | Literal["auto"] = Field(
        "auto",
        description="smallest group of samples that is a concept; auto = 0.5% of the samples clustered "
        "(per class when per_class), at least 20 but at most 4% of them, not below 5 (12 for 300 samples, 5 for "
        "100; soxai.concepts.cluster.auto_min_cluster_size)",
    )
    min_samples: Annotated[int, Field(ge=1)] | Literal["auto"] | None = Field(
        "auto",
        description="HDBSCAN density; null = min_cluster_size; auto = sqrt(n)/4 clipped to [20, min_cluster_size], "
        "so that core distances stay cheap at large n (soxai.concepts.cluster.auto_min_samples)",
    )
    per_class: bool = Field(True, description="cluster each class separately (as SpRAy does)")
    stability_resamples: int = Field(
        5, ge=0, description="HDBSCAN re-fits on random subsamples for each concept's stability (0 = off)"
    )
    stability_fraction: float = Field(0.8, gt=0.0, lt=1.0, description="share of the points in each re-fit")
    n_exemplars: int = Field(16, ge=1, description="member sample_ids kept per concept, most central first")
