"""The simulated ScW catalogue of the whole INTEGRAL mission (revolutions 39 to 2885).

What is real and what is invented: docs/simulated_sky.md, "The ScW archive".
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import gzip
import io
import json
import logging
import os
import re
import tempfile
import time
import warnings
from importlib import resources
from pathlib import Path

import numpy as np
from astropy.table import Table
from astropy.time import Time
from astropy.utils import iers
from erfa import ErfaWarning

iers.conf.auto_download = False  # never touch the network (leap seconds are bundled with astropy)

log = logging.getLogger(__name__)

#: Version of the generator; part of the cache file name. Bump it when the algorithm or data change.
GENERATOR_VERSION = "scwarchive-2025.1"
#: Digits-only index version reported by the ScW-list service (stable for a generator version).
INDEX_VERSION = "2025022801"
#: Seed of the generator (the archive is identical at every build).
SEED = 20021017

#: IJD = MJD − 51544 (TT).
IJD_MJD_OFFSET = 51544.0
#: The Crab (ICRS, deg).
CRAB_RA, CRAB_DEC = 83.633, 22.0145
#: First and last revolutions of the archive.
FIRST_REV, LAST_REV = 39, 2885
#: Revolution from which the post-2015 orbit (period ~2.66 d) is used for templates.
ORBIT_CHANGE_REV = 1500
#: Tropical year, days (shift used to borrow observations of another year).
TROPICAL_YEAR = 365.2422

DAY = 86400.0
#: Observations centred within this distance of the Crab are reserved to the real Crab-field ScWs.
CRAB_EXCLUSION_DEG = 10.0
#: A Crab-field ScW dithers around a listed observation's centre only if it is this close to the Crab.
CRAB_FIELD_CENTRE_DEG = 1.5
#: Number of pointings in the radiation belts at the start and at the end of each revolution.
BELT_FIRST, BELT_LAST = 3, 4
#: A listed revolution whose ids cover less than this fraction of its pointing numbers is completed.
SPARSE_FRACTION = 0.75
#: Wall time of an observation = this factor × its exposure.
OBS_WALL_FACTOR = 1.15

#: JEM-X operating history (approximate): (from IJD, JEM-X1 on, JEM-X2 on).
JEMX_HISTORY = (
    (-np.inf, False, True),  # JEM-X2 alone (early mission)
    (1796.0, True, False),  # 2004-12-01: JEM-X1 alone
    (3653.0, True, True),  # 2010-01-01: both units
)

_COLUMNS = (
    ("SWID", "U12"),
    ("REVOL", "i4"),
    ("TSTART", "f8"),
    ("TSTOP", "f8"),
    ("TELAPSE", "f4"),
    ("RA_SCX", "f8"),
    ("DEC_SCX", "f8"),
    ("RA_SCZ", "f8"),
    ("DEC_SCZ", "f8"),
    ("POSANGLE", "f4"),
    ("GOOD_ISGRI", "f4"),
    ("GOOD_JEMX1", "f4"),
    ("GOOD_JEMX2", "f4"),
    ("IBISMODE", "i2"),
    ("OBS_ID", "U11"),
    ("IN_BELT", "?"),
    ("FILLED", "?"),
    ("REAL_ID", "?"),
    ("REAL_TIME", "?"),
    ("FILL_SHIFT_YR", "i1"),
    ("RA_OBS", "f8"),
    ("DEC_OBS", "f8"),
)
#: Names of the table columns, in order.
COLUMNS = tuple(name for name, _ in _COLUMNS)

_ID_RE = re.compile(r"^(\d{12})(?:\.(\d{3}))?$")


# ---------------------------------------------------------------------------------------------------------
# time
# ---------------------------------------------------------------------------------------------------------
def parse_time_to_ijd(value) -> float:
    """Interpret a time the way the real INTEGRAL timesystem service does.

    Parameters
    ----------
    value : float, int, str or astropy.time.Time
        A number (or numeric string) below 10000 is IJD; a larger number is
        MJD (IJD = MJD − 51544). Anything else is an ISO/ISOT UTC date
        (``2005-06-22T23:58:55.816``), converted to TT with astropy.

    Returns
    -------
    float
        IJD (TT).

    Raises
    ------
    ValueError
        If the value cannot be interpreted.
    """
    if isinstance(value, Time):
        return float(value.tt.mjd - IJD_MJD_OFFSET)
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = None
    if number is not None:
        if not np.isfinite(number):
            raise ValueError(f"time is not finite: {value!r}")
        return number if number < 10000 else number - IJD_MJD_OFFSET
    text = str(value).strip()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ErfaWarning)  # "dubious year": dates beyond the leap-second table
        try:
            t = Time(text, scale="utc")
        except Exception:  # astropy raises ValueError (with a long text) for most, but be robust
            raise ValueError(f"unknown time format: {text!r}") from None
        if t.format not in ("isot", "iso", "fits", "yday"):
            raise ValueError(f"unknown time format: {text!r}")
        return float(t.tt.mjd - IJD_MJD_OFFSET)


def ijd_to_utc_isot(ijd):
    """Convert IJD (TT) to an ISOT UTC string with milliseconds.

    Parameters
    ----------
    ijd : float or array_like
        IJD (TT).

    Returns
    -------
    str or numpy.ndarray of str
        For example ``ijd_to_utc_isot(2000.0) == '2005-06-22T23:58:55.816'``.
    """
    t = Time(np.asarray(ijd, dtype=float) + IJD_MJD_OFFSET, format="mjd", scale="tt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ErfaWarning)  # "dubious year": dates beyond the leap-second table
        out = t.utc.isot
    return str(out) if np.ndim(out) == 0 else np.asarray(out)


def utc_mjd_to_ijd(mjd_utc):
    """Convert UTC MJD to IJD (TT) (vectorised)."""
    mjd = np.asarray(mjd_utc, dtype=float)
    return Time(mjd, format="mjd", scale="utc").tt.mjd - IJD_MJD_OFFSET


def ijd_to_utc_mjd(ijd):
    """Convert IJD (TT) to UTC MJD (vectorised)."""
    ijd = np.asarray(ijd, dtype=float)
    return Time(ijd + IJD_MJD_OFFSET, format="mjd", scale="tt").utc.mjd


# ---------------------------------------------------------------------------------------------------------
# geometry
# ---------------------------------------------------------------------------------------------------------
def radec_to_unit(ra_deg, dec_deg) -> np.ndarray:
    """Unit vectors (..., 3) for RA/Dec in degrees."""
    ra = np.radians(np.asarray(ra_deg, dtype=float))
    dec = np.radians(np.asarray(dec_deg, dtype=float))
    cd = np.cos(dec)
    return np.stack([cd * np.cos(ra), cd * np.sin(ra), np.sin(dec)], axis=-1)


def unit_to_radec(vec) -> tuple[np.ndarray, np.ndarray]:
    """RA in [0, 360) and Dec (deg) of vectors (..., 3) (need not be normalised)."""
    vec = np.asarray(vec, dtype=float)
    x, y, z = vec[..., 0], vec[..., 1], vec[..., 2]
    ra = np.degrees(np.arctan2(y, x)) % 360.0
    dec = np.degrees(np.arctan2(z, np.hypot(x, y)))
    return ra, dec


def _east_north(ra_deg, dec_deg) -> tuple[np.ndarray, np.ndarray]:
    ra = np.radians(np.asarray(ra_deg, dtype=float))
    dec = np.radians(np.asarray(dec_deg, dtype=float))
    east = np.stack([-np.sin(ra), np.cos(ra), np.zeros_like(ra)], axis=-1)
    north = np.stack([-np.sin(dec) * np.cos(ra), -np.sin(dec) * np.sin(ra), np.cos(dec)], axis=-1)
    return east, north


def spacecraft_axes(ra_scx, dec_scx, posangle) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit vectors of the spacecraft X, Y, Z axes from the pointing and position angle.

    Parameters
    ----------
    ra_scx, dec_scx : float or array_like
        Pointing (X axis), deg.
    posangle : float or array_like
        Position angle of the Z axis east of north at the pointing, deg.

    Returns
    -------
    x, y, z : numpy.ndarray
        Arrays of shape (..., 3); right-handed (X × Y = Z).
    """
    x = radec_to_unit(ra_scx, dec_scx)
    east, north = _east_north(ra_scx, dec_scx)
    pa = np.radians(np.asarray(posangle, dtype=float))[..., None]
    z = np.cos(pa) * north + np.sin(pa) * east
    y = np.cross(z, x)
    return x, y, z


