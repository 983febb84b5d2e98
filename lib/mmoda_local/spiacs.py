"""SPI-ACS, INTEGRAL's all-sky burst monitor, as served by the real ``spi_acs`` plugin (SIMULATED counts).

The model, its evidence and the plugin's quirks: docs/spi_acs.md.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import logging
import math
import threading
import warnings

import numpy as np
from astropy.time import Time
from erfa import ErfaWarning
from oda_api.data_products import NumpyDataUnit

from . import CREATOR, ORIGIN, protocol
from . import archive as _archive
from . import orbit as _orbit
from .encoding import encode_units
from .jobs import JobFailure

log = logging.getLogger(__name__)

INSTRUMENT = "spi_acs"
PRODUCT = "spi_acs_lc"
#: What the real plugin's ``test_has_input_products`` reports (``products.input_prod_list`` of a done answer).
INPUT_PROD_LIST = (1,)
#: Role the real plugin requires for ``data_level=realtime`` (``SpiacsLightCurveQuery.check_query_roles``).
ROLE_REALTIME = "integral-realtime"
REALTIME_ROLE_REASON = "access to real time data requires special role"

#: Native time resolution of SPI-ACS, s.
NATIVE_BIN_S = 0.05
#: Phase of the 50 ms bins on the UTC day-count axis, s (the real 2003-03-15 product starts at T1 + 0.007 s).
BIN_PHASE_S = 0.007
#: integralhk ``getgenlc`` refuses half-widths above this (s), whatever its message says ("+-5000 span").
MAX_HALF_SPAN_S = 400000.0
#: The local server's own limit on rows per light curve (the real one has none; such a request would time out).
MAX_OUTPUT_ROWS = 1_000_000
#: Raw bins generated together from one random stream (the data do not depend on the request window).
CHUNK_BINS = 16384
#: integralhk ``validate_time`` refuses times before this (UTC): "... is before the mission start!".
SERVICE_FIRST_TIME_UTC = "2002-11-01T00:00:00"
#: SPI-ACS switched on (GCN circular 1703, Rau et al.: "switched on on the 26th of October 2002").
ACS_ON_UTC = "2002-10-26T00:00:00"
#: Data server base directories tried in turn by integralhk (``with_both_rbp``: NRT then consolidated).
_DATA_SERVER_REPOSITORIES = ("/isdc/pvphase/nrt/ops", "/isdc/arc/rev_3")
#: What integralhk's broken ``comment_time`` appends for each time of a GeneratorException.
_TIME_COMMENT = "can not comment on time! : exception:name 'validate_time' is not defined"

#: Geocentric distance (km) below which SPI-ACS has no data (radiation belts, perigee passage).
BELT_RADIUS_KM = 46000.0
#: Rate increase near the belts: 1 + BELT_AMPLITUDE × exp(−(r − BELT_RADIUS_KM) / BELT_SCALE_KM).
BELT_AMPLITUDE = 1.0
BELT_SCALE_KM = 8000.0
#: Background rate (counts/s) at solar-cycle factor 1, far from the belts.
R0_COUNTS_S = 87100.0
#: Half-amplitude of the solar-cycle modulation of the background.
SOLAR_AMPLITUDE = 0.15
#: Smoothed sunspot-number extrema (decimal year, SSN v2; SILSO): minima and maxima of cycles 23–25.
SOLAR_EXTREMA = (
    (1996.6, 0.0),
    (2001.9, 180.3),
    (2008.9, 0.0),
    (2014.3, 116.4),
    (2019.9, 0.0),
    (2024.8, 160.9),
    (2030.9, 0.0),
)
#: Slow background variations: (amplitude, period in days, phase in rad).
SLOW_TERMS = ((0.012, 1.31, 0.4), (0.010, 4.07, 2.1), (0.008, 11.7, 4.4))
#: Peak effective area of the shield (cm²) for bursts, at the best direction.
PEAK_AREA_CM2 = 3200.0
#: Response to a burst vs its angle from the spacecraft X axis (deg, fraction of the best direction).
RESPONSE_TABLE = (
    (0.0, 0.10),
    (20.0, 0.30),
    (40.0, 0.70),
    (55.0, 0.93),
    (70.0, 1.00),
    (80.0, 0.90),
    (90.0, 0.62),
    (100.0, 0.45),
    (118.0, 0.47),
    (137.0, 0.38),
    (160.0, 0.30),
    (180.0, 0.25),
)
#: Burst spectra (those of the INTEGRAL GCN circulars): cut-off power law and Band function.
SPECTRA = {
    "short": {"model": "cutoffpl", "alpha": -0.5, "epeak_keV": 600.0},
    "long": {"model": "band", "alpha": -1.0, "beta": -2.5, "epeak_keV": 300.0},
}
#: Fluence band (keV) of burst fluences, and the band of photons the shield counts (keV).
FLUENCE_BAND_KEV = (75.0, 2000.0)
COUNTED_BAND_KEV = (75.0, 10000.0)
#: Burst profile: linear rise over this fraction of the duration, then exponential decay of this e-folding.
RISE_FRACTION, DECAY_FRACTION = 0.1, 0.3

_KEV_ERG = 1.602176634e-9
#: End of the sample of Rau et al. 2005 (their excess-variance factor is used before it).
_EARLY_ERA_END_UTC = "2005-01-15T00:00:00"
_DAY = 86400.0
_IJD_MJD = 51544.0


class SpiacsAnalysisException(Exception):
    """The plugin's analysis failure (same name and arguments, so that its ``repr`` is the real one)."""

    def __init__(self, message="Spiacs analysis exception", debug_message=""):
        super().__init__(message)
        self.message = message
        self.debug_message = debug_message


class SpiacsException(Exception):
    """The plugin's ``run_query`` failure (raised when the data server refuses a request)."""

    def __init__(self, message="Spiacs analysis exception", debug_message=""):
        super().__init__(message)
        self.message = message
        self.debug_message = debug_message


