"""The sparse linear surrogate over concept shares: features, fit, fidelity, formula, trust."""

import numpy as np
import pytest

from soxai.spectral.surrogate import (
    TRUSTWORTHY,
    concept_shares,
    fidelity,
    fit_sparse_linear,
    formula_lines,
    is_trustworthy,
    surrogate_entry,
    trust_split,
)


def test_concept_shares__counts_each_concept_among_the_neighbours_and_noise_for_none():
    reference = np.array([[0.0], [0.1], [0.2], [10.0], [10.1], [10.2]])
    concepts = np.array([4, 4, -1, 7, 7, 7])
    shares = concept_shares(np.array([[0.05], [10.05]]), reference, concepts, np.array([4, 7]), k=3)
    np.testing.assert_allclose(shares, [[2 / 3, 0.0], [0.0, 1.0]])


def test_concept_shares__self_rows_leaves_each_reference_sample_out_of_its_own_neighbours():
    reference = np.array([[0.0], [1.0], [5.0]])
    shares = concept_shares(reference[[2, 0]], reference, np.array([1, 2, 2]), np.array([1, 2]), k=1,
                            self_rows=np.array([2, 0]))
    np.testing.assert_allclose(shares, [[0, 1], [0, 1]])


def test_fit_sparse_linear__recovers_sparse_weights_and_keeps_at_most_max_terms():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(400, 12))
    truth = np.zeros((2, 12))
    truth[0, [1, 5]] = [3.0, -2.0]
    truth[1, 7] = 4.0
    y = x @ truth.T + np.array([1.0, -0.5]) + rng.normal(scale=0.01, size=(400, 2))
    weights, intercept = fit_sparse_linear(x, y, max_terms=3)
    assert ((weights != 0).sum(axis=1) <= 3).all()
    np.testing.assert_allclose(weights[:, [1, 5, 7]], truth[:, [1, 5, 7]], atol=0.1)
    np.testing.assert_allclose(intercept, [1.0, -0.5], atol=0.1)
    one, _ = fit_sparse_linear(x, y, max_terms=1)
    assert (one != 0).sum(axis=1).tolist() == [1, 1] and one[0, 1] > 0 and one[1, 7] > 0


def test_fit_sparse_linear__no_concepts__gives_the_mean_logit():
    y = np.array([[1.0, -1.0], [3.0, -3.0]])
    weights, intercept = fit_sparse_linear(np.zeros((2, 0)), y)
    assert weights.shape == (2, 0)
    np.testing.assert_allclose(intercept, [2.0, -2.0])


def test_fidelity__a_copy_agrees_fully_and_a_shuffle_does_not():
    logits = np.random.default_rng(1).normal(size=(50, 3))
    same = fidelity(logits + 5.0, logits)  # a shift common to all classes changes nothing softmax sees
    assert same["agreement"] == 1.0 and same["r2"] == pytest.approx(1.0) and same["n"] == 50
    other = fidelity(logits[::-1], logits)
    assert other["agreement"] < 0.8 and other["r2"] < 0.5
    assert np.isnan(fidelity(np.zeros((0, 3)), np.zeros((0, 3)))["agreement"])


def test_formula_lines__largest_weight_first_with_signs_names_and_intercept():
    lines = formula_lines(np.array([[0.4, 0.0, -0.71]]), np.array([-1.2]), np.array([3, 4, 5]),
                          names={5: "corner mark"})
    assert lines == ["class 0 ≈ −0.71·[concept 5: corner mark] + 0.40·[concept 3] − 1.20"]
    assert formula_lines(np.zeros((1, 2)), np.array([0.5]), np.array([1, 2])) == ["class 0 ≈ 0.50"]
    # with the data's class names, as `soxai concepts` writes them; a class without a name keeps its code
    two = formula_lines(np.zeros((2, 2)), np.array([0.5, 0.25]), np.array([1, 2]), class_names=("round",))
    assert two == ["class round ≈ 0.50", "class 1 ≈ 0.25"]


def test_surrogate_entry__reports_fidelity_per_split_and_the_trust_flag_follows_the_threshold():
    rng = np.random.default_rng(2)
    x = rng.uniform(size=(300, 4))
    logits = np.stack([3 * x[:, 0], 3 * x[:, 1], np.zeros(300)], axis=1)
    entry = surrogate_entry(x[:200], logits[:200], {"test": (x[200:], logits[200:]),
                                                    "noisy": (x[200:], rng.normal(size=(100, 3)))},
                            np.array([10, 11, 12, 13]))
    assert entry["fidelity"]["test"]["agreement"] > 0.9 and entry["fidelity"]["train"]["n"] == 200
    assert set(entry["weights"][0]) >= {"10"} and len(entry["formula"]) == 3
    assert is_trustworthy(entry, "test")
    assert entry["fidelity"]["noisy"]["agreement"] < TRUSTWORTHY and not is_trustworthy(entry, "noisy")
    assert not is_trustworthy(entry, None)


def test_trust_split__prefers_test_then_another_evaluation_split_then_val():
    assert trust_split(["val", "test", "test_attacked"]) == "test"
    assert trust_split(["val", "holdout"]) == "holdout"
    assert trust_split(["val"]) == "val"
    assert trust_split([]) is None