def spacecraft_axes_radec(ra_scx, dec_scx, posangle) -> dict:
    """RA/Dec (deg) of the Y and Z axes: ``{"ra_scy", "dec_scy", "ra_scz", "dec_scz"}``."""
    _, y, z = spacecraft_axes(ra_scx, dec_scx, posangle)
    ra_y, dec_y = unit_to_radec(y)
    ra_z, dec_z = unit_to_radec(z)
    return {"ra_scy": ra_y, "dec_scy": dec_y, "ra_scz": ra_z, "dec_scz": dec_z}


def sun_constrained_attitude(x_unit, sun_unit) -> tuple[np.ndarray, np.ndarray]:
    """Z axis and position angle for pointings X with the Sun in the X–Z plane (+Z side).

    Parameters
    ----------
    x_unit, sun_unit : numpy.ndarray
        Unit vectors (N, 3).

    Returns
    -------
    z_unit : numpy.ndarray
        (N, 3).
    posangle : numpy.ndarray
        Position angle of Z east of north at X, deg in [0, 360).
    """
    x = np.asarray(x_unit, dtype=float)
    s = np.asarray(sun_unit, dtype=float)
    z = s - np.sum(s * x, axis=-1, keepdims=True) * x
    norm = np.linalg.norm(z, axis=-1, keepdims=True)
    # Sun exactly along ±X never happens for real pointings; fall back on the north pole.
    degenerate = norm[..., 0] < 1e-9
    if np.any(degenerate):
        z[degenerate] = np.array([0.0, 0.0, 1.0]) - x[degenerate, 2:3] * x[degenerate]
        norm = np.linalg.norm(z, axis=-1, keepdims=True)
    z = z / norm
    ra, dec = unit_to_radec(x)
    east, north = _east_north(ra, dec)
    pa = np.degrees(np.arctan2(np.sum(z * east, axis=-1), np.sum(z * north, axis=-1))) % 360.0
    return z, pa


def sun_unit_vectors(ijd, *, step_days: float = 0.5) -> np.ndarray:
    """Geocentric unit vectors towards the Sun (GCRS) at IJD times (TT).

    astropy ``get_sun`` is evaluated once on a grid of ``step_days`` covering
    the times, then interpolated linearly and renormalised (the Sun moves
    ~1°/day: error < 0.001° for the default half-day step).
    """
    from astropy.coordinates import get_sun

    ijd = np.asarray(ijd, dtype=float)
    lo, hi = np.floor(ijd.min()) - 1.0, np.ceil(ijd.max()) + 1.0
    grid = np.arange(lo, hi + step_days, step_days)
    sun = get_sun(Time(grid + IJD_MJD_OFFSET, format="mjd", scale="tt"))
    vec = radec_to_unit(sun.ra.deg, sun.dec.deg)
    out = np.stack([np.interp(ijd, grid, vec[:, k]) for k in range(3)], axis=-1)
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def _angular_distance_deg(ra1, dec1, ra2, dec2) -> np.ndarray:
    u1, u2 = radec_to_unit(ra1, dec1), radec_to_unit(ra2, dec2)
    return np.degrees(np.arccos(np.clip(np.sum(u1 * u2, axis=-1), -1.0, 1.0)))


# ---------------------------------------------------------------------------------------------------------
# shipped data
# ---------------------------------------------------------------------------------------------------------
def _data_file(name: str):
    return resources.files("mmoda_local").joinpath("data", name)


@dataclasses.dataclass(frozen=True)
class CrabScws:
    """The real Crab-field ScWs (one row per distinct id, sorted by id = by time)."""

    ids: np.ndarray  #: int64 RRRRPPPPSSSF
    tstart: np.ndarray  #: IJD (TT)
    tstop: np.ndarray  #: IJD (TT)
    start_mjd_utc: np.ndarray  #: as in the file
    stop_mjd_utc: np.ndarray  #: as in the file


@functools.lru_cache(maxsize=1)
def load_crab_scws() -> CrabScws:
    """Read ``crab_field_scws_2003-2025.csv`` (duplicate versions of one id keep the first row)."""
    text = _data_file("crab_field_scws_2003-2025.csv").read_text()
    rows = list(csv.reader(io.StringIO(text)))[1:]
    ids = np.array([int(r[0].strip()[:12]) for r in rows], dtype=np.int64)
    t1 = np.array([float(r[1]) for r in rows])
    t2 = np.array([float(r[2]) for r in rows])
    ids, first = np.unique(ids, return_index=True)
    t1, t2 = t1[first], t2[first]
    return CrabScws(ids=ids, tstart=utc_mjd_to_ijd(t1), tstop=utc_mjd_to_ijd(t2), start_mjd_utc=t1, stop_mjd_utc=t2)


@functools.lru_cache(maxsize=1)
def load_pointing_ids() -> np.ndarray:
    """Real pointing ScW ids of revolutions 43–2451 (int64, unique, sorted)."""
    with _data_file("scw_ids_rev0043-2451.txt.gz").open("rb") as raw:
        text = gzip.decompress(raw.read()).decode()
    return np.unique(np.array(text.split(), dtype=np.int64))


@dataclasses.dataclass(frozen=True)
class Observations:
    """The real observation list, sorted by start."""

    obs_id: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    start: np.ndarray  #: IJD (TT)
    exposure: np.ndarray  #: s

    @property
    def end(self) -> np.ndarray:
        """End of the wall-clock window in which the observation is active (IJD)."""
        return self.start + OBS_WALL_FACTOR * self.exposure / DAY


