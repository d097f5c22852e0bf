"""Configuration of the bias stage.

A leaf: imports no detector. Each detector's settings are a :class:`DetectorSection`, held by
:class:`BiasConfig` as a field named after the detector; those fields are the names ``bias.detectors``
accepts, and soxai.bias.detectors registers the code under the same names (a test keeps the two equal).
"""

from pydantic import Field, field_validator, model_validator

from soxai._base import Section


class DetectorSection(Section):
    """The settings of one bias detector (the section of :class:`BiasConfig` named after it)."""


class TransplantConfig(DetectorSection):
    """Paste a concept's salient region into other classes' images; count flips to its class."""

    region_frac: float = Field(
        0.1875, gt=0.0, le=1.0,
        description="side of the pasted box / image side (6 px on 32 px: room for a small mark, "
        "too small to carry a whole cell's shape)",
    )
    n_pairs: int = Field(
        200, ge=4, description="(donor, recipient) pairs per concept; only predictions, so cheap"
    )
    threshold: float = Field(
        0.0, ge=0.0, le=1.0,
        description="also require flip rate minus control flip rate to reach this (a minimum effect). 0, the "
        "default since 2026-12-06: the corrected test and the odds ratio decide alone. It was 0.1, set on the "
        "built-in cases (planted marks reached 0.11 to 0.98), and it kept out a moving ring that flips 9.5% of "
        "recipients against a 1% control (p=8e-5, odds ratio 8.5) and three planted-mark concepts of the "
        "detection matrix (0.07-0.10, all members carriers); on the matrix's 50 cases without it 47 dropped the "
        "same, 3 more carriers at precision 1.00, none worse, and no unmarked run dropped anything "
        "(docs/DETECTION-METHOD.md)",
    )
    max_p_value: float = Field(
        0.01, gt=0.0, le=1.0,
        description="flag when a one-sided Fisher exact test of flips vs control flips, Bonferroni-corrected over "
        "the run's concepts, is at most this (the chance of one false flag in the run from this test; the "
        "majority test uses the same bar, so the two together at most twice this)",
    )
    min_odds_ratio: float = Field(
        8.0, ge=1.0,
        description="and when the odds ratio of flips vs control flips reaches this: a shortcut moves recipients "
        "where its class-mates' own regions move almost none; a real shape that transfers moves a few times as "
        "many as theirs. On the efficacy cases the real cells concepts that passed the two bars above had odds "
        "ratios 3.0-6.9 (class-mates' control 7-31%), planted marks 11 (an MNIST corner patch's pixels) to 600",
    )
    clean_control: bool = Field(
        True,
        description="leave the members of the concepts the stage flags (any detector, or an override) out of the "
        "controls of their class's other concepts, and test those again until no new concept is flagged "
        "(soxai.bias.rounds.clean_control_rounds): where a mark sits in several places "
        "(one concept per corner), the class-mates of one corner's concept carry the same mark elsewhere and "
        "their own regions move recipients too (control 13-20% on cells with a square in a random corner)",
    )
    majority: bool = Field(
        True,
        description="also flag a concept whose box alone moves most of the recipients to its class (one-sided "
        "binomial test against 1/2, Bonferroni-corrected at max_p_value), whatever its control: the box then "
        "outweighs the rest of the image for most images of other classes. Where the whole class carries the "
        "shortcut (Decoy's shade in every image of its class) the class-mates' own boxes move recipients as far "
        "and the control cannot show it. It ignores threshold, and adds a second test per concept at max_p_value "
        "(soxai.bias.verdict.majority_test; docs/DETECTION-METHOD.md). Turn it off for a task whose real "
        "evidence fits in one small region (a defect on a part): there the test's premise fails",
    )


