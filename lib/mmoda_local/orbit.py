"""INTEGRAL's orbit (an approximate Keplerian model) and the spacecraft-service state.

The model and its choices: docs/simulated_sky.md, "INTEGRAL's orbit and the spacecraft service".
"""

from __future__ import annotations

import functools
import logging

import numpy as np
from astropy.time import Time
from astropy.utils import iers

from . import archive as _archive

iers.conf.auto_download = False  # never touch the network

log = logging.getLogger(__name__)

#: Earth's gravitational parameter, km³ s⁻².
MU_EARTH = 398600.4418
#: Earth's equatorial radius, km.
R_EARTH = 6378.137
#: Earth's J2.
J2 = 1.08263e-3
#: Speed of light, km/s.
C_KM_S = 299792.458
#: Launch, 2002-10-17T04:41 UTC (IJD, TT): epoch of the orientation angles.
LAUNCH_IJD = 1020.1958
#: Orientation at launch, deg.
INCLINATION_DEG = 52.2
RAAN_DEG = 102.0
ARG_PERIGEE_DEG = 300.0
#: (UTC date, perigee altitude km): interpolated linearly, held constant outside.
PERIGEE_ALTITUDE_ANCHORS = (
    ("2002-10-17", 9000.0),
    ("2007-01-01", 12000.0),
    ("2011-10-25", 2756.0),
    ("2015-01-01", 6000.0),
    ("2015-03-01", 4500.0),
    ("2020-01-01", 8000.0),
    ("2025-03-01", 6500.0),
)


@functools.cache
def _anchor_times() -> tuple[np.ndarray, np.ndarray]:
    # Cached: astropy's date parsing took most of the time of every ScW's body positions.
    t = np.array([_archive.parse_time_to_ijd(d) for d, _ in PERIGEE_ALTITUDE_ANCHORS])
    h = np.array([a for _, a in PERIGEE_ALTITUDE_ANCHORS])
    t.setflags(write=False)
    h.setflags(write=False)
    return t, h


def perigee_altitude_km(ijd) -> np.ndarray:
    """Perigee altitude (km) of the model at IJD time(s)."""
    t, h = _anchor_times()
    return np.interp(np.asarray(ijd, dtype=float), t, h)


def _perigee_bracket(ijd: np.ndarray, model) -> tuple[np.ndarray, np.ndarray]:
    """Time of the last perigee and the revolution's period (days) at each time (extrapolated)."""
    starts = model.starts
    rev = np.searchsorted(starts, ijd, side="right") - 1
    p_first, p_last = model.period_first, model.period_last
    before = rev < 0
    after = rev >= len(starts) - 1
    rc = np.clip(rev, 0, len(starts) - 2)
    t0 = starts[rc]
    period = starts[rc + 1] - starts[rc]
    if np.any(before):
        k = np.floor((ijd[before] - starts[0]) / p_first)
        t0 = np.where(before, 0.0, t0)
        t0[before] = starts[0] + k * p_first
        period = np.where(before, p_first, period)
    if np.any(after):
        k = np.floor((ijd[after] - starts[-1]) / p_last)
        t0 = t0.copy()
        t0[after] = starts[-1] + k * p_last
        period = np.where(after, p_last, period)
    return t0, period


def _j2_rates(a_km, e, inc_rad):
    """Secular J2 drift rates (rad/s) of the node and the argument of perigee."""
    n = np.sqrt(MU_EARTH / a_km**3)
    p = a_km * (1.0 - e**2)
    k = 1.5 * n * J2 * (R_EARTH / p) ** 2
    return -k * np.cos(inc_rad), 0.5 * k * (5.0 * np.cos(inc_rad) ** 2 - 1.0)


