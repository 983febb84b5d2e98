"""The SPI-ACS background: a polynomial fitted off-source, and the excess variance measured there."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import numpy as np
from scipy import stats

from .data import DEFAULT_TIMESCALES_S, SpiAcsLightCurve

log = logging.getLogger(__name__)

__all__ = ["SpiAcsBackground", "fit_background"]


#: Chance probability below which longer sums are taken to show red noise (their own factor is then used).
RED_NOISE_P = 1e-3


@dataclasses.dataclass
class SpiAcsBackground:
    """Polynomial background of a light curve, fitted off-source, and its excess variance.

    Attributes
    ----------
    coefficients : ndarray
        Legendre coefficients of the rate (counts/s) in ``x = (t − centre_s)/half_span_s``.
    covariance : ndarray
        Their covariance (Poisson variance × the excess-variance factor).
    centre_s, half_span_s : float
        The scaling of time.
    order : int
        Polynomial order.
    exclude : tuple of float
        Interval left out of the fit, s from t0.
    excess_variance : float
        Variance of the off-source residuals over the Poisson variance, at the light curve's bin.
    excess_variance_by_bins : dict
        The factor measured on sums of ``m`` bins (``{m: (factor, n_sums, red_noise)}``); where the sums
        show more variance than the bin-level factor allows (χ² test at 0.1 %), it replaces it on that
        timescale (``red_noise`` True).
    off_source : ndarray of bool
        The bins fitted.
    chi2_dof : float
        χ²/dof of the fit with Poisson errors (≈ ``excess_variance``).
    """

    coefficients: np.ndarray
    covariance: np.ndarray
    centre_s: float
    half_span_s: float
    order: int
    exclude: tuple[float, float]
    excess_variance: float
    excess_variance_by_bins: dict
    off_source: np.ndarray
    chi2_dof: float

    def design(self, lc: SpiAcsLightCurve) -> np.ndarray:
        """Rows mapping the coefficients to each bin's expected counts."""
        x = (lc.time_s - self.centre_s) / self.half_span_s
        return np.polynomial.legendre.legvander(x, self.order) * lc.exposure_s[:, None]

    def rate(self, time_s) -> np.ndarray:
        """Background rate at ``time_s`` (s from t0), counts/s."""
        x = (np.asarray(time_s, dtype=float) - self.centre_s) / self.half_span_s
        return np.polynomial.legendre.legval(x, self.coefficients)

    def counts(self, lc: SpiAcsLightCurve) -> np.ndarray:
        """Expected background counts in each bin of ``lc``."""
        return self.design(lc) @ self.coefficients

    def factor_for(self, n_bins: int) -> float:
        """The excess-variance factor used for sums of ``n_bins`` bins."""
        entry = self.excess_variance_by_bins.get(int(n_bins))
        if entry is not None and entry[2]:
            return float(entry[0])
        return float(self.excess_variance)


def _block_sums(values: np.ndarray, runs: list[np.ndarray], m: int) -> np.ndarray:
    """Sums of non-overlapping blocks of ``m`` consecutive bins within each run of contiguous bins."""
    sums = []
    for run in runs:
        n = len(run) // m
        if n:
            sums.append(values[run[: n * m]].reshape(n, m).sum(axis=1))
    return np.concatenate(sums) if sums else np.zeros(0)


def _contiguous_runs(lc: SpiAcsLightCurve, mask: np.ndarray) -> list[np.ndarray]:
    """Index runs of selected bins with no gap between them."""
    index = np.flatnonzero(mask)
    if not len(index):
        return []
    breaks = np.flatnonzero((np.diff(index) != 1) | (np.diff(lc.time_s[index]) > 1.5 * lc.bin_s)) + 1
    return np.split(index, breaks)


