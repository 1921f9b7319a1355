"""Statistical tests over plain data (numpy/scipy)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

EXACT_BELOW = 25
"""McNemar: below this many discordant pairs the exact binomial test is used."""


def mcnemar(
    correct_a: Sequence[bool], correct_b: Sequence[bool], *, alpha: float = 0.05
) -> dict[str, Any]:
    """McNemar's test on paired outcomes (was each model right on the same row?).

    b = rows only A got right, c = rows only B got right. Exact binomial when b + c is
    small, else the chi-square test with continuity correction.
    """
    a = np.asarray(correct_a, dtype=bool)
    b_ = np.asarray(correct_b, dtype=bool)
    if a.shape != b_.shape:
        raise ValueError("paired outcomes must have the same length")
    return mcnemar_counts(
        only_a=int((a & ~b_).sum()),
        only_b=int((~a & b_).sum()),
        both=int((a & b_).sum()),
        neither=int((~a & ~b_).sum()),
        alpha=alpha,
    )


def mcnemar_counts(
    *, only_a: int, only_b: int, both: int, neither: int, alpha: float = 0.05
) -> dict[str, Any]:
    """McNemar's test from the paired counts: rows only A got right, only B, both, neither."""
    n = only_a + only_b
    if n == 0:
        p, method, statistic = 1.0, "none (no discordant pairs)", 0.0
    elif n < EXACT_BELOW:
        p = float(stats.binomtest(min(only_a, only_b), n, 0.5).pvalue)
        method, statistic = "exact binomial", float(min(only_a, only_b))
    else:
        statistic = (abs(only_a - only_b) - 1) ** 2 / n
        p = float(stats.chi2.sf(statistic, df=1))
        method = "chi-square, continuity corrected"
    if p >= alpha:
        verdict = (
            f"no significant difference (p = {p:.3g} ≥ {alpha}): the models disagree on "
            f"{n} rows, {only_a} in A's favour and {only_b} in B's"
        )
    else:
        better = "B" if only_b > only_a else "A"
        verdict = (
            f"{better} is significantly more accurate (p = {p:.3g} < {alpha}): "
            f"{max(only_a, only_b)} of the {n} rows where they disagree go its way"
        )
    return {
        "rows": only_a + only_b + both + neither,
        "only_a_correct": only_a,
        "only_b_correct": only_b,
        "both_correct": both,
        "both_wrong": neither,
        "method": method,
        "statistic": float(statistic),
        "p_value": p,
        "alpha": alpha,
        "significant": bool(p < alpha),
        "verdict": verdict,
    }