def orbital_elements(ijd, *, revolutions=None) -> dict:
    """Osculating Keplerian elements of the model at IJD time(s).

    Parameters
    ----------
    ijd : float or array_like
        IJD (TT).
    revolutions : RevolutionModel, optional
        Defaults to :func:`mmoda_local.archive.revolution_model`.

    Returns
    -------
    dict
        ``a`` (km), ``e``, ``inc``, ``raan``, ``argp``, ``mean_anomaly`` (rad),
        ``period`` (s), ``perigee_ijd``; arrays of the shape of ``ijd`` (1-D).
    """
    model = revolutions if revolutions is not None else _archive.revolution_model()
    t = np.atleast_1d(np.asarray(ijd, dtype=float))
    t_peri, period_d = _perigee_bracket(t, model)
    period = period_d * _archive.DAY
    a = np.cbrt(MU_EARTH * period**2 / (4.0 * np.pi**2))
    rp = R_EARTH + perigee_altitude_km(t)
    e = 1.0 - rp / a
    inc = np.full(len(t), np.radians(INCLINATION_DEG))
    # secular J2 drift, with the nominal early and late orbits (change at revolution 1500)
    t_change = model.start(_archive.ORBIT_CHANGE_REV)
    a_pre = np.cbrt(MU_EARTH * (model.period_first * _archive.DAY) ** 2 / (4 * np.pi**2))
    a_post = np.cbrt(MU_EARTH * (model.period_last * _archive.DAY) ** 2 / (4 * np.pi**2))
    inc0 = np.radians(INCLINATION_DEG)
    node_pre, argp_pre = _j2_rates(a_pre, 1.0 - (R_EARTH + 9000.0) / a_pre, inc0)
    node_post, argp_post = _j2_rates(a_post, 1.0 - (R_EARTH + 6000.0) / a_post, inc0)
    dt_pre = (np.minimum(t, t_change) - LAUNCH_IJD) * _archive.DAY
    dt_post = np.maximum(0.0, t - t_change) * _archive.DAY
    raan = np.radians(RAAN_DEG) + node_pre * dt_pre + node_post * dt_post
    argp = np.radians(ARG_PERIGEE_DEG) + argp_pre * dt_pre + argp_post * dt_post
    mean_anomaly = 2.0 * np.pi * (t - t_peri) / period_d
    return {
        "a": a,
        "e": e,
        "inc": inc,
        "raan": raan,
        "argp": argp,
        "mean_anomaly": mean_anomaly,
        "period": period,
        "perigee_ijd": t_peri,
    }


def solve_kepler(mean_anomaly, e, *, tol: float = 1e-12, max_iter: int = 50) -> np.ndarray:
    """Eccentric anomaly E with E − e sin E = M (vectorised Newton iterations)."""
    m = np.mod(np.asarray(mean_anomaly, dtype=float), 2.0 * np.pi)
    e = np.asarray(e, dtype=float)
    ecc = np.where(e > 0.8, np.pi, m)
    for _ in range(max_iter):
        f = ecc - e * np.sin(ecc) - m
        step = f / (1.0 - e * np.cos(ecc))
        ecc = ecc - step
        if np.all(np.abs(step) < tol):
            break
    return ecc


def _rotation(raan, inc, argp) -> np.ndarray:
    """Perifocal → equatorial rotation matrices (N, 3, 3)."""
    co, so = np.cos(raan), np.sin(raan)
    ci, si = np.cos(inc), np.sin(inc)
    cw, sw = np.cos(argp), np.sin(argp)
    r = np.empty((len(raan), 3, 3))
    r[:, 0, 0] = co * cw - so * sw * ci
    r[:, 0, 1] = -co * sw - so * cw * ci
    r[:, 0, 2] = so * si
    r[:, 1, 0] = so * cw + co * sw * ci
    r[:, 1, 1] = -so * sw + co * cw * ci
    r[:, 1, 2] = -co * si
    r[:, 2, 0] = sw * si
    r[:, 2, 1] = cw * si
    r[:, 2, 2] = ci
    return r


def integral_position_gcrs(ijd, *, revolutions=None) -> np.ndarray:
    """Geocentric position of INTEGRAL (km, GCRS-aligned axes) at IJD time(s).

    Parameters
    ----------
    ijd : float or array_like
        IJD (TT).
    revolutions : RevolutionModel, optional
        Defaults to :func:`mmoda_local.archive.revolution_model` (the
        archive's revolutions: perigee at every revolution start).

    Returns
    -------
    numpy.ndarray
        Shape (N, 3), N = number of times (1 for a scalar).
    """
    el = orbital_elements(ijd, revolutions=revolutions)
    ecc_anom = solve_kepler(el["mean_anomaly"], el["e"])
    a, e = el["a"], el["e"]
    x = a * (np.cos(ecc_anom) - e)
    y = a * np.sqrt(1.0 - e**2) * np.sin(ecc_anom)
    perifocal = np.stack([x, y, np.zeros_like(x)], axis=-1)
    rot = _rotation(el["raan"], el["inc"], el["argp"])
    return np.einsum("nij,nj->ni", rot, perifocal)


