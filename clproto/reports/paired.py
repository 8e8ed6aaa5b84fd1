"""Seed-paired differences between two strategies: mean, confidence interval and a paired test.

Two runs of one scenario with the same seed see the same class order, shots and subsets, so a
strategy is compared with a baseline seed by seed: ``d_s = other_s − baseline_s``. Reported:

* the mean difference ``d̄`` over the ``n`` seeds both have a value for;
* its 95 % confidence interval, the t-interval ``d̄ ± t_{0.975, n−1} · sd(d) / √n`` (sd with ddof 1),
  whichever test is chosen;
* a two-sided paired test (SciPy):

  - ``"t"`` — paired t-test, :func:`scipy.stats.ttest_rel`. Assumes the differences are roughly
    normal; fine with few seeds (n ≥ 2). Undefined (``None``) when every difference is the same
    (zero variance);
  - ``"wilcoxon"`` — Wilcoxon signed-rank test, :func:`scipy.stats.wilcoxon` (SciPy's defaults:
    zero differences dropped, exact distribution for small n without ties). No normality
    assumption, but with n pairs its smallest two-sided p-value is ``2 / 2^n``: below 6 seeds
    p < 0.05 cannot be reached. Undefined when every difference is zero.

With a single pair there is a difference but no interval and no test.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import numpy as np

TESTS = ("t", "wilcoxon")
ALPHA = 0.05  # significance level of the markers (two-sided)
CONFIDENCE = 0.95  # level of the confidence interval
WILCOXON_MIN_N = 6  # smallest n at which the two-sided signed-rank test can give p < 0.05 (2 / 2^6 = 0.031)
TEST_NAMES = {"t": "paired t-test", "wilcoxon": "Wilcoxon signed-rank test"}


@dataclass(frozen=True)
class PairedDifference:
    seeds: tuple  # the seeds paired, sorted
    mean: float  # mean of other − baseline over the paired seeds
    ci_low: Optional[float]  # t-interval bounds; None for a single pair
    ci_high: Optional[float]
    statistic: Optional[float]  # t, or Wilcoxon's W; None where the test is undefined
    p_value: Optional[float]  # two-sided; None where the test is undefined
    test: str  # "t" or "wilcoxon"

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < ALPHA


def pair_by_seed(other: Mapping[int, Optional[float]], baseline: Mapping[int, Optional[float]]
                 ) -> tuple[list[int], list[float], list[float]]:
    """The seeds where both have a value (``None`` and NaN are no value), and the two value lists in seed order."""
    def ok(v) -> bool:
        return v is not None and not (isinstance(v, float) and math.isnan(v))

    seeds = sorted(s for s in other if s in baseline and ok(other[s]) and ok(baseline[s]))
    return seeds, [float(other[s]) for s in seeds], [float(baseline[s]) for s in seeds]


def paired_difference(seeds: Sequence[int], other: Sequence[float], baseline: Sequence[float], *,
                      test: str = "t") -> PairedDifference:
    """Mean of ``other − baseline``, its t-interval and the ``test`` p-value (see the module docstring)."""
    from scipy import stats

    if test not in TESTS:
        raise ValueError(f"unknown paired test {test!r}: expected one of {', '.join(TESTS)}")
    if not (len(seeds) == len(other) == len(baseline)) or not seeds:
        raise ValueError("paired_difference needs as many seeds as values on each side, at least one")
    x, b = np.asarray(other, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    d = np.round(x - b, 12)  # (n,); float noise of equal differences (0.8 − 0.6 vs 0.9 − 0.7) would fake a variance
    n, mean = len(d), float(d.mean())
    if n < 2:
        return PairedDifference(tuple(seeds), mean, None, None, None, None, test)
    sd = float(d.std(ddof=1))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * sd / math.sqrt(n)
    statistic = p = None
    with warnings.catch_warnings():  # SciPy warns on ties and tiny samples; the undefined cases are handled here
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        if test == "t" and sd > 0:
            res = stats.ttest_1samp(d, 0.0)  # = ttest_rel(other, baseline) on the rounded differences
            statistic, p = float(res.statistic), float(res.pvalue)
        elif test == "wilcoxon" and np.any(d != 0):
            res = stats.wilcoxon(d)  # = wilcoxon(other, baseline) on the rounded differences
            statistic, p = float(res.statistic), float(res.pvalue)
    return PairedDifference(tuple(seeds), mean, mean - half, mean + half, statistic, p, test)