class ConcentrationConfig(DetectorSection):
    """Members put their relevance in one small box, all in the same place (vs the class's other samples)."""

    region_frac: float = Field(0.1875, gt=0.0, le=1.0, description="side of the box / image side")
    n_samples: int = Field(200, ge=4, description="members and class-mates whose maps are read per concept")
    threshold: float = Field(
        0.25, ge=0.0, le=1.0,
        description="flag when the members' share of relevance in the box minus the class-mates' share reaches "
        "this; on the demo a planted 5x5 mark scored 0.36 and real concepts up to 0.19 (the tips of elongated "
        "cells also gather relevance)",
    )
    min_consistency: float = Field(
        0.5, ge=0.0, le=1.0, description="and when this share of members has its own most salient box there"
    )


class TransplantAccuracyConfig(DetectorSection):
    """Accuracy of other classes' images after pasting the concept's region, vs pasting class-mates' boxes."""

    n_pairs: int = Field(200, ge=4, description="recipient images per concept")
    threshold: float = Field(
        0.3, ge=0.0, le=1.0,
        description="flag when the accuracy drop beyond control reaches this; on the demo the planted mark scored "
        "0.92, and on clean cells (no mark) a small real concept reached 0.26",
    )
    max_p_value: float = Field(0.01, gt=0.0, le=1.0, description="and a one-sided Fisher test is this significant")


class StatisticsTransplantConfig(DetectorSection):
    """Other classes' images take the members' brightness and contrast (tint, colour cast, exposure)."""

    n_pairs: int = Field(200, ge=4, description="recipient images per concept")
    threshold: float = Field(
        0.0, ge=0.0, le=1.0,
        description="flag when the share of recipients moved off their class minus the control's share reaches "
        "this. 0 (the default since 2026-12-06): the one-sided Fisher test, Bonferroni-corrected over the run's "
        "concepts, decides alone; on the four unmarked runs of the detection matrix (140 concepts) no concept "
        "passed it, and it found every cells tint (5-30%), the digits tint at 10% and 30% and the MNIST tint at "
        "30% (docs/DETECTION-METHOD.md). It was 0.2, set by looking at the built-in cases",
    )
    max_p_value: float = Field(
        0.01, gt=0.0, le=1.0,
        description="and the one-sided Fisher test is this significant (Bonferroni-corrected over the run's "
        "concepts when threshold is 0)",
    )
    min_odds_ratio: float = Field(
        8.0, ge=1.0,
        description="and the odds ratio of moved recipients vs the control's reaches this: the transplant's rule "
        "(transplant.min_odds_ratio), so both default tests decide alike. Every statistics flag on the detection "
        "matrix had 13.6 or more (the tints); below it fall concepts whose class-mates' statistics move recipients "
        "off their class too: a group of bright Fashion-MNIST shirts (7.8, 31 clean images on the moving-mark "
        "benchmark), the grass background of Waterbirds-like (2.4) and two Decoy concepts (2.6, 3.0)",
    )


class PixelTransplantConfig(DetectorSection):
    """The transplant test on the concept's distinctive pixels (any shape: a stripe, a frame, a stamp)."""

    n_pairs: int = Field(200, ge=4, description="recipient images per concept (transplant.region_frac sets "
                         "how many pixels: as many as the transplant box holds)")
    threshold: float = Field(
        0.15, ge=0.0, le=1.0,
        description="flag when flip rate minus control reaches this; on the rate-0.3 efficacy cases planted marks "
        "scored 0.19 (an MNIST edge stripe) to 0.99 (cells) and real cells concepts up to 0.23",
    )
    max_p_value: float = Field(
        1e-8, gt=0.0, le=1.0,
        description="and a one-sided Fisher test this significant: pasted pixels of a real shape also carry "
        "their class at times (real concepts reached p=1e-6 with 200 pairs, planted marks p<=2e-10)",
    )
    min_odds_ratio: float = Field(8.0, ge=1.0, description="as transplant.min_odds_ratio")
    clean_control: bool = Field(True, description="as transplant.clean_control")


