"""Sampling bounds for tests that compare a few dozen measurements with their truth."""

from __future__ import annotations

import math

from scipy import stats


def pull_std_band(n: int, coverage: float = 0.997) -> tuple[float, float]:
    """Central interval of the sample standard deviation (ddof=1) of ``n`` draws from N(0, 1).

    ``(n − 1)·s²`` follows χ² with ``n − 1`` degrees of freedom; with 15-25 pulls the interval is wide
    (n = 15: 0.54-1.55), and bounds tuned to one noise realisation fail for the next.
    """
    tail = (1.0 - coverage) / 2.0
    low, high = (math.sqrt(stats.chi2.ppf(q, n - 1) / (n - 1)) for q in (tail, 1.0 - tail))
    return low, high
