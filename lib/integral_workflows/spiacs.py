"""SPI-ACS light curves around a time: fetch (``spi_acs_lc``), background, excess search, upper limits, fluences.

>>> lc = fetch_spiacs_lightcurve(session, t0_utc="2017-08-17T12:41:06.47", before_s=300, after_s=300)  # doctest: +SKIP
>>> background = fit_background(lc, exclude=(-50.0, 50.0))                                            # doctest: +SKIP
>>> search = search_excess(lc, background, window=(-30.0, 30.0))                                      # doctest: +SKIP
>>> limits = upper_limits(lc, background, timescales_s=(0.1, 1.0, 10.0))                              # doctest: +SKIP
>>> fluence_upper_limits(limits, theta_deg=70.0)                                                      # doctest: +SKIP

The methods (polynomial background over off-source windows, excess variance measured off-source, scan-statistic
trials, upper limits, the response approximation of the count-to-fluence conversion) are written down in
``docs/science_notes.md``, section "SPI-ACS".
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table
from astropy.time import Time, TimeDelta
from scipy import integrate, stats

from .products import Product

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_TIMESCALES_S",
    "FLUENCE_BAND_KEV",
    "SPECTRA",
    "Excess",
    "ExcessSearch",
    "SpiAcsBackground",
    "SpiAcsError",
    "SpiAcsLightCurve",
    "SpiAcsNoData",
    "SpiAcsRefused",
    "WINDOW_COLUMNS",
    "angular_response",
    "counts_per_fluence",
    "effective_area_cm2",
    "excess_in_window",
    "fetch_spiacs_lightcurve",
    "fit_background",
    "fluence_upper_limits",
    "light_curve_from_unit",
    "plot_light_curve",
    "plot_significance",
    "scan_timescale",
    "search_excess",
    "upper_limits",
    "write_products",
]

#: The instrument's native bin (the data server's 50 ms light curve).
NATIVE_BIN_S = 0.05
#: From the time of a 50 ms sample (the start of its interval, as the data server tags it) to its centre.
SAMPLE_TIME_TO_CENTRE_S = NATIVE_BIN_S / 2
#: Timescales of the excess search, s (from the native bin to the longest of short GRBs' and then some).
DEFAULT_TIMESCALES_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
#: Chance probability below which longer sums are taken to show red noise (their own factor is then used).
RED_NOISE_P = 1e-3
#: Band of the quoted fluences, keV (the band of INTEGRAL's SPI-ACS GCN circulars).
FLUENCE_BAND_KEV = (75.0, 2000.0)
#: What is measured in one window of bins (:func:`scan_timescale`), and so in each row of a search or of limits.
WINDOW_COLUMNS = ("start_s", "stop_s", "counts", "background", "excess", "sigma_counts", "significance")
#: Seconds per day.
_DAY_S = 86400.0
#: MJD of the light curves' MJDREF.
_MJDREF = 51544.0


# ---------------------------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------------------------
class SpiAcsError(RuntimeError):
    """MMODA could not make the SPI-ACS light curve; ``message`` and ``debug_message`` are the backend's texts."""

    def __init__(self, message: str, *, debug_message: str = ""):
        super().__init__(f"{message}: {debug_message}" if debug_message else message)
        self.message = message
        self.debug_message = debug_message


class SpiAcsNoData(SpiAcsError):
    """No usable SPI-ACS data in the window (perigee passages, before or after the mission, data gaps)."""


class SpiAcsRefused(SpiAcsError):
    """The SPI-ACS data server refused the request (its span limit, a revolution boundary)."""


