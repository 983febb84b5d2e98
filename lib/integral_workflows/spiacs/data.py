"""SPI-ACS light curves from MMODA (``spi_acs_lc``): the light curve, its fetch, the errors of the service."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Mapping

import numpy as np
from astropy.time import Time, TimeDelta

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_TIMESCALES_S",
    "SpiAcsError",
    "SpiAcsLightCurve",
    "SpiAcsNoData",
    "SpiAcsRefused",
    "fetch_spiacs_lightcurve",
    "light_curve_from_unit",
]


#: The instrument's native bin (the data server's 50 ms light curve).
NATIVE_BIN_S = 0.05
#: From the time of a 50 ms sample (the start of its interval, as the data server tags it) to its centre.
SAMPLE_TIME_TO_CENTRE_S = NATIVE_BIN_S / 2
#: Timescales of the excess search, s (from the native bin to the longest of short GRBs' and then some).
DEFAULT_TIMESCALES_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
#: Seconds per day.
_DAY_S = 86400.0
#: MJD of the light curves' MJDREF.
_MJDREF = 51544.0


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

    from ..jobs import BackendUnavailable

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
