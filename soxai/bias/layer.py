"""Access to one layer of the explained model: read its channels, their relevance, and patch them.

Part of what a detector receives (:attr:`soxai.bias.context.DetectorContext.layer`); the feature-space test
(soxai.bias.channels) and its carrier test use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class LayerAccess:
    """Read and patch the channels of one layer of the explained model.

    model : the baseline (eval mode), logits of shape (n, n_classes)
    layer : ``model.layer`` (None = the last Conv2d)
    device : torch device the model runs on
    """

    model: Any
    layer: str | None
    device: Any = None
    batch_size: int = 256
    _relevance: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    _fields: dict[tuple[int, ...], Any] = field(default_factory=dict, repr=False)

    def _module(self):
        from soxai.models.layers import resolve_layer

        return resolve_layer(self.model, self.layer)

    def relevance(self, images: np.ndarray, rows: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Channel relevance (n, channels) of ``images[rows]`` for ``targets`` (soxai.embed.relevance)."""
        from soxai.embed.relevance import channel_relevance

        return channel_relevance(self.model, self.layer, images, rows, targets, device=self.device,
                                 batch_size=self.batch_size)

    def receptive_field(self, image_shape: tuple[int, int, int]):
        """The layer's :class:`soxai.models.layers.ReceptiveField` for inputs of ``image_shape`` (C, H, W) (one per
        shape; its windows are measured as they are asked for); None for a layer without a spatial map."""
        from soxai.models.layers import ReceptiveField

        key = tuple(int(v) for v in image_shape)
        if key not in self._fields:
            field_ = ReceptiveField(self.model, self.layer, key, device=self.device)
            self._fields[key] = field_ if field_.map_shape is not None else None
        return self._fields[key]

    def activations(self, x: np.ndarray) -> np.ndarray:
        """The layer's output for images ``x`` (n, C, H, W): float32 (n, channels[, h, w])."""
        import torch

        captured: list = []
        handle = self._module().register_forward_hook(lambda _m, _i, out: captured.append(out.detach()))
        parts = []
        try:
            self.model.to(self.device).eval()
            with torch.no_grad():
                for start in range(0, len(x), self.batch_size):
                    captured.clear()
                    self.model(torch.from_numpy(np.asarray(x[start : start + self.batch_size], np.float32))
                               .to(self.device))
                    parts.append(captured[-1].float().cpu().numpy())
        finally:
            handle.remove()
        return np.concatenate(parts)

    def predict_patched(self, recipients: np.ndarray, donor_acts: np.ndarray, channels: np.ndarray) -> np.ndarray:
        """Predicted class of each recipient image with ``channels[i]`` of its layer output replaced by
        ``donor_acts[i]``'s.

        recipients : (n, C, H, W) images; donor_acts : (n, channels[, h, w]) layer outputs of the donors;
        channels : int array (n, k), the channels each pair patches. Returns int (n,).
        """
        import torch

        out: list[np.ndarray] = []
        state: dict[str, Any] = {}

        def patch(_module, _inputs, act):
            act = act.clone()
            idx = state["channels"]
            rows = torch.arange(len(act), device=act.device)[:, None]
            act[rows, idx] = state["donor"][rows, idx].to(act.dtype)
            return act

        handle = self._module().register_forward_hook(patch)
        try:
            self.model.to(self.device).eval()
            with torch.no_grad():
                for start in range(0, len(recipients), self.batch_size):
                    stop = start + self.batch_size
                    state["channels"] = torch.from_numpy(np.asarray(channels[start:stop], np.int64)).to(self.device)
                    state["donor"] = torch.from_numpy(np.asarray(donor_acts[start:stop], np.float32)).to(self.device)
                    xb = torch.from_numpy(np.asarray(recipients[start:stop], np.float32)).to(self.device)
                    out.append(self.model(xb).argmax(dim=1).cpu().numpy())
        finally:
            handle.remove()
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def class_relevance(self, images: np.ndarray, train: pd.DataFrame, label: int) -> pd.Series:
        """Channel relevance of every class-``label`` training sample for its label, by image row (cached)."""
        if label not in self._relevance:
            rows = train.loc[train["label"] == label, "row"].to_numpy()
            self._relevance[label] = pd.Series(
                list(self.relevance(images, rows, np.full(len(rows), label))), index=rows)
        return self._relevance[label]