# ---------------------------------------------------------------------------------------------------------------
# the light curve
# ---------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class SpiAcsLightCurve:
    """An SPI-ACS light curve around ``t0``: counts per bin of the shield's total rate.

    Attributes
    ----------
    time_s : ndarray
        Bin centres, s from ``t0``.
    counts : ndarray
        Counts in each bin (RATE × exposure).
    exposure_s : ndarray
        Live time of each bin, s (RATE / ERROR², the plugin's error being √(RATE·t)/t): the bin width,
        less for a bin with missing 50 ms samples.
    bin_s : float
        Bin width, s (TIMEDEL).
    t0 : astropy.time.Time
        The reference time (UTC).
    meta : dict
        Where it came from: the request, the RATE header (TSTART, TIMEZERO, EPHS, PROPHECY...), the data level,
        the time convention found, ``simulated``.
    """

    time_s: np.ndarray
    counts: np.ndarray
    exposure_s: np.ndarray
    bin_s: float
    t0: Time
    meta: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.time_s = np.asarray(self.time_s, dtype=float)
        self.counts = np.asarray(self.counts, dtype=float)
        self.exposure_s = np.asarray(self.exposure_s, dtype=float)
        if not (len(self.time_s) == len(self.counts) == len(self.exposure_s)):
            raise ValueError("time_s, counts and exposure_s must have the same length")
        if self.t0 is not None and not isinstance(self.t0, Time):
            self.t0 = Time(self.t0, scale="utc")

    def __len__(self) -> int:
        return len(self.time_s)

    @property
    def rate(self) -> np.ndarray:
        """Count rate, counts/s."""
        return self.counts / self.exposure_s

    @property
    def rate_error(self) -> np.ndarray:
        """Poisson error of the rate, counts/s (without the excess variance)."""
        return np.sqrt(np.clip(self.counts, 0.0, None)) / self.exposure_s

    @property
    def simulated(self) -> bool:
        """Whether the data come from the local MMODA's simulation."""
        return bool(self.meta.get("simulated"))

    @property
    def t0_isot(self) -> str:
        """``t0`` as UTC ISOT (ms)."""
        return self.t0.utc.isot

    @property
    def span_s(self) -> tuple[float, float]:
        """(first bin's start, last bin's end), s from ``t0``."""
        return float(self.time_s[0] - self.bin_s / 2), float(self.time_s[-1] + self.bin_s / 2)


def _utc_day_seconds(moment: Time) -> float:
    """Seconds from MJD 51544 counted in UTC days (the time axis of the one real product seen)."""
    return float((moment.utc.mjd - _MJDREF) * _DAY_S)


def _tt_seconds(moment: Time) -> float:
    return float((moment.tt.mjd - _MJDREF) * _DAY_S)


def light_curve_from_unit(
    data, header: Mapping, *, t0: Time | str, t1: Time | str, meta: Mapping | None = None
) -> SpiAcsLightCurve:
    """Turn the RATE data unit of ``spi_acs_lc`` into a :class:`SpiAcsLightCurve` around ``t0``.

    The time axis: ``TIMEZERO + TIME`` are seconds from MJDREF (51544); a 50 ms sample's time is taken as
    the start of its interval (:data:`SAMPLE_TIME_TO_CENTRE_S`), and a rebinned TIME is the mean of its
    samples' times, so each bin's centre is TIME + 25 ms. The one real product seen counts
    them in UTC days although TIMESYS says TT; which of the two the answer uses is decided by comparing
    TSTART with the requested start ``t1`` (they differ by 64–69 s), and recorded in ``meta``.

    Parameters
    ----------
    data : structured array or astropy table
        Columns TIME (s), RATE and ERROR (counts/s).
    header : mapping
        The unit's header (TIMEZERO, TSTART, TIMEDEL...).
    t0 : astropy.time.Time or str
        Reference time (UTC).
    t1 : astropy.time.Time or str
        The requested start (UTC).
    meta : mapping, optional
        More facts to keep.

    Returns
    -------
    SpiAcsLightCurve
    """
    t0 = Time(t0, scale="utc") if not isinstance(t0, Time) else t0
    t1 = Time(t1, scale="utc") if not isinstance(t1, Time) else t1
    times = np.asarray(data["TIME"], dtype=float)
    rate = np.asarray(data["RATE"], dtype=float)
    error = np.asarray(data["ERROR"], dtype=float)
    bin_s = float(header.get("TIMEDEL") or NATIVE_BIN_S)
    timezero = float(header.get("TIMEZERO", 0.0))
    tstart = float(header.get("TSTART", timezero + (times[0] if len(times) else 0.0)))
    # which seconds: UTC day count (the real product) or TT
    offsets = {"utc_days": tstart - _utc_day_seconds(t1), "tt": tstart - _tt_seconds(t1)}
    convention = min(offsets, key=lambda key: abs(offsets[key]))
    if abs(offsets[convention]) > max(5.0, 2 * bin_s):
        log.warning(
            "SPI-ACS light curve starts %.1f s from the requested T1 (%s): time axis taken as UTC days",
            offsets["utc_days"],
            t1.isot,
        )
        convention = "utc_days"
    reference = _utc_day_seconds(t0) if convention == "utc_days" else _tt_seconds(t0)
    # a 50 ms sample's time is the start of its interval; a rebinned TIME is the mean of its samples' times
    relative = timezero + times - reference + SAMPLE_TIME_TO_CENTRE_S
    with np.errstate(divide="ignore", invalid="ignore"):
        exposure = np.where((error > 0) & (rate > 0), rate / error**2, bin_s)
    # the plugin's bins hold whole 50 ms samples: round off floating-point noise
    exposure = np.clip(np.round(exposure / NATIVE_BIN_S) * NATIVE_BIN_S, NATIVE_BIN_S, None)
    exposure = np.where(exposure > bin_s * 1.001, bin_s, exposure)
    counts = rate * exposure
    order = np.argsort(relative, kind="stable")
    header_facts = {key: header[key] for key in header if key not in ("XTENSION", "BITPIX", "PCOUNT", "GCOUNT")}
    simulated = bool(header.get("SIMULATD")) or "SIMULATED" in str(header.get("ORIGIN", "")).upper()
    info = {"header": header_facts, "time_convention": convention, "simulated": simulated, **dict(meta or {})}
    return SpiAcsLightCurve(relative[order], counts[order], exposure[order], bin_s, t0, info)


