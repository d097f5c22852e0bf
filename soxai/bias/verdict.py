"""The decision every paste-and-compare detector makes: a rate against its control's rate.

Each of those detectors pastes something of a concept's members into ``n`` recipients and counts
hits (a move to the concept's class, an error), then does the same with the class's other samples
(the control). The concept is flagged when three things hold:

- the difference of the two rates reaches the detector's ``threshold`` (a large effect),
- a one-sided Fisher exact test gives p <= ``max_p_value`` (not chance),
- the odds ratio reaches ``min_odds_ratio`` (the effect is the concept's own, not a larger share of
  something the whole class does): a shortcut carries the class where the class's ordinary evidence
  does not, so its control stays near zero; a real shape that transfers when pasted does so for its
  class-mates too, and its rate is a small multiple of theirs.

The transplant test also flags, whatever the control, a box that alone moves most recipients
(:func:`majority_test`): a shortcut the whole class carries, which no class-mate control can show.
"""

from __future__ import annotations


def compare_rates(hits: int, control_hits: int, n: int) -> tuple[float, float]:
    """(p_value, odds_ratio) of ``hits``/n against ``control_hits``/n.

    p_value: one-sided Fisher exact test that the first rate is the larger. odds_ratio: with 0.5 added
    to every cell (Haldane-Anscombe), so a control of zero hits gives a large finite ratio, not infinity.
    """
    from scipy.stats import fisher_exact

    p_value = float(fisher_exact([[hits, n - hits], [control_hits, n - control_hits]], alternative="greater")[1])
    odds = ((hits + 0.5) / (n - hits + 0.5)) / ((control_hits + 0.5) / (n - control_hits + 0.5))
    return p_value, float(odds)


def decide(score: float, p_value: float, odds_ratio: float, threshold: float, max_p_value: float,
           min_odds_ratio: float = 1.0, n_tests: int = 1) -> tuple[bool, str]:
    """(is_bias, the end of the reason text) for one concept under one detector.

    ``n_tests`` > 1: ``p_value`` is compared Bonferroni-corrected (times the number of concepts the detector
    tests), so ``max_p_value`` bounds the chance of one false flag in the run, not per concept; a detector
    whose ``threshold`` is 0 then decides by the corrected test and the odds ratio alone.
    """
    corrected = min(1.0, p_value * n_tests)
    big = score >= threshold
    significant = corrected <= max_p_value
    own = odds_ratio >= min_odds_ratio
    if threshold <= 0 and n_tests > 1:
        text = (f"p={p_value:.1g} x{n_tests} concepts (Bonferroni) = {corrected:.1g} "
                f"{'<=' if significant else '>'} {max_p_value:.1g}")
        if significant and not own:
            text += (f" but the odds ratio {odds_ratio:.1f} is below {min_odds_ratio:g}: the class's other samples "
                     "carry their class this way too, so it reads as a real feature that transfers, not a shortcut")
        return significant and own and score > 0, text
    text = f"difference {score:+.2f} is {'at or above' if big else 'below'} the flag threshold {threshold:.2f}"
    if big and not significant:
        text += f" but not significant (p={corrected:.1g} > {max_p_value:.1g})"
    elif big and not own:
        text += (f" but the odds ratio {odds_ratio:.1f} is below {min_odds_ratio:g}: the class's other samples "
                 "carry their class this way too, so it reads as a real feature that transfers, not a shortcut")
    return big and significant and own, text


def majority_test(hits: int, n: int, n_tests: int, max_p_value: float) -> tuple[bool, float]:
    """(decided, corrected p) of "more than half of the ``n`` pastes hit": one-sided binomial test against 1/2,
    Bonferroni-corrected over ``n_tests`` concepts like :func:`decide`.

    The paste tests compare a concept with its class-mates, which answers whether the concept carries its class
    further than the class's other samples do. Where every sample of the class carries the same shortcut the
    answer is no, though the shortcut decides: Decoy's shaded corner moved 53-75% of other classes' images to
    its class, its class-mates' own corners as many. A box of a few percent of the image that alone moves most
    images of other classes outweighs everything else in them. Half is where the box outweighs the rest, not a
    value fitted to a case; but it is a premise about the task: over 1,630 unflagged concepts of the detection
    matrix no real feature's box passed half, while one clean cells concept reached 47% (Fashion-MNIST 19%,
    MNIST 16%, digits 16%), and a task decided by one small region breaks it.
    """
    from scipy.stats import binomtest

    if n <= 0:
        return False, 1.0
    corrected = min(1.0, float(binomtest(hits, n, 0.5, alternative="greater").pvalue) * max(1, n_tests))
    return hits * 2 > n and corrected <= max_p_value, corrected
