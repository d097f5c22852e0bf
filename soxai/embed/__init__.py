"""Saliency maps -> explanation vectors -> PCA -> UMAP."""