def _isot_ms(moment: Time) -> str:
    return moment.utc.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


def _transient(exc: BaseException) -> bool:
    """Whether a failed call is a fault in transit (worth retrying), not the backend's answer."""
    import requests
    from oda_api.api import DispatcherException, DispatcherNotAvailable

    return isinstance(exc, (requests.RequestException, ConnectionError, DispatcherException, DispatcherNotAvailable))


def fetch_spiacs_lightcurve(
    session,
    *,
    t0_utc: str,
    before_s: float,
    after_s: float,
    time_bin_s: float = NATIVE_BIN_S,
    data_level: str = "ordinary",
) -> SpiAcsLightCurve:
    """Get the SPI-ACS light curve of ``[t0 − before_s, t0 + after_s]`` from MMODA (``spi_acs_lc``).

    One synchronous request through the session's ``oda_api`` client. Faults in transit (connection
    errors, HTTP 5xx) are retried within the session's ``retry.request_budget_s``; the backend's own
    answers are not.

    Parameters
    ----------
    session : integral_workflows.session.Session
        The MMODA session.
    t0_utc : str
        Reference time, UTC ISOT.
    before_s, after_s : float
        Window before and after ``t0``, s (the data server serves at most ±400,000 s).
    time_bin_s : float
        Bin, s. The plugin truncates it to a multiple of the native 50 ms (0.3 → 0.25; below 0.1, 50 ms).
    data_level : str
        ``ordinary`` (archived data) or ``realtime`` (needs the ``integral-realtime`` role).

    Returns
    -------
    SpiAcsLightCurve

    Raises
    ------
    SpiAcsNoData
        No usable data in the window (the backend's message is kept).
    SpiAcsRefused
        The data server refused the request (span limit, revolution boundary).
    SpiAcsError
        Any other failure of the product.
    integral_workflows.session.BackendUnavailable
        If MMODA does not answer.
    """
    from oda_api.api import RemoteException

    from .jobs import BackendUnavailable

    if not (before_s > 0 and after_s > 0):
        raise ValueError(f"before_s = {before_s}, after_s = {after_s}: both must be positive")
    if data_level not in ("ordinary", "realtime"):
        raise ValueError(f"data_level = {data_level!r}: 'ordinary' or 'realtime'")
    if time_bin_s < 2 * NATIVE_BIN_S:
        time_bin_s = NATIVE_BIN_S
    effective_bin = max(NATIVE_BIN_S, math.floor(time_bin_s / NATIVE_BIN_S + 1e-9) * NATIVE_BIN_S)
    if abs(effective_bin - time_bin_s) > 1e-9:
        log.warning("SPI-ACS bins are whole 50 ms samples: time_bin_s = %g becomes %g", time_bin_s, effective_bin)
    t0 = Time(t0_utc, scale="utc")
    t1, t2 = t0 - TimeDelta(before_s, format="sec"), t0 + TimeDelta(after_s, format="sec")
    query = {
        "instrument": "spi_acs",
        "product": "spi_acs_lc",
        "product_type": "Real",
        "T1": _isot_ms(t1),
        "T2": _isot_ms(t2),
        "T_format": "isot",
        "time_bin": float(time_bin_s),
        "time_bin_format": "sec",
        "data_level": data_level,
        "silent": True,
    }
    started, attempt = time.monotonic(), 0
    while True:
        attempt += 1
        disp = session.dispatcher(instrument="spi_acs")
        try:
            data = session.call(disp, disp.get_product, with_token=True, **query)
            while data is None and not disp.is_complete:  # a backend that answers asynchronously
                time.sleep(session.retry.poll_interval_s)
                session.poll(disp)
                if disp.is_done:
                    from oda_api.api import DataCollection

                    data = DataCollection.from_response_json(disp.response_json, "spi_acs", "spi_acs_lc")
            if disp.is_failed:
                disp.process_failure()
            break
        except BackendUnavailable:
            raise
        except RemoteException as exc:
            raise _spiacs_failure(disp, exc, session) from None
        except Exception as exc:
            if not _transient(exc):
                raise SpiAcsError(f"SPI-ACS request failed: {session.scrub(str(exc))[:300]}") from exc
            wait = session.retry.backoff(attempt)
            if time.monotonic() - started + wait > session.retry.request_budget_s:
                raise SpiAcsError(f"SPI-ACS request failed {attempt} times: {type(exc).__name__}") from exc
            log.warning("SPI-ACS request: %s; retrying in %.1f s", type(exc).__name__, wait)
            time.sleep(wait)
    product = data._p_list[0]
    unit = next((u for u in product.data_unit if u.name == "RATE"), product.data_unit[-1])
    meta = {
        "request": {key: value for key, value in query.items() if key != "silent"},
        "data_level": data_level,
        "url": session.url,
        "requested_time_bin_s": float(time_bin_s),
    }
    lc = light_curve_from_unit(unit.data, dict(unit.header), t0=t0, t1=t1, meta=meta)
    lc.meta["simulated"] = lc.simulated or bool(getattr(session, "simulated", False))
    log.info("SPI-ACS light curve around %s: %d bins of %g s", t0.isot, len(lc), lc.bin_s)
    return lc