# ---------------------------------------------------------------------------------------------------------
# bursts
# ---------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Burst:
    """A simulated gamma-ray burst seen by SPI-ACS.

    Attributes
    ----------
    name : str
        Label (real burst names in :data:`BURST_CATALOGUE`, ``injected-N`` for ``--inject-grb``).
    t0_utc : str
        Start of the burst, ISO UTC.
    fluence_erg_cm2 : float
        Fluence in 75–2000 keV, erg/cm².
    duration_s : float
        Duration of the profile, s (all counts fall in [T0, T0 + duration]).
    spectrum : str
        ``short`` or ``long`` (:data:`SPECTRA`).
    ra, dec : float
        Direction, deg (ICRS).
    """

    name: str
    t0_utc: str
    fluence_erg_cm2: float
    duration_s: float
    spectrum: str
    ra: float
    dec: float

    @property
    def t0_s(self) -> float:
        """T0 in seconds of the UTC day count (MJD − 51544)."""
        return utc_seconds(self.t0_utc)


#: Simulated bursts at the times and positions of real, famous events. The fluences, durations and
#: profiles are SIMULATED (of the real order of magnitude), not the measured values.
BURST_CATALOGUE = (
    Burst("GRB 030329", "2003-03-29T11:37:14.67", 1.1e-4, 25.0, "long", 161.2083, 21.5215),
    Burst("GRB 041219A", "2004-12-19T01:42:18.0", 1.5e-4, 250.0, "long", 6.1154, 62.8442),
    Burst("SGR 1806-20 giant flare", "2004-12-27T21:30:26.5", 2.0e-3, 0.5, "short", 272.1638, -20.4110),
    Burst("GRB 080319B", "2008-03-19T06:12:49.0", 6.0e-4, 60.0, "long", 217.9195, 36.3022),
    Burst("GRB 090510", "2009-05-10T00:22:59.97", 3.0e-5, 0.3, "short", 333.5520, -26.5830),
    Burst("GRB 130427A", "2013-04-27T07:47:06.42", 2.0e-3, 140.0, "long", 173.1367, 27.6989),
    Burst("GRB 170817A", "2017-08-17T12:41:06.47", 1.4e-7, 0.5, "short", 197.4504, -23.3815),
    Burst("GRB 190114C", "2019-01-14T20:57:03.0", 4.0e-4, 25.0, "long", 54.5100, -26.9400),
    Burst("GRB 200415A", "2020-04-15T08:48:05.56", 1.0e-5, 0.15, "short", 11.8880, -25.2880),
    Burst("GRB 221009A", "2022-10-09T13:16:59.99", 5.0e-3, 300.0, "long", 288.2645, 19.7735),
)


#: Bursts every local MMODA injects, through the ``--inject-grb`` path, whatever options started it: the
#: transient workflow's list of events (``parameters/transients.yaml``) holds an injected burst, and the pipeline
#: starts the local server without options. SIMULATED like every burst here (docs/spi_acs.md).
DEFAULT_INJECTIONS = ("2018-03-12T14:45:00.000,4e-6,0.8,short,264.0,-31.0",)


def parse_grb_injection(text: str) -> dict:
    """Read ``T0,FLUENCE,DURATION[,SPECTRUM[,RA,DEC]]`` (the ``--inject-grb`` option).

    Parameters
    ----------
    text : str
        T0 as ISO UTC (``2010-05-01T12:00:00``), FLUENCE in erg/cm² (75–2000 keV), DURATION in s,
        SPECTRUM ``short`` or ``long`` (default: short below 2 s), RA and DEC in deg (default: a
        direction drawn from the server's seed and T0).

    Returns
    -------
    dict
        ``{"t0", "fluence", "duration", "spectrum", "ra", "dec"}`` (JSON-ready, as kept in ``ServerConfig``).

    Raises
    ------
    ValueError
        If the text is malformed.
    """
    fields = [f.strip() for f in str(text).split(",")]
    if len(fields) not in (3, 4, 6):
        raise ValueError(f"expected T0,FLUENCE,DURATION[,SPECTRUM[,RA,DEC]], got {text!r}")
    t0 = fields[0]
    utc_seconds(t0)  # validates the date
    try:
        fluence, duration = float(fields[1]), float(fields[2])
    except ValueError:
        raise ValueError(f"FLUENCE and DURATION must be numbers, got {text!r}") from None
    if not (fluence > 0 and math.isfinite(fluence)) or not (duration > 0 and math.isfinite(duration)):
        raise ValueError(f"FLUENCE and DURATION must be positive, got {text!r}")
    spectrum = fields[3].lower() if len(fields) >= 4 and fields[3] else ("short" if duration < 2.0 else "long")
    if spectrum not in SPECTRA:
        raise ValueError(f"SPECTRUM must be one of {sorted(SPECTRA)}, got {fields[3]!r}")
    ra = dec = None
    if len(fields) == 6:
        ra, dec = float(fields[4]), float(fields[5])
        if not -90.0 <= dec <= 90.0:
            raise ValueError(f"DEC must be within [-90, 90], got {dec}")
    return {"t0": t0, "fluence": fluence, "duration": duration, "spectrum": spectrum, "ra": ra, "dec": dec}


def injected_bursts(injections, *, seed: int) -> tuple[Burst, ...]:
    """Bursts of the server configuration (``ServerConfig.injected_grbs``).

    Parameters
    ----------
    injections : iterable of dict or str
        Items of :func:`parse_grb_injection` (or its input text).
    seed : int
        Server seed: draws the direction of a burst given without RA/DEC (isotropic, fixed by seed and T0).

    Returns
    -------
    tuple of Burst
        Named ``injected-0``, ``injected-1``...
    """
    bursts = []
    for number, item in enumerate(injections or ()):
        item = parse_grb_injection(item) if isinstance(item, str) else dict(item)
        ra, dec = item.get("ra"), item.get("dec")
        if ra is None or dec is None:
            # isotropic, fixed by the seed and T0 so that restarting the server keeps the burst where it was
            rng = np.random.default_rng([seed, 0x6B, int(round(utc_seconds(item["t0"]) * 1000)) % 2**32])
            ra, dec = float(rng.uniform(0.0, 360.0)), float(np.degrees(np.arcsin(rng.uniform(-1.0, 1.0))))
        spectrum = item.get("spectrum") or ("short" if float(item["duration"]) < 2.0 else "long")
        bursts.append(
            Burst(
                f"injected-{number}",
                str(item["t0"]),
                float(item["fluence"]),
                float(item["duration"]),
                spectrum,
                float(ra) % 360.0,
                float(dec),
            )
        )
    return tuple(bursts)


