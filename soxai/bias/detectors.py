"""The bias detectors by name, and the contract every one of them keeps.

What a detector is
    A function ``detect(ctx, cfg) -> rows`` registered in :data:`BIAS_DETECTORS` under its name, the name
    ``bias.detectors`` lists and the name of its settings section in :class:`soxai.bias.config.BiasConfig`.

What it receives
    ``ctx``: a :class:`soxai.bias.context.DetectorContext`: the training samples (``ctx.train``: sample_id,
    row, label, pred, concept_id), their images, the concepts table, each concept's mean |saliency| map
    (``ctx.maps``) and every sample's own (``ctx.sample_maps``), the model (``ctx.predict``; ``ctx.layer`` for
    the channels of ``model.layer``) and the run's seed. Never the evaluation-only ``group`` or ``mask_path``.
    ``cfg``: the whole :class:`~soxai.bias.config.BiasConfig`; the detector reads its own section
    (``cfg.<name>``), and may read another's (the pixel test takes ``transplant.region_frac``).

What it returns
    A list with one row per non-noise concept (:func:`soxai.bias.context.scored_concepts`), each built by
    :func:`soxai.bias.context.score_row`: ``concept_id, detector, score, is_bias, reason``
    (:data:`~soxai.bias.context.SCORE_COLUMNS`), then the detector's own columns.

    - ``score``: higher = more suspicious, for every detector (most: a rate minus its control's rate);
    - ``is_bias``: the detector's flag; the stage flags a concept when ``bias.min_flags`` detectors do;
    - ``reason``: what was measured, against what, and why that is or is not a flag, for a person to check;
    - ``p_value``: where the detector tests significance (the control rounds and the reports read it);
    - the region the flag names, as the entry's ``region`` says: ``box`` ([y0, x0, y1, x1], half-open),
      ``pixels`` (flat indices into H x W, with their bounding ``box``), ``n_channels``, or nothing for a
      whole-image test. The carrier test (soxai.bias.carriers), the prune policies and the augment correction
      repeat or remove that region.

    The same ``ctx.seed`` gives the same rows: seed each draw from ``(ctx.seed, concept_id + 1, a salt of the
    detector's own)``. :func:`run_detector` checks every row against the contract.

How to add one
    One module, one entry here, one settings section::

        # soxai/bias/config.py: the settings, a DetectorSection field of BiasConfig named after the detector
        class TintConfig(DetectorSection):
            threshold: float = Field(0.2, ge=0.0, le=1.0, description="flag at this difference ...")

        class BiasConfig(Section):
            ...
            tint: TintConfig = Field(default_factory=TintConfig)

        # soxai/bias/tint.py: imports config, context (and paste, verdict); never this registry
        from soxai.bias.config import BiasConfig
        from soxai.bias.context import DetectorContext, score_row, scored_concepts

        def detect_tint(ctx: DetectorContext, cfg: BiasConfig) -> list[dict[str, Any]]:
            rows = []
            for _, concept in scored_concepts(ctx).iterrows():
                score = ...  # higher = more suspicious
                is_bias = score >= cfg.tint.threshold
                rows.append(score_row("tint", int(concept["concept_id"]), score, is_bias,
                                      f"... difference {score:+.2f} ...", p_value=...))
            return rows

        # here: import detect_tint from soxai.bias.tint, and in BIAS_DETECTORS
        "tint": Detector(detect_tint, region="whole_image"),

    ``bias.detectors=[transplant,tint]`` then runs it; tests/bias/test_bias_registry.py checks that every entry
    keeps this contract and matches the config.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from soxai.bias.channels import detect_channel_patch
from soxai.bias.config import BiasConfig
from soxai.bias.context import DetectorContext, check_rows
from soxai.bias.disparity import detect_statistics_transplant, detect_transplant_accuracy
from soxai.bias.location import detect_concentration
from soxai.bias.ownbox import detect_own_box
from soxai.bias.pixels import detect_pixel_transplant
from soxai.bias.transplant import detect_transplant

# What a flag names, for the carrier test and the prune policies: a box in the image (rows carry ``box``),
# a set of pixels (``pixels`` and their bounding ``box``), each donor's own strongest channels at the model's
# layer (``n_channels``), each donor's own most salient box (``own_box``), or the whole image's brightness and
# contrast (nothing: every member carries it).
Region = Literal["box", "pixels", "channels", "own_box", "whole_image"]


@dataclass(frozen=True)
class Detector:
    """One entry of :data:`BIAS_DETECTORS`.

    detect : ``detect(ctx, cfg) -> rows`` (module docstring)
    region : what its flag names (:data:`Region`)
    clean_control : its control is the class-mates' own regions, and it takes ``left_out=``, ``only=`` and
        ``suspected=`` (see :func:`soxai.bias.transplant.detect_transplant`), so the stage may test it again with
        cleaner controls (soxai.bias.rounds); its section then has ``clean_control`` and ``max_p_value``
    """

    detect: Callable[..., list[dict[str, Any]]]
    region: Region
    clean_control: bool = False


BIAS_DETECTORS: dict[str, Detector] = {
    "transplant": Detector(detect_transplant, region="box", clean_control=True),
    "concentration": Detector(detect_concentration, region="box"),
    "pixel_transplant": Detector(detect_pixel_transplant, region="pixels", clean_control=True),
    "transplant_accuracy": Detector(detect_transplant_accuracy, region="box"),
    "statistics_transplant": Detector(detect_statistics_transplant, region="whole_image"),
    "channel_patch": Detector(detect_channel_patch, region="channels"),
    "own_box": Detector(detect_own_box, region="own_box"),
}

# detectors whose control is the class-mates' own regions (they take left_out=, only= and suspected=)
CLEAN_CONTROL_DETECTORS: tuple[str, ...] = tuple(n for n, d in BIAS_DETECTORS.items() if d.clean_control)

# detectors that test the whole image, not a region (the region prune policy drops all members they flag)
WHOLE_IMAGE_DETECTORS: tuple[str, ...] = tuple(n for n, d in BIAS_DETECTORS.items() if d.region == "whole_image")


def run_detector(name: str, ctx: DetectorContext, cfg: BiasConfig, **kwargs: Any) -> list[dict[str, Any]]:
    """The rows of detector ``name`` (``kwargs``: a clean-control detector's ``left_out``, ``only``,
    ``suspected``), checked against the contract."""
    return check_rows(name, BIAS_DETECTORS[name].detect(ctx, cfg, **kwargs))