def _spiacs_failure(disp, exc, session) -> SpiAcsError:
    """The backend's failure as the right exception, with its texts (the real one is in debug_message)."""
    status = (getattr(disp, "response_json", None) or {}).get("exit_status") or {}
    message = session.scrub(str(status.get("message") or getattr(exc, "message", "") or "SPI-ACS failed"))
    debug = session.scrub(str(status.get("debug_message") or getattr(exc, "debug_message", "") or ""))
    text = f"{message} {debug} {status.get('error_message', '')}"
    if "no usable data" in text or "NoData" in text or "ZeroData" in text or "AssertionError" in text:
        return SpiAcsNoData(message, debug_message=debug)
    if "limited to" in text or "resource constrain" in text or "Over revolution" in text:
        return SpiAcsRefused(message, debug_message=debug)
    return SpiAcsError(message, debug_message=debug)


# ---------------------------------------------------------------------------------------------------------------
# background
# ---------------------------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------------------------
# excesses
# ---------------------------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------------------------
# upper limits
# ---------------------------------------------------------------------------------------------------------------
def upper_limits(
    lc: SpiAcsLightCurve,
    background: SpiAcsBackground,
    *,
    timescales_s: Sequence[float] = DEFAULT_TIMESCALES_S,
    sigma: float = 3.0,
    at_s: float = 0.0,
) -> Table:
    """Upper limits on the counts of a burst starting at ``at_s`` (s from t0), one per timescale.

    For each timescale, the window of its bins from the one containing ``at_s``: the upper limit is
    max(excess, 0) + n σ (n = ``sigma``, σ with the excess variance and the background model's error).
    It holds the true counts of a burst lying inside the window with probability ≥ Φ(n) (exactly Φ(n) for
    true counts ≥ nσ; more for fainter ones, the negative excesses being raised to 0). ``sensitivity_counts``
    (n σ) is what the SPI-ACS GCN circulars quote for a burst at an unknown time in the window: the
    counts an excess needs to reach n σ.

    Parameters
    ----------
    lc : SpiAcsLightCurve
    background : SpiAcsBackground
    timescales_s : sequence of float
        Window lengths, s.
    sigma : float
        n of the n-σ limits.
    at_s : float
        Start of the burst, s from t0.

    Returns
    -------
    astropy.table.Table
        ``timescale_s``, ``start_s``, ``stop_s``, ``counts``, ``background``, ``excess``, ``sigma_counts``,
        ``significance``, ``excess_variance``, ``ul_counts``, ``sensitivity_counts``; meta ``sigma``, ``at_s``.
    """
    rows = []
    for m in _timescale_bins(lc, timescales_s):
        found = excess_in_window(lc, background, start_s=at_s, timescale_s=m * lc.bin_s)
        ul = max(found["excess"], 0.0) + sigma * found["sigma_counts"]
        rows.append(
            (
                found["timescale_s"],
                *(found[name] for name in WINDOW_COLUMNS),
                found["excess_variance"],
                ul,
                sigma * found["sigma_counts"],
            )
        )
    names = ("timescale_s", *WINDOW_COLUMNS, "excess_variance", "ul_counts", "sensitivity_counts")
    return Table(rows=rows, names=names, meta={"sigma": float(sigma), "at_s": float(at_s)})