class ChannelPatchConfig(DetectorSection):
    """The feature-space test: members patch their strongest channels of model.layer into other classes' images
    (soxai.bias.channels)."""

    n_pairs: int = Field(200, ge=4, description="recipient images per concept (and as many donors and controls)")
    channel_frac: float = Field(
        0.25, gt=0.0, le=1.0,
        description="share of the layer's channels each donor patches: its own most relevant ones (8 of the "
        "built-in small_cnn's 32). The budget plays the part of transplant.region_frac: room for a mark's "
        "channels, too few to carry a class's ordinary evidence. Set by looking at the demo and three cells "
        "cases (docs/DETECTION.md): with 4 channels the demo's mark moved 12-44% of recipients, with 8 "
        "91%, with 16 100% but its class-mates' own 16 moved 76%",
    )
    max_p_value: float = Field(
        0.01, gt=0.0, le=1.0,
        description="the one threshold: flag when the one-sided Fisher p of members' hits vs the class-mates' is at "
        "most this divided by the number of concepts tested (Bonferroni: at most this chance of one false flag "
        "in a run)",
    )


class OwnBoxTest(Section):
    """Settings of a test where every sample pastes its own most salient box into other classes' images and
    two groups' rates are compared by one one-sided Mann-Whitney test, Bonferroni-corrected: the own_box
    detector (a concept's members against its class-mates) and the unclustered test (a class's unclustered
    samples against its clustered ones at the edge of their concepts)."""

    n_recipients: int = Field(16, ge=4, description="other-class images each tested sample pastes its own box into")
    max_samples: int = Field(
        256, ge=8, description="at most this many samples of each of the two groups are tested (drawn at random, "
        "seeded); a flagged group's carrier test covers its whole class",
    )
    max_p_value: float = Field(
        0.01, gt=0.0, le=1.0,
        description="flag when the one-sided Mann-Whitney test of the first group's rates against the second's, "
        "Bonferroni-corrected over the tests made, gives at most this; the only bar",
    )


class OwnBoxConfig(DetectorSection, OwnBoxTest):
    """Each member's own most salient box against its class-mates' own boxes (soxai.bias.ownbox)."""


class CarriersConfig(Section):
    """The carrier test: which samples of a flagged concept's class carry its shortcut (soxai.bias.carriers)."""

    n_recipients: int = Field(
        32, ge=4,
        description="other-class images each sample's flagged region is pasted into: every sample of a flagged "
        "concept's class is tested on 8 of them, those left in doubt on twice as many, up to n_recipients",
    )
    min_gap: float = Field(
        0.15, ge=0.0, le=1.0,
        description="repeat the flag per sample only when the members' mean flip rate exceeds the class's "
        "other samples' median by this much; otherwise the concept's members stand as its carriers",
    )
    channels: bool = Field(
        True,
        description="for a box or pixel flag, or a person's override (bias logic 14), also read the flagged concept's "
        "own channels of model.layer at their strongest place in every class-mate, so a mark is found wherever it "
        "sits (soxai.bias.presence); needs the model's layer, skipped without it",
    )
    channel_frac: float = Field(
        0.25, gt=0.0, le=1.0,
        description="share of the layer's channels that are the concept's: those whose relevance is highest in "
        "its members against their class-mates (the same budget as channel_patch.channel_frac)",
    )
    max_p_value: float = Field(
        0.01, gt=0.0, le=1.0,
        description="the one bar of the channel reading: the class-mates it nominates count as carriers when the "
        "one-sided binomial test of their number against the rest of the class's own upper tail gives at most this",
    )


class ConflictsConfig(Section):
    """The conflict test: concepts the baseline gets wrong far more often than the rest of their class
    (soxai.bias.conflicts; reported, never pruned, and upweighted by the reweight variant where a flagged shortcut on
    most of a class ties them: soxai.train.corrections.tied_conflicts)."""

    max_p_value: float = Field(
        0.01, gt=0.0, le=1.0,
        description="a concept is a conflict when the one-sided Fisher test of its members' training error "
        "against the rest of its class, Bonferroni-corrected over the concepts, gives at most this",
    )