@functools.cache
def photons_per_erg(spectrum: str) -> float:
    """Photons the shield counts per erg of burst fluence.

    Parameters
    ----------
    spectrum : str
        ``short`` or ``long`` (:data:`SPECTRA`).

    Returns
    -------
    float
        Photons in 75 keV–10 MeV per erg/cm² of fluence in 75–2000 keV, per cm².
    """
    p = SPECTRA[spectrum]
    energy = np.geomspace(COUNTED_BAND_KEV[0], COUNTED_BAND_KEV[1], 20001)
    alpha, epeak = p["alpha"], p["epeak_keV"]
    e0 = epeak / (2.0 + alpha)
    shape = energy**alpha * np.exp(-energy / e0)
    if p["model"] == "band":
        beta = p["beta"]
        e_break = (alpha - beta) * e0
        high = e_break ** (alpha - beta) * np.exp(beta - alpha) * energy**beta
        shape = np.where(energy < e_break, shape, high)
    in_band = energy <= FLUENCE_BAND_KEV[1]
    photons = np.trapezoid(shape, energy)
    erg = np.trapezoid((energy * shape)[in_band], energy[in_band]) * _KEV_ERG
    return float(photons / erg)


def angular_response(theta_deg) -> np.ndarray:
    """Response of the shield to a burst, relative to the best direction.

    Parameters
    ----------
    theta_deg : float or array_like
        Angle between the burst and the spacecraft X axis (pointing), deg.

    Returns
    -------
    numpy.ndarray
        Linear interpolation of :data:`RESPONSE_TABLE` (1 at 70°, 0.1 on axis).
    """
    angles, values = np.array(RESPONSE_TABLE).T
    return np.interp(np.asarray(theta_deg, dtype=float), angles, values)


def _profile_cdf(x, duration: float) -> np.ndarray:
    """Fraction of a burst's counts before ``x`` s after T0 (linear rise, exponential decay, all in [0, duration])."""
    x = np.clip(np.asarray(x, dtype=float), 0.0, duration)
    rise, tau = RISE_FRACTION * duration, DECAY_FRACTION * duration
    total = 0.5 * rise + tau * (1.0 - math.exp(-(duration - rise) / tau))
    early = 0.5 * np.minimum(x, rise) ** 2 / rise
    late = tau * (1.0 - np.exp(-np.maximum(x - rise, 0.0) / tau))
    return (early + late) / total


# ---------------------------------------------------------------------------------------------------------
# time
# ---------------------------------------------------------------------------------------------------------
def utc_seconds(value) -> float:
    """Seconds of the UTC day count, the time axis of the data server ("IJD" of its answers, in UTC).

    Parameters
    ----------
    value : str or astropy.time.Time
        ISO UTC date (``2010-03-01T12:00:00``) or a Time.

    Returns
    -------
    float
        (UTC MJD − 51544) × 86400.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ErfaWarning)
        t = value if isinstance(value, Time) else Time(str(value).strip(), format="isot", scale="utc")
        return float((t.utc.mjd - _IJD_MJD) * _DAY)


def _utc_isot(seconds: float, *, precision: int = 3) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ErfaWarning)
        t = Time(seconds / _DAY + _IJD_MJD, format="mjd", scale="utc")
        t.precision = precision
        return t.isot


@functools.lru_cache(maxsize=4096)
def _tt_minus_utc_s(day: int) -> float:
    """TT − UTC (s) on a UTC day (32.184 s + leap seconds)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ErfaWarning)
        t = Time(day + 0.5 + _IJD_MJD, format="mjd", scale="utc")
        return round(float((t.tt.mjd - t.mjd) * _DAY), 3)