# ---------------------------------------------------------------------------------------------------------------
# response: counts → fluence (the approximation is written down in docs/science_notes.md, "SPI-ACS")
# ---------------------------------------------------------------------------------------------------------------
#: Typical burst spectra (photon spectra N(E) ∝ ...): the two of the INTEGRAL LVC follow-ups (Savchenko et al. 2017).
SPECTRA = {
    "short-hard": {"model": "cutoffpl", "alpha": -0.5, "epeak_keV": 600.0},
    "long-soft": {"model": "band", "alpha": -1.0, "beta": -2.5, "epeak_keV": 300.0},
}
#: Low threshold of the shield's counting, keV, and the width of its turn-on (von Kienlin et al. 2003: ~80 keV).
_THRESHOLD_KEV, _TURN_ON_KEV = 75.0, 50.0
#: Highest photon energy counted in the conversion, keV.
_E_MAX_KEV = 10_000.0
#: Calibration (Viganò & Mereghetti 2009): ≈ 1e-10 erg/cm² (75–1000 keV) per count, directions ⟂ to the axis.
_CALIBRATION_ERG_PER_COUNT = 1.0e-10
_CALIBRATION_BAND_KEV = (75.0, 1000.0)
_CALIBRATION_SPECTRUM = "long-soft"
_KEV_TO_ERG = 1.602176634e-9


def _photon_spectrum(energy_keV, spectrum: str) -> np.ndarray:
    """Unnormalised photon spectrum N(E) of a named typical spectrum."""
    spec = SPECTRA[spectrum]
    e = np.asarray(energy_keV, dtype=float)
    alpha, epeak = spec["alpha"], spec["epeak_keV"]
    e0 = epeak / (2.0 + alpha)
    if spec["model"] == "cutoffpl":
        return (e / 100.0) ** alpha * np.exp(-e / e0)
    beta = spec["beta"]
    e_break = (alpha - beta) * e0
    low = (e / 100.0) ** alpha * np.exp(-e / e0)
    high = (e_break / 100.0) ** (alpha - beta) * np.exp(beta - alpha) * (e / 100.0) ** beta
    return np.where(e < e_break, low, high)


def angular_response(theta_deg) -> np.ndarray:
    """Relative response of the shield to a burst at ``theta_deg`` from the pointing (X) axis (1 at 90°).

    The approximation of ``docs/science_notes.md``: 0.3 + 0.7 sin²θ in front (the camera and the mask's
    aperture around the axis are not shield), 0.6 + 0.4 sin²θ behind (the service module shadows part
    of the bottom shield). ``None`` or NaN: the average over all directions.
    """
    if theta_deg is None:
        return np.asarray(_MEAN_RESPONSE)
    theta = np.radians(np.asarray(theta_deg, dtype=float))
    s2 = np.sin(theta) ** 2
    response = np.where(np.cos(theta) >= 0, 0.3 + 0.7 * s2, 0.6 + 0.4 * s2)
    return np.where(np.isfinite(theta), response, _MEAN_RESPONSE)


# average over the sphere: ∫ R sinθ dθ / 2 with R above (front 0.3 + 0.7·2/3, back 0.6 + 0.4·2/3)
_MEAN_RESPONSE = 0.5 * ((0.3 + 0.7 * 2 / 3) + (0.6 + 0.4 * 2 / 3))


def _energy_shape(energy_keV) -> np.ndarray:
    """Relative effective area with energy: a turn-on above the threshold, a slow decline above 1 MeV."""
    e = np.asarray(energy_keV, dtype=float)
    turn_on = np.where(e > _THRESHOLD_KEV, -np.expm1(-(e - _THRESHOLD_KEV) / _TURN_ON_KEV), 0.0)
    return turn_on * np.minimum(1.0, (e / 1000.0) ** -0.3)


def _integral(function, low: float, high: float) -> float:
    grid = np.geomspace(low, high, 2001)
    return float(integrate.trapezoid(function(grid), grid))


def _counts_per_unit_area(spectrum: str, band_keV: tuple[float, float]) -> float:
    """Shield counts per cm² of (unit-shape) area for a burst of 1 erg/cm² in ``band_keV``."""
    counted = _integral(lambda e: _energy_shape(e) * _photon_spectrum(e, spectrum), 20.0, _E_MAX_KEV)
    energy = _integral(lambda e: e * _photon_spectrum(e, spectrum), *band_keV) * _KEV_TO_ERG
    return counted / energy


