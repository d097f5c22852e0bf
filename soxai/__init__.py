"""soxai: audit an image training set through the explanations of a model trained on it.

Importing the package is cheap: heavy libraries (torch, captum, umap, hdbscan) are imported
where they are used.
"""

__version__ = "0.1.0"
