"""Excesses over the SPI-ACS background: counts in windows of bins, scan-statistic trials, the search."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence

import numpy as np
from astropy.table import Table
from scipy import stats

from .background import SpiAcsBackground
from .data import DEFAULT_TIMESCALES_S, SpiAcsLightCurve

log = logging.getLogger(__name__)

__all__ = ["Excess", "ExcessSearch", "WINDOW_COLUMNS", "excess_in_window", "scan_timescale", "search_excess"]


#: What is measured in one window of bins (:func:`scan_timescale`), and so in each row of a search or of limits.
WINDOW_COLUMNS = ("start_s", "stop_s", "counts", "background", "excess", "sigma_counts", "significance")


def scan_timescale(
    lc: SpiAcsLightCurve,
    background: SpiAcsBackground,
    *,
    timescale_s: float,
    window: tuple[float, float] | None = None,
) -> Table:
    """Every window of ``timescale_s`` (sliding by one bin) inside ``window``: counts, background, significance.

    A window is ``m = round(timescale_s / bin)`` consecutive bins without a gap. Its significance is
    (counts − background) / σ with σ² = F·background + the background model's variance over the window,
    F the excess-variance factor of that timescale (:meth:`SpiAcsBackground.factor_for`).

    Parameters
    ----------
    lc : SpiAcsLightCurve
    background : SpiAcsBackground
    timescale_s : float
        Window length, s (rounded to whole bins, at least one).
    window : (float, float), optional
        Interval (s from t0) the windows lie in; the whole light curve by default.

    Returns
    -------
    astropy.table.Table
        Columns ``start_s``, ``stop_s``, ``counts``, ``background``, ``excess``, ``sigma_counts``,
        ``significance``; meta ``timescale_s``, ``n_bins``, ``excess_variance``.
    """
    m = max(1, int(round(timescale_s / lc.bin_s)))
    design = background.design(lc)
    expected = design @ background.coefficients
    n = len(lc) - m + 1
    factor = background.factor_for(m)
    meta = {"timescale_s": m * lc.bin_s, "n_bins": m, "excess_variance": factor}
    if n <= 0:
        return Table(names=WINDOW_COLUMNS, dtype=[float] * len(WINDOW_COLUMNS), meta=meta)

    def window_sums(values):
        cumulative = np.concatenate([np.zeros((1,) + values.shape[1:]), np.cumsum(values, axis=0)])
        return cumulative[m:] - cumulative[:-m]

    start = lc.time_s[:n] - lc.bin_s / 2
    stop = lc.time_s[m - 1 :] + lc.bin_s / 2
    counts = window_sums(lc.counts)
    model = window_sums(expected)
    rows = window_sums(design)
    model_variance = np.einsum("ij,jk,ik->i", rows, background.covariance, rows)
    sigma = np.sqrt(factor * np.clip(model, 0.0, None) + model_variance)
    keep = stop - start <= (m + 0.5) * lc.bin_s  # no gap inside
    if window is not None:
        keep &= (start >= window[0] - lc.bin_s / 2) & (stop <= window[1] + lc.bin_s / 2)
    excess = counts - model
    table = Table(
        [start, stop, counts, model, excess, sigma, excess / sigma],
        names=WINDOW_COLUMNS,
        meta=meta,
    )
    return table[keep]


def excess_in_window(lc: SpiAcsLightCurve, background: SpiAcsBackground, *, start_s: float, timescale_s: float) -> dict:
    """Counts, background, excess and significance of the window of ``timescale_s`` starting at ``start_s``.

    The window is the ``m`` bins from the one containing ``start_s``.

    Returns
    -------
    dict
        ``start_s``, ``stop_s``, ``counts``, ``background``, ``excess``, ``sigma_counts``, ``significance``,
        ``timescale_s``, ``excess_variance`` (NaN values when ``start_s`` falls outside the data or the
        window crosses a gap).
    """
    scan = scan_timescale(lc, background, timescale_s=timescale_s)
    half = lc.bin_s / 2
    inside = (scan["start_s"] <= start_s + 1e-9) & (scan["start_s"] + lc.bin_s > start_s + 1e-9)
    result = {"timescale_s": scan.meta["timescale_s"], "excess_variance": scan.meta["excess_variance"]}
    if not inside.any():
        nan = float("nan")
        result.update(dict.fromkeys(scan.colnames, nan))
        result["start_s"] = float(start_s - half)
        return result
    row = scan[np.flatnonzero(inside)[0]]
    result.update({name: float(row[name]) for name in scan.colnames})
    return result


def _siegmund_nu(x: np.ndarray) -> np.ndarray:
    """Overshoot correction ν(x) of a discretely sampled scan (Siegmund & Yakir 2007's approximation)."""
    x = np.maximum(np.asarray(x, dtype=float), 1e-9)
    half = x / 2
    return (2 / x) * (stats.norm.cdf(half) - 0.5) / (half * stats.norm.cdf(half) + stats.norm.pdf(half))


def scan_p_value(significance: float, *, span_s: float, timescale_s: float, step_s: float) -> float:
    """Chance of a maximum ≥ ``significance`` among the windows of one timescale scanned over ``span_s``.

    Gaussian white noise, windows of ``timescale_s`` sliding by ``step_s``: P ≈ 1 − (1 − Q(b))·exp(−λ),
    λ = (span − w)/w · b φ(b) ν(b √(2 step / w)) (Siegmund & Yakir 2007), Q the one-window tail.
    For ``step = w`` it reduces to independent trials.

    Returns
    -------
    float
        The p-value (1 for a significance ≤ 0).
    """
    b = float(significance)
    if not math.isfinite(b) or b <= 0:
        return 1.0
    w = float(timescale_s)
    windows = max(span_s - w, 0.0) / w
    lam = windows * b * stats.norm.pdf(b) * float(_siegmund_nu(b * math.sqrt(2 * step_s / w)))
    p = 1.0 - stats.norm.cdf(b) * math.exp(-lam)
    return float(min(max(p, stats.norm.sf(b)), 1.0))


@dataclasses.dataclass
class Excess:
    """The most significant excess of a search.

    Attributes
    ----------
    start_s, stop_s : float
        Its window, s from t0.
    timescale_s : float
        The window's length.
    counts, background, excess, sigma_counts : float
        Counts, background and excess in the window, and the excess's 1σ error (excess variance included).
    significance : float
        excess / sigma_counts (pre-trials).
    p_timescale : float
        Chance probability of the best window of its timescale within the search window.
    p_post_trials : float
        Chance probability of the best window of all timescales (Šidák over the timescales).
    post_trial_significance : float
        ``p_post_trials`` as a one-sided Gaussian significance (0 when p ≥ 0.5).
    """

    start_s: float
    stop_s: float
    timescale_s: float
    counts: float
    background: float
    excess: float
    sigma_counts: float
    significance: float
    p_timescale: float
    p_post_trials: float
    post_trial_significance: float

    @property
    def time_s(self) -> float:
        """Middle of the window, s from t0."""
        return 0.5 * (self.start_s + self.stop_s)

    def as_dict(self) -> dict:
        """JSON-safe form."""
        return {**dataclasses.asdict(self), "time_s": self.time_s}


@dataclasses.dataclass
class ExcessSearch:
    """A search for excesses on several timescales.

    Attributes
    ----------
    best : Excess
        The window whose timescale's chance probability is lowest.
    table : astropy.table.Table
        One row per timescale: its best window and significance, its chance probability, the number of
        windows scanned and the excess-variance factor used.
    window : (float, float)
        The searched interval, s from t0.
    threshold_sigma : float
        Post-trials significance of a detection.
    """

    best: Excess
    table: Table
    window: tuple[float, float]
    threshold_sigma: float

    @property
    def detected(self) -> bool:
        """Whether the best excess reaches the threshold after trials."""
        return self.best.post_trial_significance >= self.threshold_sigma

    def summary(self) -> str:
        """One sentence on the result."""
        b = self.best
        verdict = "detected" if self.detected else "no significant excess"
        return (
            f"{verdict}: best excess at T0{b.start_s:+.2f} s to T0{b.stop_s:+.2f} s on {b.timescale_s:g} s, "
            f"{b.excess:.0f} ± {b.sigma_counts:.0f} counts, {b.significance:.1f}σ pre-trials, "
            f"{b.post_trial_significance:.1f}σ after trials (p = {b.p_post_trials:.2g}; threshold "
            f"{self.threshold_sigma:g}σ)"
        )


def _timescale_bins(lc: SpiAcsLightCurve, timescales_s: Sequence[float]) -> list[int]:
    bins = []
    for timescale in timescales_s:
        m = max(1, int(round(float(timescale) / lc.bin_s)))
        if m not in bins:
            bins.append(m)
    return bins


def search_excess(
    lc: SpiAcsLightCurve,
    background: SpiAcsBackground,
    *,
    timescales_s: Sequence[float] = DEFAULT_TIMESCALES_S,
    window: tuple[float, float] = (-30.0, 30.0),
    threshold_sigma: float = 3.0,
) -> ExcessSearch:
    """Find the most significant excess above the background on several timescales within ``window``.

    Each timescale is scanned with windows sliding by one bin (:func:`scan_timescale`); the chance
    probability of its best window accounts for the windows scanned (:func:`scan_p_value`), and that of
    the best of all timescales for their number (Šidák: 1 − (1 − p_min)^n, conservative since the
    timescales are correlated). Timescales are rounded to whole bins (shorter ones become one bin).

    Parameters
    ----------
    lc : SpiAcsLightCurve
    background : SpiAcsBackground
    timescales_s : sequence of float
        Window lengths, s.
    window : (float, float)
        Searched interval, s from t0. It should lie inside the background's excluded interval.
    threshold_sigma : float
        Post-trials significance of a detection.

    Returns
    -------
    ExcessSearch

    Raises
    ------
    ValueError
        If no timescale fits in the window.
    """
    low, high = float(window[0]), float(window[1])
    if low < background.exclude[0] or high > background.exclude[1]:
        log.warning(
            "the searched interval %s is not inside the background's excluded interval %s: an excess there also "
            "raised the background",
            window,
            background.exclude,
        )
    rows, bests = [], []
    for m in _timescale_bins(lc, timescales_s):
        scan = scan_timescale(lc, background, timescale_s=m * lc.bin_s, window=(low, high))
        if not len(scan):
            continue
        i = int(np.argmax(scan["significance"]))
        best = scan[i]
        timescale = scan.meta["timescale_s"]
        p = scan_p_value(float(best["significance"]), span_s=high - low, timescale_s=timescale, step_s=lc.bin_s)
        rows.append(
            (timescale, m, len(scan), *(float(best[name]) for name in WINDOW_COLUMNS), p, scan.meta["excess_variance"])
        )
        bests.append(best)
    if not rows:
        raise ValueError(f"no timescale of {list(timescales_s)} s fits in the window {window} of the light curve")
    names = ("timescale_s", "n_bins", "n_windows", *WINDOW_COLUMNS, "p_timescale", "excess_variance")
    table = Table(rows=rows, names=names)
    i = int(np.argmin(table["p_timescale"]))
    p_min = float(table["p_timescale"][i])
    p_post = float(-math.expm1(len(table) * math.log1p(-min(p_min, 1.0 - 1e-16))))
    post_sigma = float(max(stats.norm.isf(p_post), 0.0)) if p_post > 0 else float(stats.norm.isf(1e-300))
    row = table[i]
    best = Excess(
        **{name: float(row[name]) for name in ("timescale_s", *WINDOW_COLUMNS)},
        p_timescale=p_min,
        p_post_trials=p_post,
        post_trial_significance=post_sigma,
    )
    table.meta.update(window=[low, high], threshold_sigma=float(threshold_sigma), n_timescales=len(table))
    search = ExcessSearch(best=best, table=table, window=(low, high), threshold_sigma=float(threshold_sigma))
    log.info("SPI-ACS search: %s", search.summary())
    return search