#: Peak effective area (cm², directions ⟂ to the axis, the energy shape's maximum) fixed by the calibration.
PEAK_AREA_CM2 = 1.0 / (_CALIBRATION_ERG_PER_COUNT * _counts_per_unit_area(_CALIBRATION_SPECTRUM, _CALIBRATION_BAND_KEV))


def effective_area_cm2(energy_keV, theta_deg=90.0) -> np.ndarray:
    """The approximate effective area of the shield, cm², at ``energy_keV`` for a burst at ``theta_deg``."""
    return PEAK_AREA_CM2 * _energy_shape(energy_keV) * angular_response(theta_deg)


def counts_per_fluence(spectrum: str, *, theta_deg=None, band_keV: tuple[float, float] = FLUENCE_BAND_KEV) -> float:
    """Shield counts of a burst of 1 erg/cm² in ``band_keV`` with a typical spectrum at ``theta_deg``.

    Parameters
    ----------
    spectrum : str
        A key of :data:`SPECTRA` (``short-hard``, ``long-soft``).
    theta_deg : float, optional
        Angle between the burst and the pointing axis; None: averaged over directions.
    band_keV : (float, float)
        Band of the fluence.

    Returns
    -------
    float
        Counts per erg/cm².
    """
    if spectrum not in SPECTRA:
        raise ValueError(f"spectrum {spectrum!r}: one of {', '.join(SPECTRA)}")
    return float(PEAK_AREA_CM2 * _counts_per_unit_area(spectrum, tuple(band_keV)) * angular_response(theta_deg))


def fluence_upper_limits(
    count_ul,
    *,
    theta_deg=None,
    spectra: Sequence[str] = ("short-hard", "long-soft"),
    band_keV: tuple[float, float] = FLUENCE_BAND_KEV,
    column: str = "ul_counts",
) -> Table:
    """Convert count upper limits into fluence upper limits for typical spectra at the event's direction.

    Parameters
    ----------
    count_ul : astropy.table.Table or mapping or float
        The table of :func:`upper_limits` (its ``column`` per ``timescale_s``), a mapping timescale → counts,
        or one number.
    theta_deg : float, optional
        Angle between the event and INTEGRAL's pointing (X) axis, deg; None: averaged over directions.
    spectra : sequence of str
        Keys of :data:`SPECTRA`.
    band_keV : (float, float)
        Band of the fluence, keV (75–2000 keV by default, as SPI-ACS GCN circulars).
    column : str
        Column of the table to convert (``ul_counts`` or ``sensitivity_counts``).

    Returns
    -------
    astropy.table.Table
        ``timescale_s``, ``spectrum``, ``counts``, ``counts_per_erg_cm2``, ``fluence_ul_erg_cm2``; meta
        ``theta_deg``, ``band_keV``, ``response`` (relative, 1 at 90°).
    """
    if isinstance(count_ul, Table):
        pairs = list(zip(count_ul["timescale_s"], count_ul[column], strict=True))
    elif isinstance(count_ul, Mapping):
        pairs = list(count_ul.items())
    else:
        pairs = [(float("nan"), float(count_ul))]
    rows = []
    for spectrum in spectra:
        factor = counts_per_fluence(spectrum, theta_deg=theta_deg, band_keV=band_keV)
        for timescale, counts in pairs:
            rows.append((float(timescale), spectrum, float(counts), factor, float(counts) / factor))
    return Table(
        rows=rows,
        names=("timescale_s", "spectrum", "counts", "counts_per_erg_cm2", "fluence_ul_erg_cm2"),
        dtype=(float, str, float, float, float),
        meta={
            "theta_deg": None if theta_deg is None else float(theta_deg),
            "band_keV": [float(band_keV[0]), float(band_keV[1])],
            "response": float(angular_response(theta_deg)),
        },
    )