def _ijd_tt(seconds) -> np.ndarray:
    """IJD (TT) of UTC day-count seconds (the orbit and the archive count in TT)."""
    seconds = np.asarray(seconds, dtype=float)
    offsets = np.vectorize(lambda s: _tt_minus_utc_s(int(s // _DAY)), otypes=[float])(seconds)
    return (seconds + offsets) / _DAY


def _decimal_year(seconds) -> np.ndarray:
    return 2000.0 + np.asarray(seconds, dtype=float) / _DAY / 365.25


def solar_cycle_factor(seconds) -> np.ndarray:
    """Solar modulation of the background (more cosmic rays at solar minimum).

    Parameters
    ----------
    seconds : float or array_like
        UTC day-count seconds.

    Returns
    -------
    numpy.ndarray
        1 + A (1 − 2 h), h the smoothed sunspot number of :data:`SOLAR_EXTREMA` (cosine-interpolated
        between extrema) over 180.3, A = :data:`SOLAR_AMPLITUDE`.
    """
    year = _decimal_year(seconds)
    years, ssn = np.array(SOLAR_EXTREMA).T
    i = np.clip(np.searchsorted(years, year, side="right") - 1, 0, len(years) - 2)
    phase = np.clip((year - years[i]) / (years[i + 1] - years[i]), 0.0, 1.0)
    level = ssn[i] + (ssn[i + 1] - ssn[i]) * 0.5 * (1.0 - np.cos(np.pi * phase))
    return 1.0 + SOLAR_AMPLITUDE * (1.0 - 2.0 * level / ssn.max())


def _slow_factor(seconds) -> np.ndarray:
    days = np.asarray(seconds, dtype=float) / _DAY
    out = np.ones_like(days)
    for amplitude, period, phase in SLOW_TERMS:
        out += amplitude * np.sin(2.0 * np.pi * days / period + phase)
    return out


# ---------------------------------------------------------------------------------------------------------
# the instrument
# ---------------------------------------------------------------------------------------------------------
class SpiAcsModel:
    """Simulated SPI-ACS data of the whole mission.

    Parameters
    ----------
    archive : ScwArchive
        Gives the revolutions (perigee times) and the attitude.
    seed : int
        Seed of the counting noise.
    bursts : sequence of Burst
        Bursts besides :data:`BURST_CATALOGUE`.
    """

    def __init__(self, archive, *, seed: int = 0, bursts=()):
        self.archive = archive
        self.revolutions = archive.revolutions
        self.seed = int(seed)
        self.bursts = tuple(BURST_CATALOGUE) + tuple(bursts)
        self._burst_times = np.array([b.t0_s for b in self.bursts])
        self._burst_ends = self._burst_times + np.array([b.duration_s for b in self.bursts])
        self._burst_counts = {}
        self._intervals = {}
        self._radius_days = {}
        self._lock = threading.Lock()
        self._acs_on_s = utc_seconds(ACS_ON_UTC)

    # -- data coverage ------------------------------------------------------------------------------------
    def _radius_km(self, ijd) -> np.ndarray:
        return np.linalg.norm(_orbit.integral_position_gcrs(ijd, revolutions=self.revolutions), axis=-1)

    def _crossing(self, t_in: float, t_out: float) -> float:
        """Time (IJD) where r crosses BELT_RADIUS_KM between t_in (inside the belts) and t_out (outside)."""
        for _ in range(2):  # two refinements of a 240-step grid: better than 0.1 s
            grid = np.linspace(t_in, t_out, 241)
            outside = self._radius_km(grid) > BELT_RADIUS_KM
            i = int(np.argmax(outside))
            t_in, t_out = grid[max(i - 1, 0)], grid[i]
        r_in, r_out = self._radius_km(np.array([t_in, t_out]))
        return float(t_in + (t_out - t_in) * (BELT_RADIUS_KM - r_in) / (r_out - r_in))

    def revolution_data_interval(self, rev: int) -> tuple[float, float] | None:
        """Data-taking interval of a revolution, UTC day-count seconds, or None (no data in that revolution)."""
        with self._lock:
            if rev in self._intervals:
                return self._intervals[rev]
        interval = None
        if 0 <= rev <= _archive.LAST_REV:
            p0, p1 = float(self.revolutions.start(rev)), float(self.revolutions.start(rev + 1))
            grid = np.linspace(p0, p0 + 0.5 * (p1 - p0), 241)
            above = self._radius_km(grid) > BELT_RADIUS_KM
            back = np.linspace(p1, p1 - 0.5 * (p1 - p0), 241)
            above_back = self._radius_km(back) > BELT_RADIUS_KM
            if above.any() and above_back.any():
                i, j = int(np.argmax(above)), int(np.argmax(above_back))
                on = self._crossing(grid[i - 1], grid[i]) if i > 0 else grid[0]
                off = self._crossing(back[j - 1], back[j]) if j > 0 else back[0]
                on_s = on * _DAY - _tt_minus_utc_s(int(on * _DAY // _DAY))
                off_s = off * _DAY - _tt_minus_utc_s(int(off * _DAY // _DAY))
                on_s = max(on_s, self._acs_on_s)
                if off_s > on_s:
                    interval = (on_s, off_s)
        with self._lock:
            self._intervals[rev] = interval
        return interval

    def data_intervals(self, start_s: float, stop_s: float) -> list[tuple[float, float]]:
        """Data-taking intervals overlapping [start_s, stop_s] (UTC day-count seconds), in time order."""
        first = int(self.revolutions.revolution_of(float(_ijd_tt(start_s))))
        last = int(self.revolutions.revolution_of(float(_ijd_tt(stop_s))))
        out = []
        for rev in range(max(first - 1, 0), min(last + 1, _archive.LAST_REV) + 1):
            interval = self.revolution_data_interval(rev)
            if interval and interval[1] > start_s and interval[0] < stop_s:
                out.append(interval)
        return out

    def in_mission(self, seconds: float) -> bool:
        """Whether a time is within the SPI-ACS mission (switch-on to the end of the last revolution's data)."""
        last = self.revolution_data_interval(_archive.LAST_REV)
        return self._acs_on_s <= seconds < (last[1] if last else self._acs_on_s)

    def has_data(self, seconds) -> np.ndarray:
        """Whether SPI-ACS has data at UTC day-count seconds."""
        seconds = np.atleast_1d(np.asarray(seconds, dtype=float))
        mask = np.zeros(seconds.shape, dtype=bool)
        for on, off in self.data_intervals(float(seconds.min()), float(seconds.max())):
            mask |= (seconds >= on) & (seconds < off)
        return mask

    # -- background -----------------------------------------------------------------------------------------
    def _radius_day(self, day: int) -> np.ndarray:
        """Geocentric distance (km) every minute of a UTC day (cached: the orbit is slow to evaluate)."""
        with self._lock:
            radius = self._radius_days.get(day)
        if radius is None:
            radius = self._radius_km(_ijd_tt(day * _DAY + np.arange(1441) * 60.0))
            with self._lock:
                if len(self._radius_days) > 256:
                    self._radius_days.clear()
                self._radius_days[day] = radius
        return radius

    def radius_km(self, seconds) -> np.ndarray:
        """INTEGRAL's geocentric distance (km) at UTC day-count seconds (interpolated from a 1-minute grid)."""
        seconds = np.atleast_1d(np.asarray(seconds, dtype=float))
        days = np.floor(seconds / _DAY).astype(np.int64)
        out = np.empty_like(seconds)
        for day in np.unique(days):
            selected = days == day
            minutes = np.arange(1441) * 60.0
            out[selected] = np.interp(seconds[selected] - day * _DAY, minutes, self._radius_day(int(day)))
        return out

    def belt_factor(self, seconds) -> np.ndarray:
        """Rate increase near the radiation belts (1 far from them, 2 at the edge of data taking)."""
        r = self.radius_km(seconds)
        return 1.0 + BELT_AMPLITUDE * np.exp(-np.maximum(r - BELT_RADIUS_KM, 0.0) / BELT_SCALE_KM)

    def background_rate(self, seconds) -> np.ndarray:
        """Expected background count rate (no bursts, no noise).

        Parameters
        ----------
        seconds : float or array_like
            UTC day-count seconds.

        Returns
        -------
        numpy.ndarray
            Counts/s: R0 × solar-cycle factor × belt factor × slow variations.
        """
        seconds = np.atleast_1d(np.asarray(seconds, dtype=float))
        return R0_COUNTS_S * solar_cycle_factor(seconds) * self.belt_factor(seconds) * _slow_factor(seconds)

    def excess_variance(self, seconds) -> float:
        """Excess-variance factor F (variance / mean of the 50 ms counts) of the revolution at ``seconds``."""
        rev = int(self.revolutions.revolution_of(float(_ijd_tt(seconds))))
        rng = np.random.default_rng([0x5AC5, 7, max(rev, 0)])
        if float(seconds) < _EARLY_ERA_END_S:
            # Rau et al. 2005 (Oct 2002 – Jan 2005): "1 sigma corresponds to 1.57 sqrt(B)"
            return float(min(2.0 + rng.exponential(0.46), 4.0))
        # GCN circulars 2019–2023: "excess variance" 1.1 (very stable) … 1.9 (somewhat unstable)
        return float(min(1.1 + rng.exponential(0.15), 3.0))

    # -- bursts ---------------------------------------------------------------------------------------------
    def burst_geometry(self, burst: Burst) -> dict:
        """Angle of a burst from the spacecraft X axis, Earth occultation and response at T0."""
        ijd = float(_ijd_tt(burst.t0_s))
        table = self.archive.table
        row = self.archive.nearest_pointing(ijd)
        x_axis, _, _ = _archive.spacecraft_axes(
            float(table["RA_SCX"][row]), float(table["DEC_SCX"][row]), float(table["POSANGLE"][row])
        )
        direction = _archive.radec_to_unit(burst.ra, burst.dec)
        theta = float(np.degrees(np.arccos(np.clip(direction @ x_axis, -1.0, 1.0))))
        position = _orbit.integral_position_gcrs(ijd, revolutions=self.revolutions)[0]
        distance = float(np.linalg.norm(position))
        earth_radius_deg = float(np.degrees(np.arcsin(min(1.0, _orbit.R_EARTH / distance))))
        earth_angle = float(np.degrees(np.arccos(np.clip(direction @ (-position / distance), -1.0, 1.0))))
        occulted = earth_angle < earth_radius_deg
        return {
            "theta_deg": theta,
            "response": 0.0 if occulted else float(angular_response(theta)),
            "occulted": occulted,
            "earth_angle_deg": earth_angle,
            "earth_radius_deg": earth_radius_deg,
            "pointing_row": int(row),
        }

    def expected_burst_counts(self, burst: Burst) -> float:
        """Expected SPI-ACS counts of a burst (all in [T0, T0 + duration])."""
        with self._lock:
            if burst in self._burst_counts:
                return self._burst_counts[burst]
        geometry = self.burst_geometry(burst)
        counts = burst.fluence_erg_cm2 * photons_per_erg(burst.spectrum) * PEAK_AREA_CM2 * geometry["response"]
        with self._lock:
            self._burst_counts[burst] = counts
        return counts

    def burst_sensitivity(
        self, seconds: float, *, duration_s: float, spectrum: str, theta_deg: float, n_sigma: float = 5.0
    ) -> float:
        """Fluence (erg/cm², 75–2000 keV) of a burst giving ``n_sigma`` over the background in its duration.

        Counts S solve S = n √(F B + S), with B the background counts in the duration and F the
        revolution's excess-variance factor.
        """
        background = float(self.background_rate(seconds)[0]) * duration_s
        noise = self.excess_variance(seconds) * background
        signal = 0.5 * (n_sigma**2 + math.sqrt(n_sigma**4 + 4.0 * n_sigma**2 * noise))
        per_fluence = photons_per_erg(spectrum) * PEAK_AREA_CM2 * float(angular_response(theta_deg))
        return signal / per_fluence

    # -- counts ---------------------------------------------------------------------------------------------
    def _chunk(self, chunk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Bin indices, counts and expected background counts of one chunk of 50 ms bins (all bins)."""
        k = chunk * CHUNK_BINS + np.arange(CHUNK_BINS, dtype=np.int64)
        starts = k * NATIVE_BIN_S + BIN_PHASE_S
        grid = starts[0] + np.linspace(0.0, CHUNK_BINS * NATIVE_BIN_S, 33)
        rate = np.interp(starts + 0.5 * NATIVE_BIN_S, grid, self.background_rate(grid))
        background = rate * NATIVE_BIN_S
        expected = background.copy()
        stop = starts[-1] + NATIVE_BIN_S
        for index in np.flatnonzero((self._burst_times < stop) & (self._burst_ends > starts[0])):
            burst = self.bursts[index]
            fraction = np.diff(_profile_cdf(np.append(starts, stop) - burst.t0_s, burst.duration_s))
            expected += self.expected_burst_counts(burst) * fraction
        rng = np.random.default_rng([self.seed, 0x5AC5, chunk])
        counts = rng.poisson(expected).astype(np.float64)
        factor = self.excess_variance(float(starts[CHUNK_BINS // 2]))
        counts += np.rint(rng.standard_normal(CHUNK_BINS) * np.sqrt((factor - 1.0) * background))
        return k, np.maximum(counts, 0.0), background

    def iter_counts(self, k_first: int, k_last: int):
        """Yield (bin indices, counts, expected background) of the bins with data in [k_first, k_last], by chunk."""
        for chunk in range(k_first // CHUNK_BINS, k_last // CHUNK_BINS + 1):
            k, counts, background = self._chunk(chunk)
            keep = (k >= k_first) & (k <= k_last)
            keep &= self.has_data(k * NATIVE_BIN_S + BIN_PHASE_S) if keep.any() else keep
            if keep.any():
                yield k[keep], counts[keep], background[keep]

    def counts(self, k_first: int, k_last: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Counts of the 50 ms bins with data among bins k_first … k_last.

        Parameters
        ----------
        k_first, k_last : int
            Bin indices: bin k starts at 0.05 k + 0.007 s of the UTC day count.

        Returns
        -------
        k : numpy.ndarray
            Indices of the bins with data.
        counts : numpy.ndarray
            Their counts (background, bursts, noise).
        background : numpy.ndarray
            Their expected background counts (without bursts).
        """
        parts = list(self.iter_counts(k_first, k_last))
        if not parts:
            empty = np.array([], dtype=float)
            return np.array([], dtype=np.int64), empty, empty
        return tuple(np.concatenate(p) for p in zip(*parts))

    def count_available(self, k_first: int, k_last: int) -> tuple[int, int | None, int | None]:
        """Number of bins with data in [k_first, k_last] and the first and last of them (without drawing counts)."""
        start = k_first * NATIVE_BIN_S + BIN_PHASE_S
        stop = (k_last + 1) * NATIVE_BIN_S + BIN_PHASE_S
        total, first, last = 0, None, None
        for on, off in self.data_intervals(start, stop):
            a = max(k_first, math.ceil((on - BIN_PHASE_S) / NATIVE_BIN_S - 1e-9))
            b = min(k_last, math.ceil((off - BIN_PHASE_S) / NATIVE_BIN_S - 1e-9) - 1)
            if b >= a:
                total += b - a + 1
                first = a if first is None else first
                last = b
        return total, first, last

    # -- auxiliary texts ------------------------------------------------------------------------------------
    def ephemeris_text(self, seconds: float) -> str:
        """The integralhk ``ephs`` answer: RA, Dec (deg) and distance (km) of INTEGRAL from the geocentre."""
        position = _orbit.integral_position_gcrs(float(_ijd_tt(seconds)), revolutions=self.revolutions)[0]
        ra, dec = _archive.unit_to_radec(position)
        # the last three fields copy those of the one real answer seen (their meaning is not documented)
        return f"{float(ra):.3f} {float(dec):.3f} {float(np.linalg.norm(position)):.1f} 0.016 0.016 30.0"

    def prophecy(self, seconds: float) -> list:
        """The integralhk ``prophet.predict`` answer (promise, summary) for the realtime data level."""
        rev = int(self.revolutions.revolution_of(float(_ijd_tt(seconds))))
        bounds = {}
        for number in (rev - 1, rev, rev + 1):
            interval = self.revolution_data_interval(number)
            if interval is None:  # no data in that revolution: an empty interval at its perigee
                perigee = float(self.revolutions.start(max(number, 0))) * _DAY
                perigee -= _tt_minus_utc_s(int(perigee // _DAY))
                interval = (perigee, perigee)
            bounds[number] = interval

        def iso(s):
            return _utc_isot(s)[:19]

        def hours(s):
            return s / 3600.0

        start, stop = bounds[rev]
        last_data = next_data = None
        # the service's texts (printf "%.2lg": the same digits as Python's ".2g")
        if seconds < start:
            promise = (
                f"break since {hours(seconds - bounds[rev - 1][1]):.2g} hr next data in {hours(start - seconds):.2g} hr"
            )
            last_data, next_data, status = iso(bounds[rev - 1][1]), iso(start), "OFFLINE"
        elif seconds < stop:
            promise = (
                f"next break in data in {hours(stop - seconds):.2g} hr: {iso(stop)}, "
                f"for {hours(bounds[rev + 1][0] - stop):.2g} hr"
            )
            status = "ONLINE"
        else:
            promise = (
                f"break since {hours(seconds - stop):.2g} hr next data in {hours(bounds[rev + 1][0] - seconds):.2g} hr"
            )
            last_data, next_data, status = iso(stop), iso(bounds[rev + 1][0]), "OFFLINE"
        summary = {
            f"{key}rev": {"num": number, "start": iso(bounds[number][0]), "stop": iso(bounds[number][1])}
            for key, number in (("prev", rev - 1), ("this", rev), ("next", rev + 1))
        }
        summary.update(last_data_utc=last_data, next_data_utc=next_data, expected_data_status=status)
        return [promise, summary]


_EARLY_ERA_END_S = utc_seconds(_EARLY_ERA_END_UTC)
_MODELS: dict = {}
_MODELS_LOCK = threading.Lock()


def default_injected_bursts(*, seed: int) -> tuple[Burst, ...]:
    """The bursts of :data:`DEFAULT_INJECTIONS`, named ``default-injected-0``...

    Parameters
    ----------
    seed : int
        Server seed (a default injection gives its direction, so the seed does not move it).

    Returns
    -------
    tuple of Burst
    """
    bursts = injected_bursts(DEFAULT_INJECTIONS, seed=seed)
    return tuple(dataclasses.replace(burst, name=f"default-{burst.name}") for burst in bursts)


def model_for(archive, *, seed: int, injections=()) -> SpiAcsModel:
    """The model of a server (cached: one per archive, seed and set of injected bursts).

    Parameters
    ----------
    archive : ScwArchive
    seed : int
        Seed of the counting noise.
    injections : iterable of dict or str
        ``ServerConfig.injected_grbs`` (added after :data:`DEFAULT_INJECTIONS`).

    Returns
    -------
    SpiAcsModel
    """
    bursts = default_injected_bursts(seed=seed) + injected_bursts(injections, seed=seed)
    key = (id(archive), int(seed), bursts)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None or model.archive is not archive:
            model = SpiAcsModel(archive, seed=seed, bursts=bursts)
            _MODELS[key] = model
            for burst in bursts:
                log.info(
                    "SPI-ACS: %s at %s, %.3g erg/cm2 over %.3g s (%s): %.0f expected counts (%s)",
                    burst.name,
                    burst.t0_utc,
                    burst.fluence_erg_cm2,
                    burst.duration_s,
                    burst.spectrum,
                    model.expected_burst_counts(burst),
                    model.burst_geometry(burst),
                )
        return model


# ---------------------------------------------------------------------------------------------------------
# the data server (integralhk genlc / rtlc), as far as the plugin sees it
# ---------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class _ServerAnswer:
    status: int
    text: str = ""
    k_first: int | None = None
    k_last: int | None = None
    rows: int = 0


def _generator_error(message: str, *, with_times: bool) -> str:
    """Body of an integralhk HTTP 400: the GeneratorException of each data repository tried, merged."""
    if with_times:
        message += f"\n{_TIME_COMMENT}\n{_TIME_COMMENT}"
    return "\n".join(f"rbp as {rbp}: GeneratorException('{message}')" for rbp in _DATA_SERVER_REPOSITORIES)


def _bad_time(text: str) -> str:
    return "\n".join(f"rbp as {rbp}: Bad time: {text}" for rbp in _DATA_SERVER_REPOSITORIES)


def _data_server(model: SpiAcsModel, t0_isot: str, dt_s: float, *, realtime: bool) -> _ServerAnswer:
    """What integralhk answers for ``genlc/ACS/{t0}/{dt}`` (or ``rtlc`` for realtime), without building the text."""
    t0_s = utc_seconds(t0_isot)
    if not realtime:
        if t0_s < utc_seconds(SERVICE_FIRST_TIME_UTC):
            return _ServerAnswer(400, _bad_time(f"{t0_isot} is before the mission start!"))
        if t0_s > utc_seconds(datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")):
            return _ServerAnswer(400, _bad_time(f"{t0_isot} is in the future!"))
        if dt_s > MAX_HALF_SPAN_S:
            return _ServerAnswer(
                400,
                _generator_error(
                    "due to limits on the system load the requests to this service are limited to +-5000 span; to "
                    "acquire very large spans of the data, please contact me directly (mmoda_local: the real service "
                    "names its maintainer here)",
                    with_times=False,
                ),
            )
    if dt_s <= 0:
        # dump_lc refuses a window that ends before it starts (the plugin's own test relies on it)
        return _ServerAnswer(
            400, _generator_error("dump lc exceptions:OverRevolution('Over revolution')", with_times=True)
        )
    k_first = math.ceil((t0_s - dt_s - BIN_PHASE_S) / NATIVE_BIN_S - 1e-6)
    k_last = math.ceil((t0_s + dt_s - BIN_PHASE_S) / NATIVE_BIN_S - 1e-6) - 1
    rows, first, last = model.count_available(k_first, k_last)
    if rows == 0 and not realtime:
        utc1, utc2 = _utc_isot(t0_s - dt_s), _utc_isot(t0_s + dt_s)
        return _ServerAnswer(
            400,
            _generator_error(
                f"dump lc exceptions:NoData('No Data (at this time?) requested: {utc1} ... {utc2}')", with_times=True
            ),
        )
    return _ServerAnswer(200, "", first, last, rows)


# ---------------------------------------------------------------------------------------------------------
# the plugin (SpiacsDispatcher.run_query, SpicasLightCurve.build_from_res, reformat_and_rebin)
# ---------------------------------------------------------------------------------------------------------
def _realtime_failure(rows: int, *, in_mission: bool) -> SpiacsAnalysisException:
    """The plugin's failure on a realtime answer with ≤ 100 rows (the exception its parser meets)."""
    error = AssertionError()
    if rows == 0 and not in_mission:
        try:  # no realtime dump covers the time: integralhk sends an empty table without an 'ijd' column
            [0].index("ijd")
        except ValueError as exc:
            error = exc
    elif rows == 0:
        try:  # the dump covers the time but has no row in the window
            np.array([])[:, 0]
        except IndexError as exc:
            error = exc
    return SpiacsAnalysisException(message=f"spiacs light curve failed: {error!r}", debug_message=str(error))


def _effective_time_bin(time_bin_s: float) -> float:
    """``int(delta_t / instr_t_bin) * instr_t_bin`` of ``reformat_and_rebin`` (0.3 s gives 0.25 s, 0.01 s gives 0)."""
    instrument_bin = np.round(np.float64(NATIVE_BIN_S), 3)
    return int(time_bin_s / instrument_bin) * instrument_bin


def _rebinned_columns(model: SpiAcsModel, answer: _ServerAnswer, delta_t: float):
    """TIME, RATE, ERROR columns and (t_start, t_stop, t_ref_mjd) as ``reformat_and_rebin`` computes them."""
    instrument_bin = np.round(np.float64(NATIVE_BIN_S), 3)
    first_ijd = (answer.k_first * NATIVE_BIN_S + BIN_PHASE_S) / _DAY
    last_ijd = (answer.k_last * NATIVE_BIN_S + BIN_PHASE_S) / _DAY
    t_ref_mjd = (first_ijd + last_ijd) / 2 + _IJD_MJD

    # the plugin's (IJD − t_ref) × 86400 for the first bin; the others follow at exact multiples of 50 ms, as
    # in the real product (its 2 s bins of 2003-03-15 hold 40 native bins each), not with rounding noise
    t_start = float((first_ijd - t_ref_mjd + _IJD_MJD) * 24 * 3600)

    def relative_time(k):
        return t_start + (k - answer.k_first) * NATIVE_BIN_S

    t_stop = float(relative_time(answer.k_last)) + instrument_bin
    raw = not delta_t > instrument_bin
    if raw:
        if answer.rows > MAX_OUTPUT_ROWS:
            raise _local_limit(answer.rows)
        k, counts, _ = model.counts(answer.k_first, answer.k_last)
        rate = counts / instrument_bin
        columns = (relative_time(k), rate, np.sqrt(rate * instrument_bin) / instrument_bin)
    else:
        edges = np.arange(t_start, t_stop, delta_t)
        if len(edges) > MAX_OUTPUT_ROWS:
            raise _local_limit(len(edges))
        n = np.zeros(len(edges) + 1)
        total_rate = np.zeros(len(edges) + 1)
        total_time = np.zeros(len(edges) + 1)
        for k, counts, _ in model.iter_counts(answer.k_first, answer.k_last):
            times = relative_time(k)
            ids = np.digitize(times, edges)
            n += np.bincount(ids, minlength=len(n))
            total_rate += np.bincount(ids, weights=counts / instrument_bin, minlength=len(n))
            total_time += np.bincount(ids, weights=times, minlength=len(n))
        used = n > 0
        t_frac = n[used] * instrument_bin
        rate = total_rate[used] / n[used]
        columns = (total_time[used] / n[used], rate, np.sqrt(rate * t_frac) / t_frac)
    data = np.zeros(len(columns[0]), dtype=[("TIME", "<f8"), ("RATE", "<f8"), ("ERROR", "<f8")])
    data["TIME"], data["RATE"], data["ERROR"] = columns
    return data, t_start, t_stop, t_ref_mjd


def _local_limit(rows: int) -> SpiacsAnalysisException:
    text = (
        f"mmoda_local: this light curve would have {rows} rows; requests to this service are limited to "
        f"{MAX_OUTPUT_ROWS} rows per light curve (use a larger time_bin or a shorter interval)"
    )
    return SpiacsAnalysisException(
        f"SPI-ACS backend refuses to process this request, due to resource constrain: {text}"
    )


def _refusal_keywords(text: str) -> bool:
    return len(text.encode()) < 8000 and ("this service are limited" in text or "Over revolution" in text)


def _request_times(parameters: dict) -> tuple[Time, Time]:
    time_format = parameters.get("T_format") or "isot"
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ErfaWarning)
        for name in ("T1", "T2"):
            value = parameters[name]
            if time_format in ("isot", "iso"):
                out.append(Time(str(value), format="isot" if "T" in str(value) else "iso", scale="utc"))
            else:
                out.append(Time(float(value), format=time_format, scale="utc"))
    return out[0], out[1]


def light_curve_unit(parameters: dict, *, model: SpiAcsModel) -> tuple[NumpyDataUnit, dict]:
    """The ``RATE`` data unit and the product's meta data, as the real plugin builds them.

    Parameters
    ----------
    parameters : dict
        Normalised ``spi_acs_lc`` parameters (T1, T2, T_format, time_bin, time_bin_format, data_level).
    model : SpiAcsModel

    Returns
    -------
    unit : NumpyDataUnit
        Columns TIME (s from TIMEZERO), RATE and ERROR (counts/s); header as after the real ``write()``.
    meta_data : dict
        ``{src_name: 'query', time_bin, time, rate, rate_err}``.

    Raises
    ------
    SpiacsException
        The data server refused the request (span too large, reversed window, local row limit).
    SpiacsAnalysisException
        No usable data (gap, outside the mission) or too few rows.
    """
    t1, t2 = _request_times(parameters)
    realtime = parameters.get("data_level") == "realtime"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ErfaWarning)
        t0_isot = Time((t2.mjd + t1.mjd) * 0.5, format="mjd").isot
        dt_s = (t2 - t1).sec * 0.5
    time_bin_s = float(parameters.get("time_bin", 1000.0))
    if parameters.get("time_bin_format") == "jd":
        time_bin_s *= _DAY

    answer = _data_server(model, t0_isot, dt_s, realtime=realtime)
    if _refusal_keywords(answer.text):
        analysis = SpiacsAnalysisException(
            f"SPI-ACS backend refuses to process this request, due to resource constrain: {answer.text}"
        )
        raise SpiacsException(
            message=f"Spiacs AnalysisException in run_query: {analysis}", debug_message=analysis.debug_message
        )
    for keyword in "ZeroData", "NoData":
        if keyword in answer.text:
            raise SpiacsAnalysisException(
                message=f"no usable data found for this time interval: server reports {keyword} "
                f"(status {answer.status}). Raw response: {answer.text}"
            )
    if answer.status != 200 or answer.rows <= 100:
        if realtime:
            raise _realtime_failure(answer.rows, in_mission=model.in_mission(utc_seconds(t0_isot)))
        # the parser reads the error text (or the few rows) and its `assert len(...) > 100` fails
        raise SpiacsAnalysisException(message="spiacs light curve failed: AssertionError()", debug_message="")

    delta_t = _effective_time_bin(time_bin_s)
    try:
        data, t_start, t_stop, t_ref_mjd = _rebinned_columns(model, answer, delta_t)
    except SpiacsAnalysisException as exc:
        raise SpiacsException(message=f"Spiacs AnalysisException in run_query: {exc}") from None
    meta_data = {"src_name": "query", "time_bin": delta_t}

    t_ref_s = (t_ref_mjd - _IJD_MJD) * _DAY
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ErfaWarning)
        # as the plugin: DATE-END is computed from t_start too (a bug of the real plugin, kept)
        date_obs = Time(t_start / 86400.0 + t_ref_mjd, scale="tt", format="mjd").isot
    header = {
        "EXTNAME": "RATE",
        "TIMESYS": "TT",
        "TIMEREF": "LOCAL",
        "ONTIME": t_stop - t_start,
        "TASSIGN": "SATELLITE",
        "TSTART": t_ref_s + t_start,
        "TSTOP": t_ref_s + t_stop,
        "DATE-OBS": date_obs,
        "DATE-END": date_obs,
        "TIMEDEL": meta_data["time_bin"],
        "MJDREF": _IJD_MJD,
        "TELESCOP": "INTEGRAL",
        "INSTRUME": "SPI-ACS",
        "TIMEZERO": t_ref_s,
        "TIMEUNIT": "s ",
        "PROPHECY": model.prophecy(utc_seconds(t0_isot)) if realtime else [],
        "EPHS": model.ephemeris_text(utc_seconds(t0_isot)),
    }
    units_dict = {"RATE": "count/s", "ERROR": "count/s", "TIME": "s"}
    unit = NumpyDataUnit(data=data, name="RATE", data_header=header, hdu_type="bintable", units_dict=units_dict)
    unit.to_fits_hdu()  # what the dispatcher's write() does: lists become strings, the FITS keywords appear
    unit.header.update(ORIGIN=ORIGIN, CREATOR=CREATOR, SIMULATD=True)
    meta_data.update(time="TIME", rate="RATE", rate_err="ERROR")
    return unit, meta_data


def spiacs_products(parameters: dict, *, archive, config) -> dict:
    """Products of a ``spi_acs_lc`` request, or the failure the real dispatcher reports.

    Parameters
    ----------
    parameters : dict
        Normalised parameters of the request (``JobSpec.parameters``).
    archive : ScwArchive
        The server's ScW archive (revolutions and attitude).
    config : ServerConfig
        Gives the seed and the injected bursts (``injected_grbs``).

    Returns
    -------
    dict
        ``{"numpy_data_product_list": [encoded product], "binary_data_product_list": []}``; the client
        names the product ``spi_acs_lc_0_query``.

    Raises
    ------
    JobFailure
        As the real dispatcher wraps a plugin exception: message ``Error when getting query products``,
        error_message ``Instrument: spi_acs, product: spi_acs_lc`` + the support text, debug_message the
        ``repr`` of the plugin's exception, exit_status.job_status ``unknown``.
    """
    model = model_for(archive, seed=config.seed, injections=getattr(config, "injected_grbs", ()))
    try:
        unit, meta_data = light_curve_unit(parameters, model=model)
    except (SpiacsException, SpiacsAnalysisException) as exc:
        log.info("spi_acs request failed: %r", exc)
        raise JobFailure(
            "Error when getting query products",
            error_message=f"Instrument: {INSTRUMENT}, product: {PRODUCT}" + protocol.SUPPORT_TEXT,
            debug_message=repr(exc),
            job_status="unknown",
        ) from None
    primary = NumpyDataUnit(
        None, name="Primary", hdu_type="primary", data_header={"ORIGIN": ORIGIN, "CREATOR": CREATOR, "SIMULATD": True}
    )
    encoded = encode_units([primary, unit], name=None, meta_data=meta_data)
    return {"numpy_data_product_list": [encoded], "binary_data_product_list": []}


def required_roles(parameters: dict) -> dict:
    """Roles a ``spi_acs_lc`` request needs, as the real plugin's ``check_query_roles`` asks.

    Parameters
    ----------
    parameters : dict
        Normalised request parameters.

    Returns
    -------
    dict
        Role → why it is needed (``integral-realtime`` for ``data_level=realtime``); empty otherwise.
    """
    if parameters.get("data_level") == "realtime":
        return {ROLE_REALTIME: REALTIME_ROLE_REASON}
    return {}
