"""Seg-Grad-CAM's target (Vinogradova et al. 2020): a segmentation network seen as one score per class.

:class:`SegmentationTarget` wraps a network returning (n, classes, H, W) logits into one returning
(n, classes) scores: score ``c`` of an image is the sum of class ``c``'s logits over the pixels the network
predicts as ``c`` (``argmax`` over classes; the region is held fixed, detached from the gradient). Every
method of :data:`soxai.saliency.methods.SALIENCY_METHODS` then explains class ``c`` of a segmentation with
``target=c``, unchanged. Where no pixel is predicted as ``c`` the region is the whole image (the class's
evidence anywhere), so the map is never empty by construction.
"""

from __future__ import annotations

from torch import Tensor, nn

from soxai.errors import ConfigError


class SegmentationTarget(nn.Module):
    """``forward(x)`` of shape (n, C, H, W) gives (n, classes): per class, its logits summed over its region."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: Tensor) -> Tensor:
        logits = self.network(x)
        if logits.ndim != 4:
            raise ConfigError(
                f"a segmentation network must return logits of shape (n, classes, H, W); it returned "
                f"{tuple(logits.shape)}"
            )
        return region_scores(logits)


def region_scores(logits: Tensor) -> Tensor:
    """Per class ``c``: the sum of ``logits[:, c]`` over the pixels predicted as ``c`` (all pixels if none).

    Parameters
    ----------
    logits : Tensor of shape (n, classes, H, W)

    Returns
    -------
    Tensor of shape (n, classes); its gradient flows through the logits, not through the region.
    """
    import torch

    with torch.no_grad():
        pred = logits.argmax(dim=1, keepdim=True)
        classes = torch.arange(logits.shape[1], device=logits.device).view(1, -1, 1, 1)
        region = (pred == classes).to(logits.dtype)
        empty = region.sum(dim=(2, 3), keepdim=True) == 0
        region = torch.where(empty, torch.ones_like(region), region)
    return (logits * region).sum(dim=(2, 3))