# ---------------------------------------------------------------------------------------------------------------
# plots and products
# ---------------------------------------------------------------------------------------------------------------
def plot_light_curve(
    lc: SpiAcsLightCurve,
    background: SpiAcsBackground | None = None,
    search: ExcessSearch | None = None,
    *,
    display_bin_s: float | None = None,
    title: str = "",
):
    """The light curve (rate), the background model, the excluded interval and the best excess.

    The light curve is summed into display bins (the picture only: the analysis keeps its own bins) of
    ``display_bin_s``, widened to a pixel of the time axis when they would be narrower
    (:func:`integral_workflows.plotting.display_bin_s`); the legend gives the bin drawn.

    Parameters
    ----------
    lc : SpiAcsLightCurve
    background : SpiAcsBackground, optional
    search : ExcessSearch, optional
    display_bin_s : float, optional
        Rebin for the picture only (e.g. 1 s for a 50 ms light curve); the data's bin by default.
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    from .plotting import axis_width_px
    from .plotting import display_bin_s as pixel_bin_s

    figure, axis = plt.subplots(figsize=(10, 4.5), layout="constrained")
    wanted = max(display_bin_s or lc.bin_s, lc.bin_s)
    if len(lc):
        span = lc.span_s[1] - lc.span_s[0]
        # a step line, not markers: one pixel per bin is enough
        wanted = max(wanted, pixel_bin_s(span, wanted, axis_width_px(axis), pixels_per_bin=1.0) or wanted)
    m = max(1, int(math.ceil(wanted / lc.bin_s - 1e-9)))
    n = len(lc) // m * m
    t = lc.time_s[:n].reshape(-1, m).mean(axis=1)
    counts = lc.counts[:n].reshape(-1, m).sum(axis=1)
    exposure = lc.exposure_s[:n].reshape(-1, m).sum(axis=1)
    shown = f"{m * lc.bin_s:g} s bins" if m == 1 else f"{m * lc.bin_s:g} s bins for display; data in {lc.bin_s:g} s"
    axis.step(t, counts / exposure, where="mid", color="k", lw=0.7, label=f"SPI-ACS ({shown})")
    if background is not None:
        axis.plot(lc.time_s, background.rate(lc.time_s), color="tab:red", lw=1.5, label="background model")
        axis.axvspan(*background.exclude, color="0.9", zorder=0, label="excluded from the background fit")
    if search is not None:
        best = search.best
        axis.axvspan(
            best.start_s, best.stop_s, color="tab:orange", alpha=0.4, label=f"best excess ({best.timescale_s:g} s)"
        )
    axis.axvline(0.0, color="tab:blue", ls="--", lw=0.8, label="T0")
    axis.set_xlabel(f"time − T0 (s), T0 = {lc.t0_isot} UTC")
    axis.set_ylabel("count rate (counts/s)")
    label = title or "INTEGRAL SPI-ACS"
    if lc.simulated:
        label += "  [SIMULATED DATA]"
    axis.set_title(label)
    axis.legend(loc="upper right", fontsize=8)
    return figure


def plot_significance(search: ExcessSearch, *, ul_table: Table | None = None):
    """Best significance per timescale (pre-trials) and the threshold's pre-trial equivalent.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    from .plotting import readable_log_axis

    table = search.table
    figure, axis = plt.subplots(figsize=(7, 4), layout="constrained")
    axis.plot(table["timescale_s"], table["significance"], "o-", label="best window in the search (pre-trials)")
    if ul_table is not None:
        axis.plot(ul_table["timescale_s"], ul_table["significance"], "s--", label="window starting at T0")
    axis.axhline(0.0, color="0.6", lw=0.8)
    # the pre-trial significance each timescale needs to reach the post-trials threshold
    needed = []
    target = stats.norm.sf(search.threshold_sigma)
    per_timescale = -math.expm1(math.log1p(-target) / len(table))
    span = search.window[1] - search.window[0]
    step = float(table["timescale_s"][0] / table["n_bins"][0])
    for timescale in table["timescale_s"]:
        grid = np.linspace(0.5, 10.0, 400)
        p = np.array([scan_p_value(b, span_s=span, timescale_s=timescale, step_s=step) for b in grid])
        needed.append(grid[np.argmax(p <= per_timescale)] if (p <= per_timescale).any() else np.nan)
    axis.plot(table["timescale_s"], needed, ":", color="tab:red", label=f"{search.threshold_sigma:g}σ after trials")
    axis.set_xscale("log")
    readable_log_axis(axis.xaxis)
    axis.set_xlabel("timescale (s)")
    axis.set_ylabel("significance (σ)")
    axis.set_title(f"SPI-ACS excesses in T0{search.window[0]:+g} to T0{search.window[1]:+g} s")
    axis.legend(fontsize=8)
    return figure