@functools.lru_cache(maxsize=1)
def load_observations() -> Observations:
    """Read ``integral_observations_2002-2022.ecsv``."""
    with _data_file("integral_observations_2002-2022.ecsv").open("r") as fh:
        table = Table.read(fh.read(), format="ascii.ecsv")
    start = Time(np.asarray(table["START"], dtype=str), format="isot", scale="utc").tt.mjd - IJD_MJD_OFFSET
    order = np.argsort(start, kind="stable")
    return Observations(
        obs_id=np.asarray(table["OBS_ID"], dtype="U11")[order],
        ra=np.asarray(table["RA"], dtype=float)[order],
        dec=np.asarray(table["DEC"], dtype=float)[order],
        start=start[order],
        exposure=np.asarray(table["EXPOSURE"], dtype=float)[order],
    )


# ---------------------------------------------------------------------------------------------------------
# revolutions
# ---------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RevolutionModel:
    """Start times (perigee passages) of revolutions 0 … LAST_REV + 1.

    Attributes
    ----------
    starts : numpy.ndarray
        IJD (TT) of the start of revolution ``r`` at index ``r`` (0 … LAST_REV + 1);
        revolutions before 39 are extrapolated with the early period.
    smooth_starts : numpy.ndarray
        The fitted smooth model before the nudges that put every real Crab
        ScW inside its revolution.
    worst_mismatch_s : float
        Largest distance (s) by which a real Crab ScW fell outside its
        revolution in the smooth model (0 if none did).
    n_nudged : int
        Number of revolution starts moved to honour the Crab ScWs.
    """

    starts: np.ndarray
    smooth_starts: np.ndarray
    worst_mismatch_s: float
    n_nudged: int

    @property
    def period_first(self) -> float:
        """Orbital period (days) of revolution FIRST_REV, the early period used before it."""
        return float(self.starts[FIRST_REV + 1] - self.starts[FIRST_REV])

    @property
    def period_last(self) -> float:
        """Orbital period (days) of the last revolution of the table, used to extrapolate beyond it."""
        return float(self.starts[-1] - self.starts[-2])

    def start(self, rev):
        """IJD of the start of revolution(s) ``rev`` (extrapolated beyond the table)."""
        rev = np.asarray(rev)
        n = len(self.starts)
        inside = np.clip(rev, 0, n - 1).astype(int)
        out = np.where(
            rev < 0,
            self.starts[0] + rev * self.period_first,
            np.where(rev >= n, self.starts[-1] + (rev - (n - 1)) * self.period_last, self.starts[inside]),
        )
        return float(out) if out.ndim == 0 else out

    def revolution_of(self, ijd):
        """Revolution number(s) containing IJD time(s); -1 before revolution 0."""
        t = np.asarray(ijd, dtype=float)
        rev = np.searchsorted(self.starts, t, side="right") - 1
        late = t >= self.starts[-1]
        if np.any(late):
            extra = np.floor((t - self.starts[-1]) / self.period_last).astype(int)
            rev = np.where(late, len(self.starts) - 1 + extra, rev)
        rev = np.where(t < self.starts[0], -1, rev)
        return int(rev) if rev.ndim == 0 else rev.astype(np.int64)


def _linear_spline_fit(x, y, knots, lam):
    """Least-squares piecewise-linear function on ``knots`` with a second-difference penalty."""
    k = np.searchsorted(knots, x, side="right") - 1
    k = np.clip(k, 0, len(knots) - 2)
    w = (x - knots[k]) / (knots[k + 1] - knots[k])
    a = np.zeros((len(x), len(knots)))
    a[np.arange(len(x)), k] = 1.0 - w
    a[np.arange(len(x)), k + 1] = w
    d2 = np.zeros((len(knots) - 2, len(knots)))
    for i in range(len(knots) - 2):
        h1, h2 = knots[i + 1] - knots[i], knots[i + 2] - knots[i + 1]
        d2[i, i : i + 3] = np.array([1.0 / h1, -1.0 / h1 - 1.0 / h2, 1.0 / h2]) * 60.0
    mat = np.vstack([a, np.sqrt(lam) * d2])
    rhs = np.concatenate([y, np.zeros(len(knots) - 2)])
    coef, *_ = np.linalg.lstsq(mat, rhs, rcond=None)
    return coef


def _eval_linear(knots, coef, x):
    x = np.asarray(x, dtype=float)
    inner = np.interp(x, knots, coef)
    slope_lo = (coef[1] - coef[0]) / (knots[1] - knots[0])
    slope_hi = (coef[-1] - coef[-2]) / (knots[-1] - knots[-2])
    return np.where(
        x < knots[0],
        coef[0] + (x - knots[0]) * slope_lo,
        np.where(x > knots[-1], coef[-1] + (x - knots[-1]) * slope_hi, inner),
    )