def fit_background(
    lc: SpiAcsLightCurve,
    *,
    exclude: tuple[float, float] = (-50.0, 50.0),
    order: int = 2,
    timescales_s: Sequence[float] = DEFAULT_TIMESCALES_S,
) -> SpiAcsBackground:
    """Fit a polynomial background to the bins outside ``exclude`` and measure the excess variance there.

    The fit is a weighted least-squares fit of the counts with Poisson weights (iterated once on the
    model). SPI-ACS counts scatter more than Poisson: the factor ``F`` = Σ(residual²/model)/(N − order − 1)
    is measured on the off-source bins and scales every variance after it (the fit's covariance included).
    The factor is also measured on non-overlapping sums of the bins of each timescale; where those show
    significantly more variance (red noise, χ² at 0.1 %), that factor is used for the timescale.

    Parameters
    ----------
    lc : SpiAcsLightCurve
        The light curve.
    exclude : (float, float)
        Interval (s from t0) left out of the fit: where the signal may be.
    order : int
        Polynomial order (2 for windows of a few hundred seconds; higher near the radiation belts).
    timescales_s : sequence of float
        Timescales whose excess variance is measured.

    Returns
    -------
    SpiAcsBackground

    Raises
    ------
    ValueError
        Too few off-source bins for the order.
    """
    low, high = float(exclude[0]), float(exclude[1])
    left, right = lc.time_s - lc.bin_s / 2, lc.time_s + lc.bin_s / 2
    off = ((right <= low) | (left >= high)) & (lc.exposure_s > 0)
    n_par = order + 1
    if off.sum() < max(10, 5 * n_par):
        raise ValueError(
            f"{int(off.sum())} bins outside the excluded interval {exclude}: too few for a background of order "
            f"{order} (widen the light curve or narrow the exclusion)"
        )
    centre = 0.5 * (lc.time_s[0] + lc.time_s[-1])
    half = max(0.5 * (lc.time_s[-1] - lc.time_s[0]), lc.bin_s)
    x = (lc.time_s - centre) / half
    design = np.polynomial.legendre.legvander(x, order) * lc.exposure_s[:, None]
    a_off, c_off = design[off], lc.counts[off]
    variance = np.clip(lc.exposure_s[off] * np.average(lc.rate[off], weights=lc.exposure_s[off]), 1.0, None)
    for _ in range(2):  # Poisson weights from the exposure, then from the model itself
        weights = 1.0 / variance
        normal = a_off.T @ (a_off * weights[:, None])
        coefficients = np.linalg.solve(normal, a_off.T @ (c_off * weights))
        variance = np.clip(a_off @ coefficients, 1.0, None)
    model_off = a_off @ coefficients
    residual = c_off - model_off
    n_off = int(off.sum())
    chi2 = float(np.sum(residual**2 / model_off))
    factor = chi2 / (n_off - n_par)
    covariance = factor * np.linalg.inv(a_off.T @ (a_off / model_off[:, None]))

    # the factor on longer sums: white noise keeps it, red noise raises it
    runs = _contiguous_runs(lc, off)
    model_all = design @ coefficients
    residual_all = lc.counts - model_all
    by_bins = {}
    for timescale in timescales_s:
        m = max(1, int(round(timescale / lc.bin_s)))
        if m in by_bins:
            continue
        sums = _block_sums(residual_all, runs, m)
        models = _block_sums(model_all, runs, m)
        dof = len(sums) - n_par
        if dof < 5:
            by_bins[m] = (factor, len(sums), False)
            continue
        q = float(np.sum(sums**2 / models))
        red = q / factor > stats.chi2.isf(RED_NOISE_P, dof) and m > 1
        by_bins[m] = (q / dof, len(sums), bool(red))
        if red:
            log.warning(
                "SPI-ACS background: sums of %d bins scatter %.2f times Poisson, above the %.2f of single bins "
                "(red noise): that factor is used on %.3g s",
                m,
                q / dof,
                factor,
                m * lc.bin_s,
            )
    log.info("SPI-ACS background: order %d on %d bins, excess variance %.3f", order, n_off, factor)
    return SpiAcsBackground(
        coefficients=coefficients,
        covariance=covariance,
        centre_s=float(centre),
        half_span_s=float(half),
        order=int(order),
        exclude=(low, high),
        excess_variance=float(factor),
        excess_variance_by_bins=by_bins,
        off_source=off,
        chi2_dof=float(factor),
    )
