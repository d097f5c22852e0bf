"""Configuration of the embed stage."""

from typing import Annotated, Literal

from pydantic import Field

from soxai._base import Section


class EmbedConfig(Section):
    """Maps -> explanation vectors -> PCA -> UMAP."""

    features: Literal["pooled", "activations", "both", "channels", "channels+pooled", "channels+peaks+pooled"] = Field(
        "channels+pooled",
        description="explanation vector: channels+pooled (the default): the relevance of each channel of "
        "model.layer to the explained class (activation x gradient summed over positions: what the model used, "
        "wherever it sits; soxai.embed.relevance) beside the pooled |map| (where it looked), each block "
        "l2-scaled to equal weight; channels+peaks+pooled: those and each channel's peak activation over the "
        "positions, standardised across the sample's channels (a small mark that moves, which summed relevance "
        "dilutes; opt-in: docs/DETECTION-METHOD.md); channels alone; pooled alone (the default before "
        "2026-12-06); the activations of model.layer weighted by the map (what it looked at); or both (pooled + "
        "activations)",
    )
    pool_size: int = Field(8, ge=1, description="maps are average-pooled to pool_size x pool_size")
    normalize: Literal["l2", "l1", "max", "none"] = Field(
        "l2", description="per-sample scaling so that clusters reflect where, not how strongly"
    )
    pca_components: int = Field(32, ge=1, description="PCA before UMAP (capped by the feature size)")
    umap_neighbors: int = Field(15, ge=2)
    umap_min_dist: float = Field(0.0, ge=0.0, description="0 packs clusters tightly, good for HDBSCAN")
    n_components: int = Field(2, ge=2, le=16, description="UMAP dimensions that are clustered and plotted")
    umap_epochs: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto",
        description="UMAP's layout epochs; auto = UMAP's own default (500) up to 10,000 samples and 100 above "
        "(UMAP's own: 200), where the epochs are most of the stage's time "
        "(soxai.embed.features.auto_umap_epochs)",
    )
    knn: Literal["auto", "exact", "approximate"] = Field(
        "auto",
        description="UMAP's nearest-neighbour search: exact, approximate (UMAP's own: exact below 4,096 samples, "
        "NN-descent above) or auto = exact up to 120,000 samples, where it is faster than NN-descent is to "
        "compile in a new process (soxai.embed.features.exact_knn_wanted)",
    )
    method: Literal["umap", "spectral"] = Field(
        "umap", description="umap, or spectral: SpRAy's eigenvectors of a k-NN graph of the PCA vectors"
    )
    spectral_neighbors: int = Field(10, ge=2, description="k of the spectral k-NN graph (CoRelAy's default)")
    spectral_components: int = Field(
        8, ge=2, le=32,
        description="eigenvectors the spectral embedding keeps and clusters (SpRAy's and CoRelAy's 8); the report "
        "plots the first two. With 2 HDBSCAN split the planted group of bench/peers.py at 8k and 16k maps; with 8 "
        "it found it whole at 2k, 8k and 16k for k = 10, 15 and 30",
    )
    fit_sample: int = Field(
        200_000, ge=0,
        description="above this many training samples PCA + UMAP are fitted on a stratified sample of about this "
        "many (per class, seeded) and every other sample is placed at the distance-weighted mean of its "
        "umap_neighbors nearest sampled points of its class (PCA space); the concepts stage then clusters the "
        "sampled points and assigns the rest with the fitted concept model, in chunks (soxai.embed.sample). "
        "embedding.parquet and assignments.parquet get a `fitted` column. 0 = always fit on every sample",
    )
