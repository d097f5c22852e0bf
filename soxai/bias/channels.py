"""The concept test in feature space: patch a concept's strongest channels into other classes' samples.

A concept is what its members' explanations share. At ``model.layer`` each member's evidence for its class is
carried by channels (soxai.embed.relevance: activation x gradient per channel). The test asks whether the
members' strongest evidence, moved on its own into images of other classes, carries the class there more
often than the class's ordinary evidence does under the same budget:

- *donors*: each member patches its own ``k`` most relevant channels (their whole activation maps) into an
  other-class image the model gets right, at ``model.layer``; a hit is a prediction moved to the concept's class;
- *control*: samples of the concept's whole class (members in their share) do the same with their own ``k``
  strongest channels, into the same recipients.

A shortcut (a mark, a texture, a colour) is a few channels that decide the class on their own, wherever the
mark sits in the image: its members' top channels move recipients where the class's ordinary evidence, spread
over many channels, does not.

One test decides, with one threshold. Each concept's hits against its control's give a two-proportion z
statistic. A real concept also differs from its class-mates a little (that is why it is a concept), and with
200 pairs such small real differences are significant under the textbook null: on digits, real concepts reached
z = 4.5 (difference +0.18) beside a planted mark's 9.5. So the null is the run's own: most concepts of a run are
not shortcuts, and the centre and width of their z statistics (median and 1.4826 x MAD, the width never below
the textbook null's 1) are what "no shortcut" looks like here — Efron's empirical null for large-scale
simultaneous testing (Efron 2004, JASA 99:96-104). A concept is flagged when its one-sided p-value under that
null is at most ``max_p_value`` divided by the number of concepts tested (Bonferroni). Below
:data:`MIN_FOR_EMPIRICAL_NULL` concepts the centre and width cannot be estimated and the textbook null (0, 1)
is used. No odds-ratio bar, no minimum difference, no control rounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from soxai.bias.config import BiasConfig
from soxai.bias.context import DetectorContext, pick_rows, score_row, scored_concepts, take_images
from soxai.bias.layer import LayerAccess


def top_channels(relevance: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` channels of largest (signed) relevance of each row: int array (n, k)."""
    return np.argsort(-np.asarray(relevance), axis=1, kind="stable")[:, :k]


def patched_predictions(
    access: LayerAccess, images: np.ndarray, donor_rows: np.ndarray, donor_relevance: np.ndarray,
    recipients: np.ndarray, k: int, donor_of: np.ndarray, recipient_of: np.ndarray,
) -> np.ndarray:
    """Predictions of pairs (``donor_of[i]``, ``recipient_of[i]``): the recipient with its donor's own top-``k``
    channels (by ``donor_relevance``, rows of ``donor_rows``) patched in at the layer. Returns int (n_pairs,)."""
    acts = access.activations(np.asarray(images[donor_rows], dtype=np.float32))
    channels = top_channels(donor_relevance, k)
    return access.predict_patched(np.asarray(recipients)[recipient_of], acts[donor_of], channels[donor_of])


def patch_hits(
    access: LayerAccess, images: np.ndarray, donor_rows: np.ndarray, donor_relevance: np.ndarray,
    recipients: np.ndarray, k: int, target: int,
) -> int:
    """How many ``recipients`` the donors (paired cyclically) move to ``target`` by patching their own top-``k``
    channels into them."""
    if len(donor_rows) == 0 or len(recipients) == 0:
        return 0
    n = len(recipients)
    pred = patched_predictions(access, images, donor_rows, donor_relevance, recipients, k,
                               np.arange(n) % len(donor_rows), np.arange(n))
    return int(np.sum(pred == target))


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
            b = len(part)
            pred = patched_predictions(self.access, images, part, np.stack(relevance.loc[part].to_numpy()),
                                       recipients, self.k, np.repeat(np.arange(b), m), np.tile(np.arange(m), b))
            rates[start:start + b] = (pred.reshape(b, m) == target).mean(axis=1)
        return rates

    def describe(self) -> str:
        return f"its own {self.k} most relevant channels of the model's layer"


def n_channels(access: LayerAccess, images: np.ndarray) -> int:
    """Channels of the layer (read from one image's output)."""
    return int(access.activations(np.asarray(images[:1], dtype=np.float32)).shape[1])


def channel_budget(channels: int, frac: float) -> int:
    """``frac`` of a layer's ``channels``, at least one."""
    return max(1, int(round(frac * channels)))


# robust width of a normal sample from its median absolute deviation
MAD_TO_SD = 1.4826

# Concepts needed to estimate the empirical null's centre and width (median and MAD of their z statistics);
# with fewer the textbook null N(0, 1) is used.
MIN_FOR_EMPIRICAL_NULL = 8


def two_proportion_z(hits: np.ndarray, control_hits: np.ndarray, n: np.ndarray) -> np.ndarray:
    """z statistic of hits/n against control_hits/n (pooled variance; 0 where both rates are 0 or 1)."""
    hits, control_hits, n = (np.asarray(a, dtype=np.float64) for a in (hits, control_hits, n))
    pooled = (hits + control_hits) / (2 * n)
    se = np.sqrt(pooled * (1 - pooled) * 2 / n)
    return np.divide(hits / n - control_hits / n, se, out=np.zeros_like(se), where=se > 0)


