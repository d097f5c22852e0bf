"""The segmentation task (``task: segmentation``): per-pixel class masks, a U-Net, Seg-Grad-CAM's target.

The stages of a segmentation run are in :mod:`soxai.segmentation.stages` (data, model, saliency, bias,
manifest) and :mod:`soxai.segmentation.retrain` (train, compare, report); embed and concepts are the
classification run's own, unchanged. See docs/SEGMENTATION.md.
"""
