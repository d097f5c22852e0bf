"""Kernel: the relevance of a layer's channels to a sample's explained class (concept relevance).

A channel of ``model.layer`` is one thing the network detects (an edge, a ring, a colour); its relevance
to the explained logit is activation x gradient summed over the channel's positions (the gradient-times-
input rule of concept relevance propagation, Achtibat et al. 2023, applied at that layer). The vector of
channel relevances says *what* the model used for a sample, not *where*: a mark stamped anywhere lights
the same channels, so its carriers land in one concept wherever the mark sits. Summed over channels it is
the first-order estimate of the logit the layer carries.

Summed over the positions, a small mark's share is diluted by the rest of the image: on a 7x7 ring stamped at
random places in 10% of a Fashion-MNIST class the best single channel's summed relevance told the carriers from
their class-mates at an AUC of 0.845, while the same channel's *peak* activation (its largest value over the
positions, which does not depend on where the ring sits either) did at 0.999 (``bench/peak_concepts.py``).
:func:`relevance_and_peaks` returns both from one pass (``embed.features: channels+peaks+pooled``).
"""

from __future__ import annotations

import numpy as np

from soxai.errors import ConfigError


def channel_relevance(model, layer: str | None, images: np.ndarray, rows: np.ndarray, targets: np.ndarray,
                      **kwargs) -> np.ndarray:
    """Signed relevance of each channel of ``layer`` to each sample's ``targets`` logit: the first array of
    :func:`relevance_and_peaks`, which documents the parameters (``device``, ``batch_size`` by keyword)."""
    return relevance_and_peaks(model, layer, images, rows, targets, **kwargs)[0]


def relevance_and_peaks(
    model,
    layer: str | None,
    images: np.ndarray,
    rows: np.ndarray,
    targets: np.ndarray,
    device=None,
    batch_size: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Signed relevance of each channel of ``layer`` to each sample's ``targets`` logit, and each channel's peak
    activation, from one pass.

    Parameters
    ----------
    model : a torch module giving logits of shape (n, n_classes)
    layer : the module's name (``model.layer``); None = the last Conv2d
    images : array of shape (n_total, C, H, W) (may be a memmap or a reader); ``rows`` (n,) index it
    targets : int array of shape (n,), the class each sample is explained for (label or prediction)

    Returns
    -------
    relevance : float32 array of shape (n, channels): sum over positions of activation * d logit / d activation
    peaks : float32 array of shape (n, channels): the largest activation of each channel over positions (the
        activation itself for a layer without positions); where a mark sits does not change it
    """
    import torch

    from soxai.models.layers import resolve_layer

    module = resolve_layer(model, layer)
    device = device or torch.device("cpu")
    rows, targets = np.asarray(rows), np.array(targets, dtype=np.int64)  # a writable copy for torch
    if len(rows) != len(targets):
        raise ValueError(f"{len(rows)} rows but {len(targets)} targets")
    captured: list = []

    def keep(_module, _inputs, out):
        if not isinstance(out, torch.Tensor) or out.ndim not in (2, 4):
            raise ConfigError(
                f"model.layer={layer!r} outputs {getattr(out, 'shape', type(out).__name__)}, not channels "
                "(n, channels[, height, width]); pick a convolutional or linear layer"
            )
        out.retain_grad()
        captured.append(out)

    handle = module.register_forward_hook(keep)
    parts, peaks = [], []
    try:
        model.to(device).eval()
        for start in range(0, len(rows), batch_size):
            captured.clear()
            xb = torch.from_numpy(np.asarray(images[rows[start : start + batch_size]], dtype=np.float32)).to(device)
            tb = torch.from_numpy(targets[start : start + batch_size]).to(device)
            logits = model(xb)
            model.zero_grad(set_to_none=True)
            logits.gather(1, tb[:, None]).sum().backward()
            act = captured[-1]
            rel = act.detach() * act.grad
            parts.append((rel.sum(dim=(2, 3)) if rel.ndim == 4 else rel).float().cpu().numpy())
            top = act.detach().flatten(2).amax(dim=2) if act.ndim == 4 else act.detach()  # spatial_peaks, on device
            peaks.append(top.float().cpu().numpy())
    finally:
        handle.remove()
        model.zero_grad(set_to_none=True)
    if not parts:
        return np.zeros((0, 0), dtype=np.float32), np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(parts).astype(np.float32), np.concatenate(peaks).astype(np.float32)


def spatial_peaks(acts: np.ndarray) -> np.ndarray:
    """Each channel's largest activation over its positions: (n, channels, h, w) -> (n, channels); a layer
    output without positions (n, channels) is returned as it is. What :func:`relevance_and_peaks` returns as
    peaks, for activations already read (soxai.bias.presence)."""
    acts = np.asarray(acts)
    return acts.reshape(len(acts), acts.shape[1], -1).max(axis=2) if acts.ndim > 2 else acts