def barycentric_delay_s(ijd, ra, dec, *, position_km=None) -> np.ndarray:
    """Rømer delay (s) for a source at (ra, dec) seen from INTEGRAL: add it to get SSB arrival times.

    Parameters
    ----------
    ijd : float or array_like
        IJD (TT).
    ra, dec : float
        Source direction (ICRS, deg).
    position_km : numpy.ndarray, optional
        INTEGRAL's geocentric position (N, 3) if already computed.

    Returns
    -------
    numpy.ndarray
        Shape (N,).
    """
    import astropy.units as u
    from astropy.coordinates import get_body_barycentric

    t_ijd = np.atleast_1d(np.asarray(ijd, dtype=float))
    if position_km is None:
        position_km = integral_position_gcrs(t_ijd)
    t = Time(t_ijd + _archive.IJD_MJD_OFFSET, format="mjd", scale="tt")
    earth = get_body_barycentric("earth", t).xyz.to_value(u.km).T.reshape(-1, 3)
    n_hat = _archive.radec_to_unit(ra, dec)
    return (earth + position_km) @ n_hat / C_KM_S


def spacecraft_state(archive, ijd: float, *, ra: float = 0.0, dec: float = 0.0) -> dict:
    """State of INTEGRAL at one time, shaped like the real ``gw/scsystem`` answer.

    Parameters
    ----------
    archive : ScwArchive
        Gives the attitude: the pointing covering ``ijd``, or the nearest
        one in time when ``ijd`` is in a slew, a gap or a belt passage.
    ijd : float
        IJD (TT).
    ra, dec : float
        Source direction for ``barytime`` (deg).

    Returns
    -------
    dict
        ``ephs``: ``{ra, dec, alt}`` (geocentric direction of INTEGRAL, deg,
        and geocentric distance, km); ``scx``, ``scy``, ``scz``: ``{ra, dec}``
        (spacecraft axes, deg); ``barytime`` (s): the light-travel time
        between INTEGRAL and the geocentre along the source direction (the
        real service's documented check: a source in INTEGRAL's own direction
        gives distance/c, about 0.39 s); ``roemer_delay_s``: the full
        delay from INTEGRAL to the solar-system barycentre; ``ijd``, ``utc``,
        ``revolution``. Plain Python types, JSON-ready.
    """
    ijd = float(ijd)
    pos = integral_position_gcrs(ijd, revolutions=archive.revolutions)
    e_ra, e_dec = _archive.unit_to_radec(pos[0])
    row = archive.nearest_pointing(ijd)
    table = archive.table
    ra_x, dec_x = float(table["RA_SCX"][row]), float(table["DEC_SCX"][row])
    axes = _archive.spacecraft_axes_radec(ra_x, dec_x, float(table["POSANGLE"][row]))
    roemer = barycentric_delay_s(ijd, ra, dec, position_km=pos)[0]
    geocentric = float(pos[0] @ _archive.radec_to_unit(ra, dec) / C_KM_S)
    return {
        "ephs": {"ra": float(e_ra), "dec": float(e_dec), "alt": float(np.linalg.norm(pos[0]))},
        "scx": {"ra": ra_x, "dec": dec_x},
        "scy": {"ra": float(axes["ra_scy"]), "dec": float(axes["dec_scy"])},
        "scz": {"ra": float(table["RA_SCZ"][row]), "dec": float(table["DEC_SCZ"][row])},
        "barytime": geocentric,
        "roemer_delay_s": float(roemer),
        "ijd": ijd,
        "utc": _archive.ijd_to_utc_isot(ijd),
        "revolution": int(archive.revolution_of(ijd)),
    }