@functools.lru_cache(maxsize=1)
def revolution_model() -> RevolutionModel:
    """Fit the revolution start times to the real Crab-field ScWs (see docs/simulated_sky.md, "The ScW archive").

    Each revolution whose first Crab ScW has a pointing number P ≤ 6 gives
    an estimate of its perigee: that ScW's start − ((P − 1) × 2200 s + 600 s).
    Two smooth piecewise-linear models (knots every 60 revolutions,
    curvature penalty, two robust passes) are fitted to the estimates before
    (≤ 1462) and after (≥ 1508) the 2015 orbit change; in between, the two
    are joined by the early and late periods meeting at a kink (≈ rev 1500,
    January 2015). Finally the starts are nudged (by as little as needed, 60 s
    margin) so that every Crab ScW is inside its revolution.
    """
    crab = load_crab_scws()
    rev = (crab.ids // 100_000_000).astype(int)
    pppp = (crab.ids // 10_000 % 10_000).astype(int)
    urev, first = np.unique(rev, return_index=True)
    last = np.r_[first[1:], len(rev)] - 1
    t1min, t2max, p_first = crab.tstart[first], crab.tstop[last], pppp[first]

    good = p_first <= 6
    r_est = urev[good].astype(float)
    y_est = t1min[good] - ((np.clip(p_first[good] - 1, 0, None)) * 2200.0 + 600.0) / DAY

    def fit(lo, hi):
        sel = (r_est >= lo) & (r_est <= hi)
        x, y = r_est[sel], y_est[sel]
        knots = np.unique(np.r_[np.arange(lo, hi, 60.0), hi])
        keep = np.ones(len(x), bool)
        for _ in range(2):
            coef = _linear_spline_fit(x[keep], y[keep], knots, lam=1.0)
            resid = y - _eval_linear(knots, coef, x)
            keep = np.abs(resid) < 0.25
        return knots, coef

    pre_knots, pre_coef = fit(float(FIRST_REV), 1462.0)
    post_knots, post_coef = fit(1508.0, float(LAST_REV + 1))
    revs = np.arange(0, LAST_REV + 2, dtype=float)
    pre = _eval_linear(pre_knots, pre_coef, revs)
    post = _eval_linear(post_knots, post_coef, revs)
    # pre-change line continued with its final period, post-change line continued back with its first one
    p_pre = (pre_coef[-1] - pre_coef[-2]) / (pre_knots[-1] - pre_knots[-2])
    p_post = (post_coef[1] - post_coef[0]) / (post_knots[1] - post_knots[0])
    pre_line = pre_coef[-1] + (revs - pre_knots[-1]) * p_pre
    post_line = post_coef[0] + (revs - post_knots[0]) * p_post
    smooth = np.where(revs <= 1462, pre, np.where(revs >= 1508, post, np.minimum(pre_line, post_line)))

    # mismatch of the smooth model
    s_rev, s_next = smooth[urev], smooth[urev + 1]
    early = np.maximum(0.0, s_rev - t1min)
    late = np.maximum(0.0, t2max - s_next)
    worst = float(max(early.max(), late.max()) * DAY)

    starts = smooth.copy()
    margin = 60.0 / DAY
    nudged = set()
    for _ in range(10):
        changed = False
        bad = starts[urev] > t1min - margin
        if np.any(bad):
            starts[urev[bad]] = t1min[bad] - margin
            nudged.update(urev[bad].tolist())
            changed = True
        bad = starts[urev + 1] < t2max + margin
        if np.any(bad):
            starts[urev[bad] + 1] = t2max[bad] + margin
            nudged.update((urev[bad] + 1).tolist())
            changed = True
        if not changed:
            break
    if np.any(np.diff(starts) < 1.0):
        raise RuntimeError("revolution model: a revolution shorter than a day")
    log.debug("revolution model: worst Crab mismatch of the smooth fit %.0f s, %d starts nudged", worst, len(nudged))
    return RevolutionModel(starts=starts, smooth_starts=smooth, worst_mismatch_s=worst, n_nudged=len(nudged))


# ---------------------------------------------------------------------------------------------------------
# the build
# ---------------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _dither_patterns() -> tuple[np.ndarray, ...]:
    """Offsets (east, north) in degrees: 5×5 (2.17° steps, spiral from the centre), hex (2°), staring."""
    grid = [(i, j) for i in range(-2, 3) for j in range(-2, 3)]
    grid.sort(key=lambda p: (max(abs(p[0]), abs(p[1])), np.arctan2(p[1], p[0]) % (2 * np.pi)))
    rect = np.array(grid, dtype=float) * 2.17
    angles = np.radians(np.arange(0, 360, 60))
    hexagon = np.vstack([[0.0, 0.0], 2.0 * np.column_stack([np.cos(angles), np.sin(angles)])])
    return rect, hexagon, np.zeros((1, 2))


def _group_index(keys: np.ndarray) -> np.ndarray:
    """Index of each element within its run of equal consecutive keys (0, 1, 2, …)."""
    n = len(keys)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.r_[True, keys[1:] != keys[:-1]]
    start_pos = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    return np.arange(n) - start_pos


def _active_observation(obs: Observations, t: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Index of the observation active at each time (latest started; -1 if none), among ``allowed``."""
    idx_allowed = np.flatnonzero(allowed)
    start, end = obs.start[idx_allowed], obs.end[idx_allowed]
    i = np.searchsorted(start, t, side="right") - 1
    ok = i >= 0
    ic = np.clip(i, 0, None)
    active = ok & (t < end[ic])
    # an earlier, longer observation may still be running after a short later one ended
    runmax = np.maximum.accumulate(end)
    argrun = np.maximum.accumulate(np.where(end >= runmax, np.arange(len(end)), 0))
    j = argrun[ic]
    fallback = ok & ~active & (t < end[j])
    out = np.full(len(t), -1, dtype=np.int64)
    out[active] = idx_allowed[ic[active]]
    out[fallback] = idx_allowed[j[fallback]]
    return out


def _choose_templates(model: RevolutionModel, real_ids: np.ndarray, rng: np.random.Generator) -> dict:
    """Real revolution (with ≥ 40 ids) lending its pattern to each revolution that lacks ids."""
    list_rev = (real_ids // 100_000_000).astype(int)
    revs_in_list, counts = np.unique(list_rev, return_counts=True)
    count_of = dict(zip(revs_in_list.tolist(), counts.tolist()))
    rich = revs_in_list[counts >= 40]
    rich_start = model.starts[rich]
    season = lambda t: (t % TROPICAL_YEAR) / TROPICAL_YEAR  # noqa: E731
    out = {}
    for rev in range(FIRST_REV, LAST_REV + 1):
        if count_of.get(rev, 0) >= 10:
            continue
        t = model.starts[rev]
        d = np.abs(season(rich_start) - season(t))
        d = np.minimum(d, 1.0 - d) * TROPICAL_YEAR
        same_era = (rich >= ORBIT_CHANGE_REV) == (rev >= ORBIT_CHANGE_REV)
        other_year = np.abs(rich_start - t) > 180.0
        cand = rich[same_era & other_year & (d <= 12.0)]
        if len(cand) == 0:
            cand = rich[same_era & other_year][np.argsort(d[same_era & other_year])[:5]]
        out[rev] = int(rng.choice(cand))
    return out


def _completion_ids(real_ids: np.ndarray, crab_ids: np.ndarray, templates: dict) -> np.ndarray:
    """Invented ids ``RRRRPPPP0010`` for the numbers missing in sparsely listed revolutions.

    A revolution with a real id list (not templated) whose distinct pointing
    numbers (listed or Crab) cover less than :data:`SPARSE_FRACTION` of
    1 … its highest number gets the missing numbers.
    """
    known = np.unique(np.concatenate([real_ids, crab_ids]) // 10_000)  # RRRRPPPP
    rev = known // 10_000
    urev, first, counts = np.unique(rev, return_index=True, return_counts=True)
    last = first + counts - 1
    pmax = known[last] % 10_000
    sparse = (
        (counts < SPARSE_FRACTION * pmax)
        & ~np.isin(urev, list(templates))
        & np.isin(urev, np.unique(real_ids // 100_000_000))
    )
    out = []
    for r, top, a, n in zip(
        urev[sparse].tolist(), pmax[sparse].tolist(), first[sparse].tolist(), counts[sparse].tolist()
    ):
        present = np.zeros(top + 1, bool)
        present[known[a : a + n] % 10_000] = True
        missing = np.flatnonzero(~present[1:]) + 1
        out.append((r * 10_000 + missing) * 10_000 + 10)
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def _pointing_items(model: RevolutionModel, rng: np.random.Generator) -> dict:
    """All pointing ids of the archive with their kind, sorted by id (= time order within a revolution)."""
    real_ids = load_pointing_ids()
    crab = load_crab_scws()
    templates = _choose_templates(model, real_ids, rng)

    list_rev = real_ids // 100_000_000
    in_range = (list_rev >= FIRST_REV) & (list_rev <= LAST_REV)
    real_ids = real_ids[in_range]
    list_rev = list_rev[in_range]
    # template ids: the lender's PPPPSSSF under the borrower's revolution number
    lo = np.searchsorted(list_rev, np.arange(FIRST_REV, LAST_REV + 2))
    tmpl = []
    for rev, lender in templates.items():
        a, b = lo[lender - FIRST_REV], lo[lender - FIRST_REV + 1]
        tmpl.append(real_ids[a:b] % 100_000_000 + rev * 100_000_000)
    tmpl_ids = np.concatenate(tmpl) if tmpl else np.zeros(0, np.int64)
    tmpl_ids = tmpl_ids[~np.isin(tmpl_ids, real_ids)]

    crab_ids = crab.ids[(crab.ids // 100_000_000 >= FIRST_REV) & (crab.ids // 100_000_000 <= LAST_REV)]
    crab_rev = crab_ids // 100_000_000
    crab_p = crab_ids // 10_000 % 10_000
    # template ids numbered inside a revolution's Crab block would have no room: drop them
    ur, first = np.unique(crab_rev, return_index=True)
    last = np.r_[first[1:], len(crab_rev)] - 1
    pmin = dict(zip(ur.tolist(), crab_p[first].tolist()))
    pmax = dict(zip(ur.tolist(), crab_p[last].tolist()))
    t_rev = tmpl_ids // 100_000_000
    t_p = tmpl_ids // 10_000 % 10_000
    lo_p = np.array([pmin.get(r, 10**6) for r in t_rev.tolist()])
    hi_p = np.array([pmax.get(r, -1) for r in t_rev.tolist()])
    tmpl_ids = tmpl_ids[~((t_p >= lo_p) & (t_p <= hi_p))]

    # revolutions whose listed ids cover too few of their pointing numbers: complete the numbering
    fill_ids = _completion_ids(real_ids, crab_ids, templates)

    base = np.concatenate([real_ids, tmpl_ids, fill_ids])
    real = np.concatenate([np.ones(len(real_ids), bool), np.zeros(len(tmpl_ids) + len(fill_ids), bool)])
    keep = ~np.isin(base, crab_ids)
    ids = np.concatenate([base[keep], crab_ids])
    real = np.concatenate([real[keep], np.ones(len(crab_ids), bool)])
    fixed = np.concatenate([np.zeros(keep.sum(), bool), np.ones(len(crab_ids), bool)])
    order = np.argsort(ids, kind="stable")
    ids, real, fixed = ids[order], real[order], fixed[order]
    t1 = np.full(len(ids), np.nan)
    t2 = np.full(len(ids), np.nan)
    where = np.searchsorted(crab.ids, ids[fixed])
    t1[fixed] = crab.tstart[where]
    t2[fixed] = crab.tstop[where]
    return {"ids": ids, "real": real, "fixed": fixed, "t1": t1, "t2": t2, "n_templates": len(templates)}


class _Layout:
    """Vectorised per-revolution, per-segment helper arrays for a sorted item list."""

    D0 = 900.0  # s after perigee before the first pointing
    D1 = 1800.0  # s before the next perigee after the last pointing
    SLEW_FIXED = 120.0

    def __init__(self, ids, fixed, t1, t2, model):
        n = len(ids)
        self.rev = (ids // 100_000_000).astype(np.int64)
        self.pppp = (ids // 10_000 % 10_000).astype(np.int64)
        idx = np.arange(n)
        rev_start_flag = np.r_[True, self.rev[1:] != self.rev[:-1]]
        first_of_rev = np.maximum.accumulate(np.where(rev_start_flag, idx, 0))
        self.pos = idx - first_of_rev
        rev_end_flag = np.r_[self.rev[1:] != self.rev[:-1], True]
        last_of_rev = np.minimum.accumulate(np.where(rev_end_flag, idx, n)[::-1])[::-1]
        self.n_in_rev = last_of_rev - first_of_rev + 1
        self.rev_t0 = model.starts[self.rev]
        self.rev_t1 = model.starts[self.rev + 1]

        prev_fixed = np.maximum.accumulate(np.where(fixed, idx, -1))
        # previous fixed strictly before, in the same revolution
        pf = np.r_[-1, prev_fixed[:-1]]
        pf = np.where((pf >= 0) & (pf >= first_of_rev), pf, -1)
        nf_all = np.minimum.accumulate(np.where(fixed, idx, n)[::-1])[::-1]
        nf = np.r_[nf_all[1:], n]
        nf = np.where((nf < n) & (nf <= last_of_rev), nf, -1)
        self.prev_fixed, self.next_fixed = pf, nf
        free = ~fixed
        prev_is_fixed = np.r_[False, fixed[:-1]] & (self.pos > 0)
        new_seg = free & ((self.pos == 0) | prev_is_fixed)
        seg = np.cumsum(new_seg) - 1
        self.free = free
        self.seg = np.where(free, seg, -1)
        n_seg = int(new_seg.sum())
        self.n_seg = n_seg
        fi = np.flatnonzero(free)
        sg = self.seg[fi]
        self.seg_first = np.full(n_seg, -1)
        self.seg_last = np.full(n_seg, -1)
        np.maximum.at(self.seg_last, sg, fi)
        self.seg_first[:] = n
        np.minimum.at(self.seg_first, sg, fi)
        first = self.seg_first
        has_prev = pf[first] >= 0
        has_next = nf[first] >= 0
        self.seg_has_prev, self.seg_has_next = has_prev, has_next
        self.seg_lo = np.where(
            has_prev, t2[np.clip(pf[first], 0, None)] + self.SLEW_FIXED / DAY, self.rev_t0[first] + self.D0 / DAY
        )
        self.seg_hi = np.where(
            has_next, t1[np.clip(nf[first], 0, None)] - self.SLEW_FIXED / DAY, self.rev_t1[first] - self.D1 / DAY
        )
        self.seg_count = np.bincount(sg, minlength=n_seg)


def _layout_times(items: dict, model: RevolutionModel, rng: np.random.Generator) -> dict:
    """Times of all pointings (see docs/simulated_sky.md, "The ScW archive")."""
    ids, fixed, t1, t2, real = items["ids"], items["fixed"], items["t1"], items["t2"], items["real"]

    # segments with too little room for their pointings (600 s each) lose them
    lay = _Layout(ids, fixed, t1, t2, model)
    room = (lay.seg_hi - lay.seg_lo) * DAY
    crowded = room < 600.0 * lay.seg_count
    if np.any(crowded):
        drop = lay.free & np.isin(lay.seg, np.flatnonzero(crowded))
        log.debug("layout: %d pointings without room dropped (%d real ids)", drop.sum(), (drop & real).sum())
        keep = ~drop
        ids, fixed, t1, t2, real = ids[keep], fixed[keep], t1[keep], t2[keep], real[keep]
        lay = _Layout(ids, fixed, t1, t2, model)
        n_dropped = int(drop.sum())
    else:
        n_dropped = 0
    n = len(ids)

    # runs (simulated observations) and their durations
    crab = load_crab_scws()
    durations = np.clip((crab.stop_mjd_utc - crab.start_mjd_utc) * DAY, 1800.0, 3600.0)
    boundary = rng.random(n) < 1.0 / 12.0
    boundary |= (lay.pos == 0) | (lay.pos == BELT_FIRST) | (lay.pos == lay.n_in_rev - BELT_LAST)
    boundary |= np.r_[True, fixed[:-1]]
    run = np.cumsum(boundary) - 1
    run_duration = rng.choice(durations, size=int(run[-1]) + 1)
    dur = run_duration[run] * (1.0 + 0.002 * rng.standard_normal(n))
    slew_in = rng.uniform(90.0, 150.0, n)
    slew_between = rng.uniform(240.0, 900.0, n)
    # slew before item i (from the previous item of the same segment)
    slew_before = np.where(boundary, slew_between, slew_in)
    prev_p = np.r_[0, lay.pppp[:-1]]
    missing_before = np.where(lay.pos == 0, np.clip(lay.pppp - 1, 0, None), np.clip(lay.pppp - prev_p - 1, 0, None))
    slot = run_duration[run] + 120.0
    free = lay.free
    seg = lay.seg
    first_in_seg = np.zeros(n, bool)
    first_in_seg[lay.seg_first] = True
    pre = missing_before * slot + np.where(first_in_seg, 0.0, slew_before)
    # numbers missing between the last free pointing of a segment and the fixed one after it
    trail = np.zeros(lay.n_seg)
    nxt = lay.next_fixed[lay.seg_last]
    has_next = nxt >= 0
    trail[has_next] = (
        np.clip(lay.pppp[nxt[has_next]] - lay.pppp[lay.seg_last[has_next]] - 1, 0, None) * slot[lay.seg_last[has_next]]
    )

    fi = np.flatnonzero(free)
    sg = seg[fi]
    total = np.bincount(sg, weights=pre[fi] + dur[fi], minlength=lay.n_seg) + trail
    room = (lay.seg_hi - lay.seg_lo) * DAY
    factor = np.minimum(1.0, room / total)
    surplus = np.maximum(0.0, room - total)

    # where the surplus goes: run boundaries inside the segment, else a sensible edge
    weight = np.where(free & boundary & ~first_in_seg, 1.0, 0.0)
    wsum = np.bincount(sg, weights=weight[fi], minlength=lay.n_seg)
    none = wsum == 0
    head_only = none & lay.seg_has_next & ~lay.seg_has_prev
    both = none & lay.seg_has_next & lay.seg_has_prev
    weight[lay.seg_first[head_only | both]] = 1.0
    wsum = np.bincount(sg, weights=weight[fi], minlength=lay.n_seg)
    share = np.where(wsum > 0, surplus / np.where(wsum > 0, wsum, 1.0), 0.0)
    share = np.where(both, share / 2.0, share)  # half before the first, half after the last
    extra = np.zeros(n)
    extra[fi] = weight[fi] * share[sg]

    a = np.zeros(n)
    b = np.zeros(n)
    a[fi] = pre[fi] * factor[sg] + extra[fi]
    b[fi] = dur[fi] * factor[sg]
    c = np.cumsum(np.where(free, a + b, 0.0))
    base = c[lay.seg_first] - (a + b)[lay.seg_first]
    start = np.where(free, 0.0, np.nan)
    start[fi] = lay.seg_lo[sg] + (c[fi] - base[sg] - b[fi]) / DAY
    tstart = np.where(fixed, t1, start)
    tstop = np.where(fixed, t2, start + b / DAY)
    return {
        "ids": ids,
        "real": real,
        "fixed": fixed,
        "tstart": tstart,
        "tstop": tstop,
        "pos": lay.pos,
        "n_in_rev": lay.n_in_rev,
        "rev": lay.rev,
        "n_dropped": n_dropped,
        "rev_t0": lay.rev_t0,
        "rev_t1": lay.rev_t1,
    }


def _assign_observations(tstart, tstop, is_crab, rng) -> dict:
    """OBS_ID, field centre, FILLED flag and shift of every ScW (vectorised)."""
    obs = load_observations()
    t = 0.5 * (tstart + tstop)
    n = len(t)
    sep = _angular_distance_deg(obs.ra, obs.dec, CRAB_RA, CRAB_DEC)
    non_crab = sep >= CRAB_EXCLUSION_DEG
    crab_obs = sep < CRAB_FIELD_CENTRE_DEG

    obs_idx = np.full(n, -1, dtype=np.int64)
    shift = np.zeros(n, dtype=np.int64)
    ordinary = ~is_crab
    obs_idx[ordinary] = _active_observation(obs, t[ordinary], non_crab)
    todo = ordinary & (obs_idx < 0)
    for k in [s * m for m in range(1, 23) for s in (-1, 1)]:
        if not np.any(todo):
            break
        w = np.flatnonzero(todo)
        found = _active_observation(obs, t[w] + k * TROPICAL_YEAR, non_crab)
        hit = found >= 0
        obs_idx[w[hit]] = found[hit]
        shift[w[hit]] = k
        todo[w[hit]] = False
    if np.any(todo):  # fallback: the observation with the nearest time of year
        w = np.flatnonzero(todo)
        cand = np.flatnonzero(non_crab)
        phase_o = obs.start[cand] % TROPICAL_YEAR
        phase_t = t[w] % TROPICAL_YEAR
        d = np.abs(phase_o[None, :] - phase_t[:, None])
        d = np.minimum(d, TROPICAL_YEAR - d)
        pick = cand[np.argmin(d, axis=1)]
        obs_idx[w] = pick
        shift[w] = np.round((obs.start[pick] - t[w]) / TROPICAL_YEAR).astype(int)
        shift[w] = np.where(shift[w] == 0, 1, shift[w])
    filled = ordinary & (shift != 0)

    # real Crab-field ScWs: a Crab observation of the list if active, else the nearest one in time
    ra_c = np.zeros(n)
    dec_c = np.zeros(n)
    ci = np.flatnonzero(is_crab)
    act = _active_observation(obs, t[ci], crab_obs)
    crab_list = np.flatnonzero(crab_obs)
    nearest = crab_list[np.argmin(np.abs(obs.start[crab_list][None, :] - t[ci][:, None]), axis=1)]
    obs_idx[ci] = np.where(act >= 0, act, nearest)
    ra_c[ci] = np.where(act >= 0, obs.ra[obs_idx[ci]], CRAB_RA)
    dec_c[ci] = np.where(act >= 0, obs.dec[obs_idx[ci]], CRAB_DEC)
    oi = np.flatnonzero(ordinary)
    ra_c[oi] = obs.ra[obs_idx[oi]]
    dec_c[oi] = obs.dec[obs_idx[oi]]

    pattern_of_obs = rng.choice(3, size=len(obs.start), p=[0.55, 0.30, 0.15])
    return {
        "obs_idx": obs_idx,
        "obs_id": obs.obs_id[obs_idx],
        "ra_c": ra_c,
        "dec_c": dec_c,
        "filled": filled,
        "shift": shift,
        "pattern": pattern_of_obs[obs_idx],
    }


def _dither(ra_c, dec_c, pattern, group_key) -> tuple[np.ndarray, np.ndarray]:
    """Pointings dithered around the centres (k-th ScW of a visit → k-th pattern position)."""
    patterns = _dither_patterns()
    k = _group_index(group_key)
    off = np.zeros((len(ra_c), 2))
    for p, offsets in enumerate(patterns):
        m = pattern == p
        off[m] = offsets[k[m] % len(offsets)]
    east, north = _east_north(ra_c, dec_c)
    centre = radec_to_unit(ra_c, dec_c)
    de, dn = np.tan(np.radians(off[:, 0:1])), np.tan(np.radians(off[:, 1:2]))
    vec = centre + de * east + dn * north
    return unit_to_radec(vec)


def _jemx_on(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    on1 = np.zeros(len(t), bool)
    on2 = np.zeros(len(t), bool)
    for since, j1, j2 in JEMX_HISTORY:
        m = t >= since
        on1[m] = j1
        on2[m] = j2
    return on1, on2


def build_table() -> Table:
    """Build the simulated archive table (deterministic; a few seconds).

    Returns
    -------
    astropy.table.Table
        One row per pointing ScW, sorted by TSTART, columns :data:`COLUMNS`.
    """
    started = time.perf_counter()
    rng = np.random.default_rng(SEED)
    model = revolution_model()
    items = _pointing_items(model, rng)
    lay = _layout_times(items, model, rng)
    ids, tstart, tstop = lay["ids"], lay["tstart"], lay["tstop"]
    n = len(ids)
    is_crab = lay["fixed"]

    obs = _assign_observations(tstart, tstop, is_crab, rng)
    # a "visit" = consecutive ScWs of one observation (and one shift)
    group_key = obs["obs_idx"] * 100 + obs["shift"] + 50
    ra_x, dec_x = _dither(obs["ra_c"], obs["dec_c"], obs["pattern"], group_key)

    x = radec_to_unit(ra_x, dec_x)
    sun = sun_unit_vectors(0.5 * (tstart + tstop))
    z, posangle = sun_constrained_attitude(x, sun)
    ra_z, dec_z = unit_to_radec(z)

    telapse = (tstop - tstart) * DAY
    in_belt = (lay["pos"] < BELT_FIRST) | (lay["pos"] >= lay["n_in_rev"] - BELT_LAST)
    u = rng.uniform(0.88, 0.99, (3, n))
    belt_frac = rng.uniform(0.0, 0.4, (3, n))
    anomaly = rng.random((3, n)) < 0.01
    frac = np.where(in_belt, belt_frac, np.where(anomaly, 0.0, u))
    on1, on2 = _jemx_on(tstart)
    good_isgri = telapse * frac[0]
    good_j1 = np.where(on1, telapse * frac[1], 0.0)
    good_j2 = np.where(on2, telapse * frac[2], 0.0)

    swid = np.char.zfill(ids.astype("U12"), 12)
    columns = {
        "SWID": swid,
        "REVOL": lay["rev"].astype(np.int32),
        "TSTART": tstart,
        "TSTOP": tstop,
        "TELAPSE": telapse.astype(np.float32),
        "RA_SCX": ra_x,
        "DEC_SCX": dec_x,
        "RA_SCZ": ra_z,
        "DEC_SCZ": dec_z,
        "POSANGLE": posangle.astype(np.float32),
        "GOOD_ISGRI": good_isgri.astype(np.float32),
        "GOOD_JEMX1": good_j1.astype(np.float32),
        "GOOD_JEMX2": good_j2.astype(np.float32),
        "IBISMODE": np.full(n, 41, np.int16),
        "OBS_ID": obs["obs_id"].astype("U11"),
        "IN_BELT": in_belt,
        "FILLED": obs["filled"],
        "REAL_ID": lay["real"],
        "REAL_TIME": is_crab,
        "FILL_SHIFT_YR": obs["shift"].astype(np.int8),
        "RA_OBS": obs["ra_c"],
        "DEC_OBS": obs["dec_c"],
    }
    order = np.argsort(tstart, kind="stable")
    table = Table({name: np.asarray(columns[name], dtype=dtype)[order] for name, dtype in _COLUMNS})
    table.meta.update(
        {
            "GENERATOR": GENERATOR_VERSION,
            "INDEX_VERSION": INDEX_VERSION,
            "SEED": SEED,
            "N_TEMPLATE_REVS": items["n_templates"],
            "N_DROPPED": lay["n_dropped"],
            "REV_WORST_MISMATCH_S": model.worst_mismatch_s,
            "REV_NUDGED": model.n_nudged,
        }
    )
    _check_table(table, model)
    log.info(
        "ScW archive built: %d pointings in %.1f s (%s)", len(table), time.perf_counter() - started, GENERATOR_VERSION
    )
    return table


def _check_table(table: Table, model: RevolutionModel) -> None:
    tstart, tstop = np.asarray(table["TSTART"]), np.asarray(table["TSTOP"])
    if np.any(tstop <= tstart):
        raise RuntimeError("archive: a ScW with non-positive duration")
    if np.any(tstart[1:] < tstop[:-1] - 1e-9):
        raise RuntimeError("archive: overlapping ScWs")
    rev = np.asarray(table["REVOL"])
    if np.any(tstart < model.starts[rev] - 1e-9) or np.any(tstop > model.starts[rev + 1] + 1e-9):
        raise RuntimeError("archive: a ScW outside its revolution")
    if len(np.unique(table["SWID"])) != len(table):
        raise RuntimeError("archive: duplicate ScW ids")


# ---------------------------------------------------------------------------------------------------------
# the archive
# ---------------------------------------------------------------------------------------------------------
class ScwArchive:
    """The simulated INTEGRAL pointing ScW catalogue (see docs/simulated_sky.md, "The ScW archive").

    Parameters
    ----------
    table : astropy.table.Table
        One row per pointing ScW sorted by TSTART (as made by :func:`build_table`).

    Attributes
    ----------
    table : astropy.table.Table
        The catalogue.
    revolutions : RevolutionModel
        Revolution start times.
    """

    def __init__(self, table: Table):
        self.table = table
        self.revolutions = revolution_model()
        self._tstart = np.asarray(table["TSTART"], dtype=float)
        self._tstop = np.asarray(table["TSTOP"], dtype=float)
        self._xunit = radec_to_unit(table["RA_SCX"], table["DEC_SCX"])
        ids = np.asarray(table["SWID"]).astype(np.int64)
        self._id_order = np.argsort(ids, kind="stable")
        self._ids_sorted = ids[self._id_order]

    # -- construction ------------------------------------------------------------------------------------
    @classmethod
    def build(cls) -> ScwArchive:
        """Build the archive in memory."""
        return cls(build_table())

    @classmethod
    def cache_path(cls, cache_dir) -> Path:
        """Path of the cache file for this generator version in ``cache_dir``."""
        return Path(cache_dir) / f"scw_archive_{GENERATOR_VERSION}.npz"

    @classmethod
    def load(cls, cache_dir=None) -> ScwArchive:
        """Load the archive: from ``cache_dir`` if cached there, else build (and cache) it.

        Parameters
        ----------
        cache_dir : str or Path, optional
            Folder of the cache file (created if needed). ``None``: build in
            memory without caching.

        Returns
        -------
        ScwArchive
        """
        if cache_dir is None:
            return cls.build()
        path = cls.cache_path(cache_dir)
        if path.exists():
            try:
                started = time.perf_counter()
                archive = cls(_read_npz(path))
                log.info("ScW archive loaded from %s in %.2f s", path, time.perf_counter() - started)
                return archive
            except Exception as exc:  # a damaged cache is rebuilt
                log.warning("ScW archive cache %s unreadable (%s): rebuilding", path, exc)
        archive = cls.build()
        try:
            _write_npz(archive.table, path)
        except OSError as exc:
            log.warning("could not write the ScW archive cache %s: %s", path, exc)
        return archive

    def __len__(self) -> int:
        return len(self.table)

    # -- queries ------------------------------------------------------------------------------------------
    def select(
        self,
        t1_ijd: float,
        t2_ijd: float,
        *,
        ra: float | None = None,
        dec: float | None = None,
        radius: float | None = None,
        min_telapse: float | None = None,
        ibismode: int | None = None,
        include_belt: bool = True,
    ) -> np.ndarray:
        """Rows of the ScWs overlapping [t1, t2], optionally within a cone.

        Parameters
        ----------
        t1_ijd, t2_ijd : float
            Time range, IJD; a ScW is kept if TSTART < t2 and TSTOP > t1.
        ra, dec, radius : float, optional
            Cone (deg) on the pointing axis (separation < radius); all three
            must be given for the cone to apply.
        min_telapse : float, optional
            Keep TELAPSE > this (s).
        ibismode : int, optional
            Keep this IBISMODE only.
        include_belt : bool
            Keep radiation-belt pointings (default True, as the real lists do).

        Returns
        -------
        numpy.ndarray
            Row indices, sorted by time.
        """
        lo = np.searchsorted(self._tstop, t1_ijd, side="right")
        hi = np.searchsorted(self._tstart, t2_ijd, side="left")
        rows = np.arange(lo, max(lo, hi))
        if len(rows) == 0:
            return rows
        mask = (self._tstart[rows] < t2_ijd) & (self._tstop[rows] > t1_ijd)
        if ra is not None and dec is not None and radius is not None:
            centre = radec_to_unit(ra, dec)
            mask &= self._xunit[rows] @ centre > np.cos(np.radians(radius))
        if min_telapse is not None:
            mask &= np.asarray(self.table["TELAPSE"])[rows] > min_telapse
        if ibismode is not None:
            mask &= np.asarray(self.table["IBISMODE"])[rows] == ibismode
        if not include_belt:
            mask &= ~np.asarray(self.table["IN_BELT"])[rows]
        return rows[mask]

    def find(self, scw_ids) -> np.ndarray:
        """Row indices of ScW ids, -1 for an id that is malformed or not in the archive.

        Parameters
        ----------
        scw_ids : iterable of str
            ``RRRRPPPPSSSF`` or ``RRRRPPPPSSSF.VVV``.

        Returns
        -------
        numpy.ndarray
            One row index (or -1) per id, in the order given.
        """
        scw_ids = [str(s).strip() for s in scw_ids]
        numbers = np.full(len(scw_ids), -1, dtype=np.int64)
        for i, s in enumerate(scw_ids):
            m = _ID_RE.match(s)
            if m:
                numbers[i] = int(m.group(1))
        pos = np.clip(np.searchsorted(self._ids_sorted, numbers), 0, len(self._ids_sorted) - 1)
        found = (numbers >= 0) & (self._ids_sorted[pos] == numbers)
        return np.where(found, self._id_order[pos], -1)

    def index_of(self, scw_ids) -> np.ndarray:
        """Row indices of ScW ids ``RRRRPPPPSSSF`` or ``RRRRPPPPSSSF.VVV``.

        Parameters
        ----------
        scw_ids : str or iterable of str

        Returns
        -------
        numpy.ndarray
            One row index per id, in the order given.

        Raises
        ------
        KeyError
            Naming the ids that are malformed or not in the archive.
        """
        if isinstance(scw_ids, str):
            scw_ids = [scw_ids]
        scw_ids = [str(s).strip() for s in scw_ids]
        numbers = np.full(len(scw_ids), -1, dtype=np.int64)
        for i, s in enumerate(scw_ids):
            m = _ID_RE.match(s)
            if m:
                numbers[i] = int(m.group(1))
        pos = np.searchsorted(self._ids_sorted, numbers)
        pos_c = np.clip(pos, 0, len(self._ids_sorted) - 1)
        found = (numbers >= 0) & (self._ids_sorted[pos_c] == numbers)
        if not np.all(found):
            unknown = [s for s, ok in zip(scw_ids, found) if not ok]
            raise KeyError(f"ScWs not in the archive: {unknown}")
        return self._id_order[pos_c]

    def pointing_at(self, ijd):
        """Row index of the pointing covering time(s) ``ijd`` (TSTART ≤ t < TSTOP), or -1.

        Parameters
        ----------
        ijd : float or array_like

        Returns
        -------
        int or numpy.ndarray
        """
        t = np.asarray(ijd, dtype=float)
        i = np.searchsorted(self._tstart, t, side="right") - 1
        ic = np.clip(i, 0, len(self._tstart) - 1)
        ok = (i >= 0) & (t < self._tstop[ic])
        out = np.where(ok, ic, -1)
        return int(out) if out.ndim == 0 else out

    def nearest_pointing(self, ijd):
        """Row index of the pointing covering ``ijd``, or else of the closest one in time."""
        t = np.asarray(ijd, dtype=float)
        i = np.searchsorted(self._tstart, t, side="right") - 1
        before = np.clip(i, 0, len(self._tstart) - 1)
        after = np.clip(i + 1, 0, len(self._tstart) - 1)
        d_before = np.where(t < self._tstop[before], 0.0, t - self._tstop[before])
        d_before = np.where(i >= 0, d_before, np.inf)
        d_after = self._tstart[after] - t
        out = np.where(d_before <= d_after, before, after)
        return int(out) if out.ndim == 0 else out

    def revolution_start(self, rev):
        """IJD of the start (perigee) of revolution(s) ``rev``."""
        return self.revolutions.start(rev)

    def revolution_of(self, ijd):
        """Revolution number(s) at IJD time(s) (-1 before the mission)."""
        return self.revolutions.revolution_of(ijd)

    @property
    def time_range(self) -> tuple[float, float]:
        """(start of revolution 39, end of revolution 2885), IJD."""
        return float(self.revolutions.starts[FIRST_REV]), float(self.revolutions.starts[LAST_REV + 1])

    def summary_per_year(self) -> Table:
        """ScW count, ISGRI good time and FILLED fraction per calendar year (UTC)."""
        years = np.array([int(s[:4]) for s in ijd_to_utc_isot(self._tstart)])
        out = Table(
            names=("YEAR", "N_SCW", "TELAPSE_MS", "GOOD_ISGRI_MS", "FILLED_FRAC"), dtype=("i4", "i8", "f8", "f8", "f8")
        )
        telapse = np.asarray(self.table["TELAPSE"], dtype=float)
        good = np.asarray(self.table["GOOD_ISGRI"], dtype=float)
        filled = np.asarray(self.table["FILLED"])
        for year in np.unique(years):
            m = years == year
            out.add_row((year, m.sum(), telapse[m].sum() / 1e6, good[m].sum() / 1e6, filled[m].mean()))
        return out


def _write_npz(table: Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {name: np.asarray(table[name]) for name in COLUMNS}
    arrays["__meta__"] = np.array(json.dumps(dict(table.meta)))
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)  # atomic: concurrent readers see the old file or the new one
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    log.info("ScW archive cached in %s", path)


def _read_npz(path: Path) -> Table:
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["__meta__"]))
        if meta.get("GENERATOR") != GENERATOR_VERSION:
            raise ValueError(f"cache made by {meta.get('GENERATOR')}")
        table = Table({name: data[name] for name in COLUMNS}, meta=meta)
    return table
