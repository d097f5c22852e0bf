"""Tolerances that follow from float32 rounding, for tests that check float32 results against float64 or
closed-form references.

A bare ``atol=1e-5`` says nothing about why 1e-5 holds: a float32 dot product of D terms is off by up
to a few units of roundoff times ``S = sum_i |w_i x_i|``, not times the result. When the result is the
difference of two such sums (occlusion: the logit minus the logit with a window zeroed) the difference
may be small while ``S`` is in the thousands, and which way the roundings fall depends on the summation
order, which differs between CPUs (the matmul kernel and its vector width: AVX2 or AVX-512). So these
helpers give the bound in terms of ``S`` and the number of terms, and `assert_within` checks it with no
relative slack.

Notation from Higham, *Accuracy and Stability of Numerical Algorithms* (2nd ed., 2002), §2.2 and
§3.1: ``u`` is the unit roundoff (2**-24 for float32, round to nearest) and
``gamma(n) = n u / (1 - n u)`` bounds the product of n relative errors of at most ``u`` each.
"""

from __future__ import annotations

import math

import numpy as np

FLOAT32_U = 2.0**-24
"""Unit roundoff of float32: a correctly rounded operation is within a factor (1 + d), |d| <= 2**-24."""


def gamma(n: int | np.ndarray, u: float = FLOAT32_U) -> float | np.ndarray:
    """Higham's ``gamma_n = n u / (1 - n u)``: the relative error of a result that went through ``n``
    roundings (a sum of ``n + 1`` terms in any order: ``|fl(sum) - sum| <= gamma_n * sum |terms|``)."""
    nu = np.asarray(n, dtype=np.float64) * u
    if np.any(nu >= 1):
        raise ValueError(f"gamma is defined for n u < 1; got n = {n}")
    out = nu / (1 - nu)
    return float(out) if out.ndim == 0 else out


def dot_gamma(n_terms: int, u: float = FLOAT32_U) -> float:
    """Relative bound of a float32 dot product of ``n_terms`` terms, in units of ``sum_i |w_i x_i|``:
    ``gamma(ceil(log2 n) + 1)``, one rounding for the product and one per level of a summation tree of
    depth ceil(log2 n) (Higham §3.1, inner products, with the pairwise summation of §4.2).

    This is the bound for a summation tree of minimal depth, not for every order: a BLAS kernel
    accumulates sequentially along blocks of the inner dimension, and the worst case over all orders is
    ``gamma(n)`` (n roundings per term). That worst case needs every rounding to go the same way with
    every partial sum as large as ``sum |terms|``. With the terms of random sign used by these tests
    (standard-normal weights times standard-normal inputs) a partial sum of k terms is about sqrt(k)
    terms, not k, and the error of any order is of the order of ``u * sum |terms|``: for the occlusion
    test's 2880-term logits a plain sequential float32 sum (the worst realistic order) gave at most
    1.2 u * S on the difference of two logits, a twentieth of ``2 * dot_gamma(2880) * S`` (26 u * S).
    Do not use it for sums whose terms mostly share a sign; use `gamma` (n) there.
    """
    if n_terms < 1:
        raise ValueError(f"a dot product needs at least one term; got {n_terms}")
    return gamma(math.ceil(math.log2(n_terms)) + 1, u)


def assert_within(actual: object, expected: object, bound: object, what: str = "") -> float:
    """Assert ``|actual - expected| <= bound`` elementwise (all broadcast together), no relative slack.

    Returns the largest ``|actual - expected| / bound``: how much of the bound was used (0 where both
    are 0). The message names the worst element, its error and its bound.
    """
    a = np.asarray(_numpy(actual), dtype=np.float64)
    e = np.asarray(_numpy(expected), dtype=np.float64)
    b = np.asarray(_numpy(bound), dtype=np.float64)
    a, e, b = np.broadcast_arrays(a, e, b)
    if np.any(b < 0) or not np.isfinite(b).all():
        raise ValueError("bound must be finite and non-negative")
    err = np.abs(a - e)
    ratio = np.divide(err, b, out=np.where(err > 0, np.inf, 0.0), where=b > 0)
    ratio = np.where(np.isnan(err), np.inf, ratio)
    worst = float(ratio.max()) if ratio.size else 0.0
    if worst > 1:
        i = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
        raise AssertionError(
            f"{what + ': ' if what else ''}{int((ratio > 1).sum())} of {ratio.size} elements exceed their rounding "
            f"bound; worst at {tuple(int(k) for k in i)}: actual {a[i]!r}, expected {e[i]!r}, |error| {err[i]:.3e} > "
            f"bound {b[i]:.3e} ({worst:.3g}x); max |error| {float(np.nanmax(err)):.3e}, bounds {float(b.min()):.3e}"
            f"..{float(b.max()):.3e}"
        )
    return worst


def _numpy(value: object) -> object:
    """A torch tensor as a NumPy array (detached, on the CPU); anything else unchanged."""
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return value
