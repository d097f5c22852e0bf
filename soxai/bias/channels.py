"""The concept test in feature space: patch a concept's strongest channels into other classes' samples.

A concept is what its members' explanations share. At ``model.layer`` each member's evidence for its class is
carried by channels (soxai.embed.relevance: activation x gradient per channel). The test asks whether the
members' strongest evidence, moved on its own into images of other classes, carries the class there more
often than the class's ordinary evidence does under the same budget:

- *donors*: each member patches its own ``k`` most relevant channels (their whole activation maps) into an
  other-class image the model gets right, at ``model.layer``; a hit is a prediction moved to the concept's class;
- *control*: class-mates outside the concept do the same with their own ``k`` strongest channels, into the same
  recipients.

A shortcut (a mark, a texture, a colour) is a few channels that decide the class on their own, wherever the
mark sits in the image: its members' top channels move recipients where the class's ordinary evidence, spread
over many channels, does not. One one-sided Fisher exact test compares the two hit counts; a concept is flagged
when its p-value is at most ``max_p_value`` divided by the number of concepts tested (Bonferroni: the run's
chance of one false flag stays at ``max_p_value``). No odds-ratio bar, no minimum difference.
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

    def _module(self):
        from soxai.models.layers import resolve_layer

        return resolve_layer(self.model, self.layer)

    def relevance(self, images: np.ndarray, rows: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Channel relevance (n, channels) of ``images[rows]`` for ``targets`` (soxai.embed.relevance)."""
        from soxai.embed.relevance import channel_relevance

        return channel_relevance(self.model, self.layer, images, rows, targets, self.device, self.batch_size)

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


def top_channels(relevance: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` channels of largest (signed) relevance of each row: int array (n, k)."""
    return np.argsort(-np.asarray(relevance), axis=1, kind="stable")[:, :k]


def patch_hits(
    access: LayerAccess, images: np.ndarray, donor_rows: np.ndarray, donor_relevance: np.ndarray,
    recipients: np.ndarray, k: int, target: int,
) -> int:
    """How many ``recipients`` the donors (paired cyclically) move to ``target`` by patching their own top-``k``
    channels into them."""
    if len(donor_rows) == 0 or len(recipients) == 0:
        return 0
    pair = np.arange(len(recipients)) % len(donor_rows)
    acts = access.activations(np.asarray(images[donor_rows], dtype=np.float32))[pair]
    channels = top_channels(donor_relevance, k)[pair]
    return int(np.sum(access.predict_patched(recipients, acts, channels) == target))


@dataclass
class ChannelRegion:
    """The carrier test's "region" for a concept flagged by :func:`detect_channel_patch`: each donor's own
    ``k`` most relevant channels (for class ``label``) at the layer, not a place in the image."""

    access: LayerAccess
    train: pd.DataFrame
    label: int
    k: int

    def flip_rates(self, images: np.ndarray, rows: np.ndarray, recipients: np.ndarray, target: int,
                   chunk: int = 64) -> np.ndarray:
        """Share of ``recipients`` each donor row moves to ``target`` with its own top-``k`` channels: (n,)."""
        relevance = self.access.class_relevance(images, self.train, self.label)
        m = len(recipients)
        rates = np.zeros(len(rows))
        for start in range(0, len(rows), chunk):
            part = np.asarray(rows[start:start + chunk])
            acts = self.access.activations(np.asarray(images[part], dtype=np.float32))
            channels = top_channels(np.stack(relevance.loc[part].to_numpy()), self.k)
            pred = self.access.predict_patched(np.tile(recipients, (len(part), 1, 1, 1)),
                                               np.repeat(acts, m, axis=0), np.repeat(channels, m, axis=0))
            rates[start:start + len(part)] = (pred.reshape(len(part), m) == target).mean(axis=1)
        return rates

    def describe(self) -> str:
        return f"its own {self.k} most relevant channels of the model's layer"


def n_channels(access: LayerAccess, images: np.ndarray) -> int:
    """Channels of the layer (read from one image's output)."""
    return int(access.activations(np.asarray(images[:1], dtype=np.float32)).shape[1])


def detect_channel_patch(ctx, cfg, only: set[int] | None = None, **_unused: Any) -> list[dict[str, Any]]:
    """The feature-space concept test (module docstring). One row per scored concept, flag at Bonferroni p.

    ``ctx`` is a :class:`soxai.bias.detectors.DetectorContext` with ``layer`` set; ``cfg`` the bias config.
    """
    from soxai.bias.detectors import _pick, _scored, _take
    from soxai.bias.verdict import compare_rates

    pcfg = cfg.channel_patch
    if ctx.layer is None:
        raise ValueError("the channel_patch detector needs access to the model's layer (DetectorContext.layer)")
    concepts = _scored(ctx, None)
    n_tested = max(1, len(concepts))
    alpha = pcfg.max_p_value / n_tested
    k = max(1, int(round(pcfg.channel_frac * n_channels(ctx.layer, ctx.images))))
    correct = ctx.train[ctx.train["pred"] == ctx.train["label"]]
    rows = []
    for _, concept in (concepts if only is None else _scored(ctx, only)).iterrows():
        cid, label = int(concept["concept_id"]), int(concept["label"])
        rng = np.random.default_rng([ctx.seed, cid + 1, 7])
        members = ctx.train[(ctx.train["concept_id"] == cid) & (ctx.train["label"] == label)]
        outsiders = ctx.train[(ctx.train["concept_id"] != cid) & (ctx.train["label"] == label)]
        pool = correct[correct["label"] != label]
        n = min(pcfg.n_pairs, len(pool))
        if n == 0 or len(members) == 0 or len(outsiders) == 0:
            rows.append(_row(cid, 0.0, False, "no recipients of other classes or no class-mates to compare with"))
            continue
        relevance = ctx.layer.class_relevance(ctx.images, ctx.train, label)
        recipients = _take(ctx.images, pool, n, rng)
        donors, controls = _pick(members, n, rng), _pick(outsiders, n, rng)
        hits = patch_hits(ctx.layer, ctx.images, donors, np.stack(relevance.loc[donors].to_numpy()),
                          recipients, k, label)
        control_hits = patch_hits(ctx.layer, ctx.images, controls, np.stack(relevance.loc[controls].to_numpy()),
                                  recipients, k, label)
        p_value, odds = compare_rates(hits, control_hits, n)
        rate, control = hits / n, control_hits / n
        is_bias = p_value <= alpha
        reason = (
            f"its members' {k} most relevant channels of the model's layer, patched into {n} images of other "
            f"classes, moved {rate:.0%} of them to class {label}; the class's other samples' own {k} strongest "
            f"channels moved {control:.0%} (one-sided Fisher p={p_value:.1g} "
            f"{'<=' if is_bias else '>'} {pcfg.max_p_value:g}/{n_tested} concepts = {alpha:.1g}): "
            + ("the concept's evidence carries the class where the class's ordinary evidence does not"
               if is_bias else "not a shortcut by this test")
        )
        rows.append(_row(cid, rate - control, is_bias, reason, flip_rate=rate, control_rate=control,
                         p_value=p_value, odds_ratio=odds, n_channels=k, alpha=alpha))
    return rows


def _row(cid: int, score: float, is_bias: bool, reason: str, **extra: Any) -> dict[str, Any]:
    return {"concept_id": cid, "detector": "channel_patch", "score": float(score), "is_bias": bool(is_bias),
            "reason": reason, **extra}
