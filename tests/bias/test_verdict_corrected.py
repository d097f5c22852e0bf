"""The transplant's decision since 2026-12-06: a Bonferroni-corrected Fisher test and the odds ratio, no effect bar."""

from soxai.bias.config import TransplantConfig
from soxai.bias.verdict import decide


def test_decide__corrected_over_the_concepts_flags_a_small_effect_the_old_bar_missed():
    # the moving ring's concept: 19/200 moved against 2/200 (p=8e-5, odds ratio 8.5, difference +0.09)
    flagged, text = decide(0.085, 7.7e-5, 8.5, 0.0, 0.01, 8.0, n_tests=34)
    assert flagged and "x34 concepts (Bonferroni) = 0.003 <= 0.01" in text
    old, _ = decide(0.085, 7.7e-5, 8.5, 0.1, 0.01, 8.0, n_tests=34)
    assert not old  # with the retired bar of 0.1 it stays unflagged


def test_decide__the_correction_unflags_what_only_one_concept_would_pass():
    alone, _ = decide(0.05, 0.004, 9.0, 0.0, 0.01, 8.0, n_tests=1)
    many, text = decide(0.05, 0.004, 9.0, 0.0, 0.01, 8.0, n_tests=30)
    assert not many and "= 0.1 > 0.01" in text
    assert alone  # one concept: 0.004 passes
    assert decide(0.05, 0.004, 9.0, 0.0, 0.01, 8.0, n_tests=1)[1].startswith("difference +0.05")


def test_decide__significant_but_shared_with_the_class_says_why():
    flagged, text = decide(0.2, 1e-9, 3.0, 0.0, 0.01, 8.0, n_tests=10)
    assert not flagged and "odds ratio 3.0 is below 8" in text


def test_decide__a_negative_difference_never_flags():
    assert not decide(-0.01, 1e-12, 9.0, 0.0, 0.01, 8.0, n_tests=5)[0]


def test_transplant_config__no_effect_bar_by_default():
    assert TransplantConfig().threshold == 0.0 and TransplantConfig().max_p_value == 0.01



def test_majority_test__most_recipients_moved_beyond_chance_after_the_correction():
    from soxai.bias.verdict import majority_test

    # Decoy's shaded corner: 149 of 200 other-class images moved, 21 concepts in the run
    flagged, p = majority_test(149, 200, 21, 0.01)
    assert flagged and p < 1e-8
    # just over half is not "most" beyond chance; a correction over many concepts raises the bar
    assert not majority_test(105, 200, 1, 0.01)[0]
    assert majority_test(125, 200, 1, 0.01)[0] and not majority_test(125, 200, 50, 0.01)[0]
    # half or less never flags, whatever the p; nothing pasted decides nothing
    assert not majority_test(100, 200, 1, 1.0)[0] and majority_test(0, 0, 1, 0.01) == (False, 1.0)
