"""Configuration of the concepts stage."""

from pydantic import Field

from soxai._base import Section


class ConceptsConfig(Section):
    """HDBSCAN on the explanation embedding."""

    min_cluster_size: int = Field(20, ge=2, description="smallest group of samples that is a concept")
    min_samples: int | None = Field(None, ge=1, description="HDBSCAN density; null = min_cluster_size")
    per_class: bool = Field(True, description="cluster each class separately (as SpRAy does)")
    stability_resamples: int = Field(
        5, ge=0, description="HDBSCAN re-fits on random subsamples for each concept's stability (0 = off)"
    )
    stability_fraction: float = Field(0.8, gt=0.0, lt=1.0, description="share of the points in each re-fit")
    n_exemplars: int = Field(16, ge=1, description="member sample_ids kept per concept, most central first")