class UnclusteredConfig(OwnBoxTest):
    """The test of each class's unclustered samples (concept -1) against as many of its clustered ones, those of
    lowest membership probability (soxai.bias.unclustered), with the own-box settings of :class:`OwnBoxTest`."""

    enabled: bool = Field(
        True, description="test each class's unclustered samples (those HDBSCAN left out of every concept) "
        "against as many of its clustered ones at the edge of their concepts (lowest membership probability), each "
        "pasting its own most salient box: a mark that moves forms no concept",
    )


class BiasConfig(Section):
    """Which detectors score the concepts, and a person's overrides."""

    # a box pasted (what sits somewhere) and the global statistics given (what the whole image has: a tint, a
    # colour, a background's brightness), each flagging by its own Bonferroni-corrected test
    detectors: tuple[str, ...] = Field(("transplant", "statistics_transplant"), min_length=1)
    transplant: TransplantConfig = Field(default_factory=TransplantConfig)
    concentration: ConcentrationConfig = Field(default_factory=ConcentrationConfig)
    transplant_accuracy: TransplantAccuracyConfig = Field(default_factory=TransplantAccuracyConfig)
    statistics_transplant: StatisticsTransplantConfig = Field(default_factory=StatisticsTransplantConfig)
    pixel_transplant: PixelTransplantConfig = Field(default_factory=PixelTransplantConfig)
    channel_patch: ChannelPatchConfig = Field(default_factory=ChannelPatchConfig)
    own_box: OwnBoxConfig = Field(default_factory=OwnBoxConfig)
    carriers: CarriersConfig = Field(default_factory=CarriersConfig)
    conflicts: ConflictsConfig = Field(default_factory=ConflictsConfig)
    unclustered: UnclusteredConfig = Field(default_factory=UnclusteredConfig)
    min_flags: int = Field(
        1, ge=1,
        description="a concept is flagged when at least this many of `detectors` flag it (1 = any of them, "
        "len(detectors) = all); a person's override decides alone",
    )
    mutual_control: bool = Field(
        True,
        description="when two or more unflagged concepts of one class have a significant region transplant "
        "(transplant or pixel_transplant with clean_control on: Fisher p <= its max_p_value) and their pasted "
        "regions overlap, test each again with the others left out of its control "
        "(soxai.bias.rounds.clean_control_rounds): one mark in one place split over several concepts hides "
        "itself in their controls (a corner patch on 30% of MNIST's zeros: three concepts at odds ratios 3.4-6.2 "
        "before, 7.3-21.9 after; real concepts at most 6.1 after). Set on that one built-in case "
        "(docs/DETECTION-METHOD.md)",
    )
    overrides: str | None = Field(
        None, description="YAML file: {drop: [concept ids], keep: [concept ids]}; wins over detectors"
    )

    @classmethod
    def detector_names(cls) -> tuple[str, ...]:
        """The detectors ``detectors`` may name: the fields holding a :class:`DetectorSection`, in order."""
        return tuple(name for name, info in cls.model_fields.items()
                     if isinstance(info.annotation, type) and issubclass(info.annotation, DetectorSection))

    @field_validator("detectors")
    @classmethod
    def _known_detectors(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        known = cls.detector_names()
        unknown = [d for d in value if d not in known]
        if unknown:
            raise ValueError(f"unknown detector(s) {unknown}; choose from {sorted(known)}")
        return value

    @model_validator(mode="after")
    def _min_flags_reachable(self) -> "BiasConfig":
        if self.min_flags > len(self.detectors):
            raise ValueError(f"bias.min_flags={self.min_flags} but only {len(self.detectors)} detector(s) run; "
                             f"set bias.min_flags to 1..{len(self.detectors)} or add detectors")
        return self