def empirical_null(z: np.ndarray) -> tuple[float, float]:
    """(centre, width) of the null of ``z``: median and 1.4826 x MAD (width at least 1), or (0, 1) with fewer
    than :data:`MIN_FOR_EMPIRICAL_NULL` statistics."""
    z = np.asarray(z, dtype=np.float64)
    if len(z) < MIN_FOR_EMPIRICAL_NULL:
        return 0.0, 1.0
    centre = float(np.median(z))
    return centre, max(1.0, MAD_TO_SD * float(np.median(np.abs(z - centre))))


def detect_channel_patch(
    ctx: DetectorContext, cfg: BiasConfig, only: set[int] | None = None, **_unused: Any
) -> list[dict[str, Any]]:
    """The feature-space concept test (module docstring). One row per concept; every concept is scored (the
    empirical null needs them all), ``only`` is accepted for the registry's signature and ignored.

    ``ctx`` is a :class:`soxai.bias.context.DetectorContext` with ``layer`` set; ``cfg`` the bias config.
    """
    from scipy.stats import norm

    pcfg = cfg.channel_patch
    if ctx.layer is None:
        raise ValueError("the channel_patch detector needs access to the model's layer (DetectorContext.layer)")
    concepts = scored_concepts(ctx, None)
    k = channel_budget(n_channels(ctx.layer, ctx.images), pcfg.channel_frac) if len(concepts) else 1
    correct = ctx.train[ctx.train["pred"] == ctx.train["label"]]
    tested, rows = [], []
    for _, concept in concepts.iterrows():
        cid, label = int(concept["concept_id"]), int(concept["label"])
        rng = np.random.default_rng([ctx.seed, cid + 1, 7])
        members = ctx.train[(ctx.train["concept_id"] == cid) & (ctx.train["label"] == label)]
        # the control is the class as a whole (members included, in their share): a concept is tested against
        # what its class's evidence usually does, so a large real concept is not scored against the small
        # remainder of its class, and a mark's class-mates are not scored against the mark
        outsiders = ctx.train[ctx.train["label"] == label]
        pool = correct[correct["label"] != label]
        n = min(pcfg.n_pairs, len(pool))
        if n == 0 or len(members) == 0 or len(outsiders) == len(members):
            rows.append(score_row("channel_patch", cid, 0.0, False, "not tested: no recipients of other classes or "
                                  "no class-mates to compare with"))
            continue
        relevance = ctx.layer.class_relevance(ctx.images, ctx.train, label)
        recipients = take_images(ctx.images, pool, n, rng)
        donors, controls = pick_rows(members, n, rng), pick_rows(outsiders, n, rng)
        hits = patch_hits(ctx.layer, ctx.images, donors, np.stack(relevance.loc[donors].to_numpy()),
                          recipients, k, label)
        control_hits = patch_hits(ctx.layer, ctx.images, controls, np.stack(relevance.loc[controls].to_numpy()),
                                  recipients, k, label)
        tested.append(len(rows))
        rows.append({"concept_id": cid, "label": label, "hits": hits, "control_hits": control_hits, "n": n})
    z = two_proportion_z([rows[i]["hits"] for i in tested], [rows[i]["control_hits"] for i in tested],
                         [rows[i]["n"] for i in tested])
    centre, width = empirical_null(z)
    alpha = pcfg.max_p_value / max(1, len(tested))
    for i, zi in zip(tested, z, strict=True):
        r = rows[i]
        p_value = float(norm.sf((zi - centre) / width))
        rate, control = r["hits"] / r["n"], r["control_hits"] / r["n"]
        is_bias = p_value <= alpha
        null = (f"the run's {len(tested)} concepts' z centre {centre:+.1f}, width {width:.1f}"
                if len(tested) >= MIN_FOR_EMPIRICAL_NULL else f"the textbook null (under {MIN_FOR_EMPIRICAL_NULL} "
                "concepts to estimate the run's own)")
        reason = (
            f"its members' {k} most relevant channels of the model's layer, patched into {r['n']} images of other "
            f"classes, moved {rate:.0%} of them to {ctx.class_text(r['label'])}; samples of the whole "
            f"class with their own {k} strongest channels moved {control:.0%} (z={zi:.1f}; against {null}: "
            f"p={p_value:.1g} "
            f"{'<=' if is_bias else '>'} {pcfg.max_p_value:g}/{len(tested)} concepts): "
            + ("the concept's evidence carries the class where the class's ordinary evidence does not"
               if is_bias else "no more than the run's concepts differ from their class-mates")
        )
        rows[i] = score_row("channel_patch", r["concept_id"], rate - control, is_bias, reason, flip_rate=rate,
                            control_rate=control, p_value=p_value, z=float(zi), null_centre=centre, null_width=width,
                            n_channels=k, alpha=alpha)
    return rows