def to_hdulist(lc: SpiAcsLightCurve, background: SpiAcsBackground | None = None, *, provenance: Mapping | None = None):
    """The light curve as FITS: a RATE table (TIME from T0, COUNTS, EXPOSURE, RATE, ERROR, BACKGROUND)."""
    from astropy.io import fits

    from .provenance import fits_ascii

    columns = [
        fits.Column("TIME", "D", unit="s", array=lc.time_s),
        fits.Column("COUNTS", "D", unit="count", array=lc.counts),
        fits.Column("EXPOSURE", "D", unit="s", array=lc.exposure_s),
        fits.Column("RATE", "D", unit="count/s", array=lc.rate),
        fits.Column("ERROR", "D", unit="count/s", array=lc.rate_error),
    ]
    if background is not None:
        columns.append(fits.Column("BACKGROUND", "D", unit="count/s", array=background.rate(lc.time_s)))
    table = fits.BinTableHDU.from_columns(columns, name="RATE")
    header = table.header
    header["TELESCOP"] = "INTEGRAL"
    header["INSTRUME"] = "SPI-ACS"
    header["TIMEUNIT"] = "s"
    header["TIMEDEL"] = (lc.bin_s, "bin width, s")
    header["TIMEPIXR"] = (0.5, "TIME is the bin centre")
    header["T0_UTC"] = (lc.t0_isot, "reference time, UTC; TIME is s from it")
    header["MJDREF"] = (float(lc.t0.utc.mjd), "T0 as MJD (UTC)")
    header["TIMESYS"] = "UTC"
    header["TSTART"], header["TSTOP"] = lc.span_s
    header["DATALEV"] = (str(lc.meta.get("data_level", "")), "SPI-ACS data level")
    header["TIMECONV"] = (str(lc.meta.get("time_convention", "")), "time axis of the MMODA product")
    if background is not None:
        header["BKGORDER"] = (background.order, "order of the polynomial background")
        header["BKGEXCL1"], header["BKGEXCL2"] = background.exclude
        header["EXCVAR"] = (background.excess_variance, "variance / Poisson variance off-source")
    source = lc.meta.get("header", {})
    for key in ("ORIGIN", "CREATOR", "SIMULATD", "EPHS"):
        if key in source:
            header[key] = fits_ascii(source[key]) if isinstance(source[key], str) else source[key]
    primary = fits.PrimaryHDU()
    for key, value in (provenance or {}).items():
        primary.header[key] = value
    if lc.simulated:
        primary.header["SIMULATD"] = (True, "simulated data (local MMODA)")
    return fits.HDUList([primary, table])


def write_products(
    lc: SpiAcsLightCurve,
    background: SpiAcsBackground,
    search: ExcessSearch,
    limits: Table,
    fluences: Table,
    out: Path | str,
    *,
    provenance: Mapping | None = None,
    figures: Mapping[str, Any] | None = None,
    stem: str = "spi_acs",
) -> list[Product]:
    """Write the light curve (FITS), the search and limit tables (ECSV) and figures (PNG); describe them.

    Parameters
    ----------
    lc, background, search, limits, fluences
        What the analysis made.
    out : path
        Output folder.
    provenance : mapping, optional
        FITS provenance cards.
    figures : mapping of str to Figure, optional
        ``{file stem suffix: figure}``, e.g. ``{"lc": figure}`` → ``spi_acs_lc.png``.
    stem : str
        File name stem.

    Returns
    -------
    list of Product
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plots = {}
    for name, figure in (figures or {}).items():
        path = out / f"{stem}_{name}.png"
        figure.savefig(path, dpi=120, bbox_inches="tight")
        plots[name] = path
    fits_path = out / f"{stem}_lc.fits"
    to_hdulist(lc, background, provenance=provenance).writeto(fits_path, overwrite=True)
    start, stop = lc.span_s
    period = (
        (lc.t0 + TimeDelta(start, format="sec")).utc.isot[:19],
        (lc.t0 + TimeDelta(stop, format="sec")).utc.isot[:19],
    )
    details = {
        "t0_utc": lc.t0_isot,
        "time_bin": lc.bin_s,
        "excess_variance": background.excess_variance,
        "best_excess": search.best.as_dict(),
        "detected": search.detected,
        "simulated": lc.simulated,
    }
    products = [
        Product(
            path=fits_path,
            kind="light_curve",
            source="SPI-ACS total rate",
            band=(75.0, 10000.0),
            period=period,
            plot=plots.get("lc"),
            title=f"SPI-ACS light curve around {lc.t0_isot}",
            identity={"instrument": "spi_acs", "t0_utc": lc.t0_isot, "time_bin": lc.bin_s},
            details=details,
        )
    ]
    for table, name in ((search.table, "search"), (limits, "upper_limits"), (fluences, "fluence_upper_limits")):
        path = out / f"{stem}_{name}.ecsv"
        table.write(path, overwrite=True)
        products.append(Product(path=path, kind="table"))
    for name, path in plots.items():
        if name != "lc":
            products.append(Product(path=path, kind="plot"))
    return products
