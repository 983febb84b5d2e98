"""INTEGRAL at the time of a transient event: attitude, exposure, SPI-ACS limits, ISGRI image, GCN-style summary.

For one notice (GRB, gravitational waves, neutrino, FRB): where INTEGRAL pointed at T0, whether the event's
position was in the fields of ISGRI, JEM-X and SPI, the ScW active at T0, the SPI-ACS light curve around T0
with its most significant excess and 3σ upper limits, and the ISGRI image and light curve of the ScW when the
position was in the IBIS field. The approximations (fields of view, SPI-ACS response, occultation) are
written down in ``docs/transients.md``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from astropy import units as u
from astropy.time import Time

from . import provenance, spiacs
from .products import Product

log = logging.getLogger(__name__)

__all__ = [
    "INSTRUMENT_FIELDS",
    "SPACECRAFT_PATH",
    "ActiveScw",
    "Attitude",
    "Event",
    "FieldGeometry",
    "InstrumentExposure",
    "IsgriFollowUp",
    "SpiAcsFollowUp",
    "TransientError",
    "coded_fraction",
    "earth_occulted",
    "event_from",
    "exposure",
    "instrument_frame",
    "isgri_follow_up",
    "plot_fields",
    "plot_spiacs",
    "scw_at",
    "spacecraft_attitude",
    "spiacs_follow_up",
    "summary_record",
    "summary_text",
    "write_spiacs_products",
    "write_summary",
]

#: The MMODA spacecraft service (attitude and orbit at a time): ``<dispatcher>/gw/scsystem/api/v1.0/sc/<UTC>/<ra>/<dec>``.
SPACECRAFT_PATH = "gw/scsystem/api/v1.0/sc"
IJD_MJD_OFFSET = 51544.0
#: Earth's equatorial radius plus the height below which the atmosphere stops hard X-rays and gamma-rays, km.
EARTH_OCCULTATION_RADIUS_KM = 6378.137 + 100.0
#: Timescales (s) on which SPI-ACS excesses are searched (50 ms is the instrument's bin).
SEARCH_TIMESCALES_S = spiacs.DEFAULT_TIMESCALES_S
#: Timescales (s) of the upper limits: a short burst (50 ms, 1 s) and a long one (8 s), as INTEGRAL's GCN circulars.
LIMIT_TIMESCALES_S = (0.05, 1.0, 8.0)
#: The two typical spectra of the fluence limits.
SPECTRA = ("short-hard", "long-soft")
#: Directions (angle to the pointing axis, deg) over which the limits of an event without position are given.
THETA_GRID_DEG = tuple(float(angle) for angle in np.arange(0.0, 181.0, 5.0))


class TransientError(RuntimeError):
    """A service needed by the follow-up refused or answered something unusable."""


# -- the event -----------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Event:
    """One transient event, as a notice gives it.

    Attributes
    ----------
    name : str
        ``GRB 090510``, ``S190425z``...
    t0_utc : str
        T0, UTC ISOT.
    ra, dec : float or None
        Position (deg, J2000); None for an event without position.
    radius : float or None
        Error-circle radius (deg); None for a point.
    kind : str
        ``GRB``, ``GW``, ``neutrino``, ``FRB`` or ``other``.
    """

    name: str
    t0_utc: str
    ra: float | None
    dec: float | None
    radius: float | None
    kind: str

    @property
    def has_position(self) -> bool:
        """Whether the notice gave a position (RA = DEC = 0 means it did not)."""
        return self.ra is not None and self.dec is not None

    @property
    def t0(self) -> Time:
        """T0 as an astropy Time (UTC)."""
        return Time(self.t0_utc, format="isot", scale="utc")


def event_from(parameters: Mapping[str, Any]) -> Event:
    """The event of a ``transient_followup`` parameter model (or mapping of its values).

    Parameters
    ----------
    parameters : mapping
        ``event_name``, ``t0_utc``, ``RA``, ``DEC``, ``radius``, ``event_kind``.

    Returns
    -------
    Event
        RA = DEC = 0 becomes an event without position.
    """
    ra, dec = float(parameters["RA"]), float(parameters["DEC"])
    position = not (ra == 0.0 and dec == 0.0)
    radius = parameters.get("radius")
    return Event(
        name=str(parameters["event_name"]),
        t0_utc=str(parameters["t0_utc"]),
        ra=ra if position else None,
        dec=dec if position else None,
        radius=float(radius) if radius is not None and position else None,
        kind=str(parameters["event_kind"]),
    )


@contextlib.contextmanager
def _long_cards_allowed():
    """Let FITS writers shorten long card comments silently (CREATOR names this notebook's long name)."""
    from astropy.io.fits.verify import VerifyWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)
        yield


def _stamp(parameters: Mapping[str, Any], event: Event, **keywords: Any) -> dict:
    """FITS provenance cards of the follow-up's products (OBJECT the event, RA_OBJ/DEC_OBJ its position)."""
    from .parameters import to_papermill

    values = to_papermill(parameters) if hasattr(parameters, "model_fields") else dict(parameters)
    if not event.has_position:  # RA = DEC = 0 means "no position" here, not "look the name up"
        values = {name: value for name, value in values.items() if name not in ("RA", "DEC")}
    return provenance.fits_provenance(
        notebook="transient_followup.ipynb",
        parameters=values,
        src_name=event.name,
        ra_deg=event.ra,
        dec_deg=event.dec,
        **keywords,
    )


# -- geometry --------------------------------------------------------------------------------------------------------


def _unit(ra_deg, dec_deg) -> np.ndarray:
    ra, dec = np.radians(np.asarray(ra_deg, float)), np.radians(np.asarray(dec_deg, float))
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=-1)


def _radec(vector: np.ndarray) -> tuple[float, float]:
    vector = np.asarray(vector, float) / np.linalg.norm(vector)
    return float(np.degrees(np.arctan2(vector[1], vector[0])) % 360.0), float(np.degrees(np.arcsin(vector[2])))


def _angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.degrees(np.arccos(np.clip(np.sum(a * b, axis=-1), -1.0, 1.0)))


@dataclasses.dataclass(frozen=True)
class FieldGeometry:
    """An instrument's field of view, as the exposure approximation sees it.

    Attributes
    ----------
    instrument : str
        ``ISGRI``, ``JEM-X`` or ``SPI``.
    shape : str
        ``square`` (sides along the spacecraft Y and Z axes) or ``circle``.
    fully_coded_deg : float
        Side (square) or diameter (circle) of the fully coded field, deg.
    zero_response_deg : float
        Side or diameter where the response reaches zero, deg.
    """

    instrument: str
    shape: str
    fully_coded_deg: float
    zero_response_deg: float

    def coded_fraction(self, y_deg, z_deg) -> np.ndarray:
        """Coded fraction at instrument-frame angles (see :func:`coded_fraction`)."""
        return coded_fraction(self, y_deg, z_deg)


#: The fields of view (docs/transients.md): IBIS/ISGRI 9°×9° fully coded, 29°×29° zero response (squares);
#: JEM-X 4.8° fully coded, 13.2° zero response (diameters); SPI 16° fully coded, 31° zero response (diameters).
INSTRUMENT_FIELDS = {
    "ISGRI": FieldGeometry("ISGRI", "square", 9.0, 29.0),
    "JEM-X": FieldGeometry("JEM-X", "circle", 4.8, 13.2),
    "SPI": FieldGeometry("SPI", "circle", 16.0, 31.0),
}


def coded_fraction(field: FieldGeometry, y_deg, z_deg) -> np.ndarray:
    """Fraction of the detector a source illuminates through the mask, 0 to 1 (the approximation of the docs).

    Square fields (ISGRI): 1 inside the fully coded square, falling linearly along each axis to 0 at the edge
    of the zero-response square, the two axes multiplied (the shadow of a square mask on a square detector).
    Circular fields (JEM-X, SPI): 1 within the fully coded radius, falling linearly with the off-axis angle to 0
    at the zero-response radius.

    Parameters
    ----------
    field : FieldGeometry
        The instrument's field.
    y_deg, z_deg : float or array_like
        Angles from the pointing axis along the spacecraft Y and Z axes, deg (:func:`instrument_frame`).

    Returns
    -------
    numpy.ndarray
        Coded fraction.
    """
    y, z = np.abs(np.asarray(y_deg, float)), np.abs(np.asarray(z_deg, float))
    inner, outer = field.fully_coded_deg / 2.0, field.zero_response_deg / 2.0
    if field.shape == "square":
        along_y = np.clip((outer - y) / (outer - inner), 0.0, 1.0)
        along_z = np.clip((outer - z) / (outer - inner), 0.0, 1.0)
        return along_y * along_z
    off_axis = np.hypot(y, z)
    return np.clip((outer - off_axis) / (outer - inner), 0.0, 1.0)


# -- INTEGRAL at T0 --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Attitude:
    """INTEGRAL's attitude and orbit at one time (the spacecraft service's answer).

    Attributes
    ----------
    utc : str
        The time asked (UTC, whole seconds).
    x, y, z : tuple of float
        (RA, Dec) of the spacecraft axes, deg; X is the pointing axis of ISGRI, JEM-X and SPI.
    integral_ra, integral_dec : float
        Geocentric direction of INTEGRAL, deg.
    distance_km : float
        INTEGRAL's distance from the Earth's centre, km.
    revolution : int or None
        The revolution, when the service gives it.
    answer : dict
        The service's answer as received.
    """

    utc: str
    x: tuple[float, float]
    y: tuple[float, float]
    z: tuple[float, float]
    integral_ra: float
    integral_dec: float
    distance_km: float
    revolution: int | None
    answer: dict

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unit vectors of X, Y and Z (ICRS), Y made orthogonal to X and Z (the service rounds its values)."""
        x = _unit(*self.x)
        z = _unit(*self.z)
        z = z - (z @ x) * x
        z /= np.linalg.norm(z)
        y = np.cross(z, x)
        if y @ _unit(*self.y) < 0:  # a left-handed answer: keep the service's Y
            y = -y
        return x, y, z

    @property
    def earth_angular_radius_deg(self) -> float:
        """Angular radius of the Earth and its absorbing atmosphere seen from INTEGRAL, deg."""
        return float(np.degrees(np.arcsin(min(1.0, EARTH_OCCULTATION_RADIUS_KM / self.distance_km))))


def spacecraft_attitude(session, t0_utc: str, *, ra: float = 0.0, dec: float = 0.0) -> Attitude:
    """INTEGRAL's attitude, direction and distance at T0, from the spacecraft service of the session's dispatcher.

    Parameters
    ----------
    session : integral_workflows.session.Session
        The MMODA connection.
    t0_utc : str
        The time (UTC ISOT; the service is asked at the whole second).
    ra, dec : float
        The direction the service computes its light-travel times for, deg.

    Returns
    -------
    Attitude

    Raises
    ------
    TransientError
        If the service refuses the time (outside the mission) or answers without attitude.
    """
    second = Time(t0_utc, format="isot", scale="utc")
    text = second.strftime("%Y-%m-%dT%H:%M:%S")
    path = f"{SPACECRAFT_PATH}/{text}/{float(ra)!r}/{float(dec)!r}"
    response = session.get(path, what="the spacecraft service")
    if response.status_code != 200:
        raise TransientError(
            f"the spacecraft service refused {text} (HTTP {response.status_code}): {response.text[:300]}"
        )
    try:
        answer = response.json()
        return Attitude(
            utc=text,
            x=(float(answer["scx"]["ra"]), float(answer["scx"]["dec"])),
            y=(float(answer["scy"]["ra"]), float(answer["scy"]["dec"])),
            z=(float(answer["scz"]["ra"]), float(answer["scz"]["dec"])),
            integral_ra=float(answer["ephs"]["ra"]),
            integral_dec=float(answer["ephs"]["dec"]),
            distance_km=float(answer["ephs"]["alt"]),
            revolution=int(answer["revolution"]) if answer.get("revolution") is not None else None,
            answer=answer,
        )
    except (ValueError, KeyError, TypeError) as error:
        raise TransientError(
            f"the spacecraft service answered without attitude at {text}: {response.text[:300]}"
        ) from (error)


def instrument_frame(attitude: Attitude, ra, dec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Angles of sky positions in the spacecraft frame.

    Parameters
    ----------
    attitude : Attitude
    ra, dec : float or array_like
        Positions, deg.

    Returns
    -------
    theta_deg : numpy.ndarray
        Angle to the pointing (X) axis.
    y_deg, z_deg : numpy.ndarray
        Angles from the X axis towards Y and towards Z (``atan2(p·Y, p·X)``, ``atan2(p·Z, p·X)``); for a
        position behind the spacecraft (p·X ≤ 0) they exceed 90°.
    """
    x, y, z = attitude.axes()
    p = _unit(ra, dec)
    along_x, along_y, along_z = p @ x, p @ y, p @ z
    return (
        np.degrees(np.arccos(np.clip(along_x, -1.0, 1.0))),
        np.degrees(np.arctan2(along_y, along_x)),
        np.degrees(np.arctan2(along_z, along_x)),
    )


def earth_occulted(attitude: Attitude, ra, dec) -> np.ndarray:
    """Whether positions are hidden by the Earth (and its atmosphere up to 100 km) as seen from INTEGRAL."""
    earth = -_unit(attitude.integral_ra, attitude.integral_dec)
    return _angle_deg(_unit(ra, dec), earth) < attitude.earth_angular_radius_deg


@dataclasses.dataclass(frozen=True)
class InstrumentExposure:
    """Whether an instrument saw the event's position at T0.

    Attributes
    ----------
    instrument : str
    coded_fraction : float or None
        At the position (None without position).
    best_coded_fraction : float or None
        The largest over the error circle.
    """

    instrument: str
    coded_fraction: float | None
    best_coded_fraction: float | None

    @property
    def exposed(self) -> bool:
        """The position (or some of its error circle) was in the field (coded fraction > 0)."""
        return bool(self.best_coded_fraction)

    @property
    def verdict(self) -> str:
        """``fully coded``, ``partially coded (NN %)``, ``error circle partly in the field`` or ``outside``."""
        if self.coded_fraction is None:
            return "no position"
        if self.coded_fraction >= 1.0:
            return "fully coded"
        if self.coded_fraction > 0:
            return f"partially coded ({100 * self.coded_fraction:.0f} %)"
        if self.exposed:
            return f"error circle partly in the field (up to {100 * self.best_coded_fraction:.0f} %)"
        return "outside the field"


def _circle_points(ra: float, dec: float, radius: float | None, *, rings: int = 6, per_ring: int = 24) -> tuple:
    """The centre and points on rings filling an error circle (the best coded fraction is looked for there)."""
    centre = _unit(ra, dec)
    if not radius:
        return np.array([ra]), np.array([dec])
    north = np.array([0.0, 0.0, 1.0])
    east = np.cross(north, centre)
    east = east / np.linalg.norm(east) if np.linalg.norm(east) > 1e-12 else np.array([0.0, 1.0, 0.0])
    up = np.cross(centre, east)
    vectors = [centre]
    for ring in range(1, rings + 1):
        rho = np.radians(radius * ring / rings)
        for phi in np.linspace(0.0, 2 * np.pi, per_ring, endpoint=False):
            vectors.append(
                np.cos(rho) * centre + np.sin(rho) * (np.cos(phi) * east + np.sin(phi) * up),
            )
    ras, decs = zip(*(_radec(v) for v in vectors), strict=True)
    return np.array(ras), np.array(decs)


def exposure(attitude: Attitude, event: Event) -> dict[str, Any]:
    """Where the event was for INTEGRAL at T0: angle to the pointing, fields, Earth occultation.

    Parameters
    ----------
    attitude : Attitude
    event : Event

    Returns
    -------
    dict
        ``theta_deg``, ``y_deg``, ``z_deg`` (None without position), ``occulted`` (by the Earth),
        ``instruments``: name → :class:`InstrumentExposure` for ISGRI, JEM-X and SPI, and ``earth_radius_deg``.
    """
    result: dict[str, Any] = {"earth_radius_deg": attitude.earth_angular_radius_deg}
    if not event.has_position:
        result.update(theta_deg=None, y_deg=None, z_deg=None, occulted=None)
        result["instruments"] = {name: InstrumentExposure(name, None, None) for name in INSTRUMENT_FIELDS}
        return result
    theta, y, z = (float(value[0]) for value in instrument_frame(attitude, [event.ra], [event.dec]))
    ras, decs = _circle_points(event.ra, event.dec, event.radius)
    _, ys, zs = instrument_frame(attitude, ras, decs)
    front = np.abs(ys) < 90.0  # only directions in front of the spacecraft can be in a field
    instruments = {}
    for name, field in INSTRUMENT_FIELDS.items():
        fractions = np.where(front, field.coded_fraction(ys, zs), 0.0)
        at = float(field.coded_fraction(y, z)) if abs(y) < 90.0 and theta < 90.0 else 0.0
        instruments[name] = InstrumentExposure(name, at, max(at, float(np.max(fractions))))
    result.update(
        theta_deg=theta,
        y_deg=y,
        z_deg=z,
        occulted=bool(earth_occulted(attitude, event.ra, event.dec)),
        instruments=instruments,
    )
    return result


# -- the ScW at T0 ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ActiveScw:
    """The pointing ScW covering T0.

    Attributes
    ----------
    scw_id : str
        With its version (``.001`` consolidated, ``.000`` near-real-time).
    data_level : str
        ``CONS`` when the consolidated archive has it, else ``NRT``.
    tstart, tstop : float
        IJD (TT).
    ra_x, dec_x : float
        Pointing, deg.
    good_isgri : float
        ISGRI good time, s (NaN when the list does not give it).
    revolution : str
    obs_id : str
    """

    scw_id: str
    data_level: str
    tstart: float
    tstop: float
    ra_x: float
    dec_x: float
    good_isgri: float
    revolution: str
    obs_id: str

    def utc_span(self) -> tuple[str, str]:
        """Start and end, UTC ISOT (ms)."""
        times = Time(np.array([self.tstart, self.tstop]) + IJD_MJD_OFFSET, format="mjd", scale="tt").utc
        times.precision = 3
        return str(times[0].isot), str(times[1].isot)


def scw_at(session, t0_utc: str) -> ActiveScw | None:
    """The pointing ScW active at T0 and its data level, from the dispatcher's ScW-list service.

    The consolidated list (CONS) is asked first; a ScW found only in the near-real-time list is ``NRT``.

    Parameters
    ----------
    session : integral_workflows.session.Session
    t0_utc : str
        T0, UTC ISOT.

    Returns
    -------
    ActiveScw or None
        None when no pointing covers T0 (a slew, a perigee passage or a gap).
    """
    from . import scw

    t0 = Time(t0_utc, format="isot", scale="utc")
    t0_ijd = float(t0.tt.mjd - IJD_MJD_OFFSET)
    for data_level in ("CONS", "NRT"):
        # a whole-sky cone: the ScW is wanted wherever it points
        table = scw.query_scws(
            ra=0.0,
            dec=0.0,
            radius=180.0,
            t1=Time(t0_ijd - 1.0 / 86400 + IJD_MJD_OFFSET, format="mjd", scale="tt"),
            t2=Time(t0_ijd + 1.0 / 86400 + IJD_MJD_OFFSET, format="mjd", scale="tt"),
            data_version=data_level,
            session=session,
        )
        covering = [row for row in table if row["tstart"] <= t0_ijd <= row["tstop"] and row["scw_type"] == "pointing"]
        if covering:
            row = covering[0]
            return ActiveScw(
                scw_id=str(row["scw_id"]),
                data_level=data_level,
                tstart=float(row["tstart"]),
                tstop=float(row["tstop"]),
                ra_x=float(row["ra_x"]),
                dec_x=float(row["dec_x"]),
                good_isgri=float(row["good_isgri"]),
                revolution=str(row["revolution"]),
                obs_id=str(row["obs_id"]) if "obs_id" in table.colnames else "",
            )
    return None


# -- SPI-ACS ---------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class SpiAcsFollowUp:
    """The SPI-ACS light curve around T0, its most significant excess and the upper limits.

    Attributes
    ----------
    light_curve : integral_workflows.spiacs.SpiAcsLightCurve or None
        None when SPI-ACS had no usable data.
    background : integral_workflows.spiacs.SpiAcsBackground or None
        The background fitted outside the search window.
    search : integral_workflows.spiacs.ExcessSearch or None
        The most significant excess in the search window, on every timescale.
    limits : astropy.table.Table or None
        3σ upper limits on the counts of a burst starting at T0, per timescale (:func:`spiacs.upper_limits`).
    fluence_limits : dict
        Spectrum → timescale (s) → (lowest, highest) 3σ fluence limit, erg/cm² in 75–2000 keV: one value at
        the event's direction; the range over :data:`THETA_GRID_DEG` for an event without position.
    theta_deg : float or None
        The direction of the limits (None: every direction).
    window : tuple of float
        Search window, s from T0.
    no_data : str
        Why there are no data, when there are none.
    """

    light_curve: Any
    background: Any
    search: Any
    limits: Any
    fluence_limits: dict
    theta_deg: float | None
    window: tuple[float, float]
    no_data: str = ""

    @property
    def has_data(self) -> bool:
        """Whether SPI-ACS gave a light curve."""
        return self.light_curve is not None

    def limits_table(self):
        """The fluence limits as a table: spectrum, timescale, lowest and highest limit (erg/cm²)."""
        from astropy.table import Table

        rows = [
            (spectrum, timescale, low, high)
            for spectrum, by_scale in self.fluence_limits.items()
            for timescale, (low, high) in by_scale.items()
        ]
        return Table(
            rows=rows or None,
            names=("spectrum", "timescale_s", "fluence_ul_min_erg_cm2", "fluence_ul_max_erg_cm2"),
            dtype=(str, float, float, float),
        )


def spiacs_follow_up(
    session, event: Event, parameters: Mapping[str, Any], *, theta_deg: float | None
) -> SpiAcsFollowUp:
    """SPI-ACS around T0: light curve, background, most significant excess, 3σ count and fluence limits.

    Parameters
    ----------
    session : integral_workflows.session.Session
    event : Event
    parameters : mapping
        ``before_s``, ``after_s``, ``time_bin_s``, ``data_level``, ``search_before_s``, ``search_after_s``.
    theta_deg : float or None
        Angle between the event and the pointing axis; None for an event without position (the fluence limits
        are then the range over :data:`THETA_GRID_DEG`).

    Returns
    -------
    SpiAcsFollowUp
        Without light curve (``no_data`` says why) when SPI-ACS had no usable data around T0.
    """
    window = (-float(parameters["search_before_s"]), float(parameters["search_after_s"]))
    try:
        lc = spiacs.fetch_spiacs_lightcurve(
            session,
            t0_utc=event.t0_utc,
            before_s=float(parameters["before_s"]),
            after_s=float(parameters["after_s"]),
            time_bin_s=float(parameters["time_bin_s"]),
            data_level=str(parameters["data_level"]),
        )
    except spiacs.SpiAcsNoData as error:
        log.warning("SPI-ACS: no usable data around %s: %s", event.t0_utc, error)
        return SpiAcsFollowUp(None, None, None, None, {}, theta_deg, window, no_data=str(error))
    span = window[1] - window[0]
    searched = tuple(t for t in SEARCH_TIMESCALES_S if lc.bin_s - 1e-9 <= t <= span) or (lc.bin_s,)
    limited = tuple(t for t in LIMIT_TIMESCALES_S if t >= lc.bin_s - 1e-9) or (lc.bin_s,)
    background = spiacs.fit_background(lc, exclude=window, timescales_s=searched)
    search = spiacs.search_excess(lc, background, timescales_s=searched, window=window)
    limits = spiacs.upper_limits(lc, background, timescales_s=limited, sigma=3.0)
    angles = [theta_deg] if theta_deg is not None else list(THETA_GRID_DEG)
    values: dict[str, dict[float, list[float]]] = {spectrum: {} for spectrum in SPECTRA}
    for angle in angles:
        for row in spiacs.fluence_upper_limits(limits, theta_deg=angle, spectra=SPECTRA):
            values[str(row["spectrum"])].setdefault(float(row["timescale_s"]), []).append(
                float(row["fluence_ul_erg_cm2"])
            )
    fluence_limits = {
        spectrum: {timescale: (min(found), max(found)) for timescale, found in by_scale.items()}
        for spectrum, by_scale in values.items()
    }
    return SpiAcsFollowUp(lc, background, search, limits, fluence_limits, theta_deg, window)


def plot_spiacs(result: SpiAcsFollowUp, event: Event, *, display_bin_s: float = 1.0):
    """The SPI-ACS light curve around T0 (shown in ~1 s bins), its background and the best excess.

    Parameters
    ----------
    result : SpiAcsFollowUp
    event : Event
    display_bin_s : float
        Bin of the picture (the analysis keeps the light curve's own bin).

    Returns
    -------
    matplotlib.figure.Figure or None
        None without data.
    """
    if not result.has_data:
        return None
    return spiacs.plot_light_curve(
        result.light_curve,
        result.background,
        result.search,
        display_bin_s=max(display_bin_s, result.light_curve.bin_s),
        title=f"{event.name} ({event.kind}): INTEGRAL SPI-ACS",
    )


def write_spiacs_products(
    result: SpiAcsFollowUp, event: Event, output_dir: str | Path, *, parameters: Mapping[str, Any], figure=None
) -> list[Product]:
    """Write the SPI-ACS light curve (FITS), its plot and the limit tables; describe them.

    Parameters
    ----------
    result : SpiAcsFollowUp
    event : Event
    output_dir : path-like
    parameters : mapping
        The notebook's parameters (provenance and the product's identity).
    figure : matplotlib.figure.Figure, optional
        The light curve's plot (:func:`plot_spiacs`), saved as ``spiacs_lc.png``.

    Returns
    -------
    list of Product
        The light curve as a gallery ``light_curve`` of instrument ``spi_acs`` (``spiacs_lc.fits``), the
        search (``spiacs_search.ecsv``), count limits (``spiacs_upper_limits.ecsv``) and fluence limits
        (``spiacs_fluence_limits.ecsv``); empty without data.
    """
    if not result.has_data:
        return []
    out = Path(output_dir)
    lc = result.light_curve
    stamp = _stamp(parameters, event)
    path = out / "spiacs_lc.fits"
    with _long_cards_allowed():
        spiacs.to_hdulist(lc, result.background, provenance=stamp).writeto(path, overwrite=True)
    plot = None
    if figure is not None:
        plot = out / "spiacs_lc.png"
        figure.savefig(plot, dpi=110, bbox_inches="tight")
    start, stop = lc.span_s
    products = [
        Product(
            path=path,
            kind="light_curve",
            instrument="spi_acs",
            source=event.name,
            band=(75.0, 10000.0),
            period=((lc.t0 + start * u.s).utc.isot[:19], (lc.t0 + stop * u.s).utc.isot[:19]),
            position=(event.ra, event.dec) if event.has_position else None,
            plot=plot,
            title=f"{event.name} ({event.kind}): SPI-ACS light curve around {event.t0_utc}",
            identity={
                "notebook": "transient_followup",
                "event_name": event.name,
                "t0_utc": event.t0_utc,
                "time_bin": lc.bin_s,
                "data_level": str(parameters["data_level"]),
            },
            details={"time_bin": lc.bin_s, "src_names": [event.name], "event_kind": event.kind},
        )
    ]
    for table, name in (
        (result.search.table, "spiacs_search.ecsv"),
        (result.limits, "spiacs_upper_limits.ecsv"),
        (result.limits_table(), "spiacs_fluence_limits.ecsv"),
    ):
        table.write(out / name, overwrite=True)
        products.append(Product(path=out / name, kind="table"))
    return products


# -- ISGRI -----------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class IsgriFollowUp:
    """The ISGRI image and light curve of the ScW active at T0, at the event's position.

    Attributes
    ----------
    made : bool
        Whether the products were made.
    reason : str
        Why not, when they were not.
    rate, rate_error : float
        Count rate at the position in the ScW image (ct/s) and its 1σ error.
    significance : float
    upper_limit_3sigma : float
        3σ upper limit on the rate at the position, ct/s (rate + 3σ, floored at 3σ).
    sources : astropy.table.Table or None
        Sources detected in the image.
    curve : integral_workflows.lightcurve.LightCurve or None
        The light curve at the position.
    records : dict
        MMODA jobs (label → RunRecord).
    products : list of Product
    """

    made: bool
    reason: str = ""
    rate: float = float("nan")
    rate_error: float = float("nan")
    significance: float = float("nan")
    upper_limit_3sigma: float = float("nan")
    sources: Any = None
    curve: Any = None
    records: dict = dataclasses.field(default_factory=dict)
    products: list = dataclasses.field(default_factory=list)


def isgri_follow_up(
    session,
    event: Event,
    parameters: Mapping[str, Any],
    scw: ActiveScw | None,
    isgri: InstrumentExposure,
    output_dir: str | Path,
) -> IsgriFollowUp:
    """The ISGRI image and light curve of the ScW at T0, when the event's position was in the IBIS field.

    One ``isgri_image`` job and one ``isgri_lc`` job (the event's position and the catalogue sources the
    image detects extracted together, as a coded-mask analysis needs) of that single ScW, in
    ``E1_keV``–``E2_keV``, the light curve binned to ``lc_time_bin``.

    Parameters
    ----------
    session : integral_workflows.session.Session
    event : Event
    parameters : mapping
        ``E1_keV``, ``E2_keV``, ``lc_time_bin`` and the notebook's other parameters (provenance).
    scw : ActiveScw or None
    isgri : InstrumentExposure
        ISGRI's exposure of the event (:func:`exposure`).
    output_dir : path-like

    Returns
    -------
    IsgriFollowUp
        ``made`` False (with the reason) when there is no position, no pointing at T0, no ISGRI good time, or
        the position was outside the IBIS field.
    """
    import matplotlib.pyplot as plt
    from astropy.coordinates import SkyCoord
    from astropy.wcs.utils import proj_plane_pixel_scales

    from . import catalog, lightcurve, mosaic, queries
    from .parameters.models import ObservationParameters
    from .parameters.validation import validate_model

    if not event.has_position:
        return IsgriFollowUp(False, "the event has no position")
    if scw is None:
        return IsgriFollowUp(False, "no pointing ScW at T0 (slew, perigee passage or gap)")
    if not isgri.exposed:
        return IsgriFollowUp(False, "the position was outside the IBIS field")
    if not scw.good_isgri > 0:
        return IsgriFollowUp(False, f"ScW {scw.scw_id} has no ISGRI good time")
    p = validate_model(
        ObservationParameters,
        {
            "src_name": event.name,
            "RA": event.ra,
            "DEC": event.dec,
            "instrument": "isgri",
            "E1_keV": float(parameters["E1_keV"]),
            "E2_keV": float(parameters["E2_keV"]),
            "lc_time_bin": float(parameters["lc_time_bin"]),
            "s_max": 1,
        },
        where="the ISGRI jobs of the ScW at T0",
    )
    out = Path(output_dir)
    coord = SkyCoord(event.ra * u.deg, event.dec * u.deg)
    image_record = session.fetch(
        queries.image_request(p, ra=event.ra, dec=event.dec), [scw.scw_id], s_max=1, description="ISGRI image"
    )
    result = IsgriFollowUp(True, records={"isgri_image": image_record})
    sky = mosaic.SkyMosaic.from_data_collection(image_record.pieces[0].data_collection())
    field = catalog.default_catalog(scw.ra_x, scw.dec_x, 20.0)
    sources = mosaic.find_sources(sky, threshold=p.detection_threshold, catalog=field, n_images=1)
    rate, error = mosaic.point_source_rate(sky, coord)
    result.rate, result.rate_error = float(rate), float(error)
    result.significance = float(rate / error) if error > 0 else float("nan")
    result.upper_limit_3sigma = float(max(rate, 0.0) + 3.0 * error)
    result.sources = sources
    stamp = _stamp(parameters, event)
    with _long_cards_allowed():
        sky.write(out / "isgri_image.fits", provenance=stamp, overwrite=True)
    figure = mosaic.plot(
        sky, sources=sources, title=f"{event.name}: ISGRI {p.E1_keV:g}-{p.E2_keV:g} keV, ScW {scw.scw_id}"
    )
    x, y = sky.wcs.world_to_pixel(coord)
    # the error circle, drawn at least 0.3° wide so that it shows on 5′ pixels
    radius_px = max(event.radius or 0.0, 0.3) / float(proj_plane_pixel_scales(sky.wcs.celestial)[0])
    figure.axes[0].add_patch(plt.Circle((x, y), radius_px, fill=False, color="cyan", lw=1.2))
    figure.savefig(out / "isgri_image.png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    sources.write(out / "isgri_sources.ecsv", overwrite=True)
    band = (p.E1_keV, p.E2_keV)
    names = {"src_names": [str(name) for name in sources["name"]]}
    image = _isgri_product(
        out / "isgri_image.fits", "image", event, scw, band, details=names, sources=out / "isgri_sources.ecsv"
    )
    result.products.append(image)

    named = sources[~np.asarray(sources["new_source"], dtype=bool)] if len(sources) else sources
    extraction = catalog.sources_table(
        [event.name, *[str(n) for n in named["name"]]],
        [event.ra, *[float(v) for v in named["ra"]]],
        [event.dec, *[float(v) for v in named["dec"]]],
    )
    lc_record = session.fetch(
        queries.light_curve_request(
            p,
            ra=event.ra,
            dec=event.dec,
            selected_catalog=catalog.to_api_catalog(extraction),
            time_bin_s=float(parameters["lc_time_bin"]),
        ),
        [scw.scw_id],
        s_max=1,
        description="ISGRI light curve",
    )
    result.records["isgri_lc"] = lc_record
    curve = lightcurve.light_curves_from_pieces(lc_record.pieces, [event.name]).get(event.name)
    if curve is not None:
        result.curve = curve
        with _long_cards_allowed():
            curve.write(out / "isgri_lc.fits", provenance=stamp, overwrite=True)
        figure = lightcurve.plot(
            curve,
            path=out / "isgri_lc.png",
            time_axis="mjd",
            title=f"{event.name}: ISGRI {p.E1_keV:g}-{p.E2_keV:g} keV, ScW {scw.scw_id}",
        )
        plt.close(figure)
        time_bin = {"time_bin": float(parameters["lc_time_bin"])}
        light_curve = _isgri_product(
            out / "isgri_lc.fits", "light_curve", event, scw, band, identity=time_bin, details=time_bin
        )
        result.products.append(light_curve)
    return result


def _isgri_product(
    path: Path,
    kind: str,
    event: Event,
    scw: ActiveScw,
    band: tuple[float, float],
    *,
    identity: Mapping[str, Any] | None = None,
    details: Mapping[str, Any],
    **fields: Any,
) -> Product:
    """An ISGRI product of the ScW at T0 (its plot beside it as ``.png``), named by the event, the ScW and the band.

    ``identity`` and ``details`` add to what every such product has (notebook, event, ScW, band; revolution);
    ``fields`` are further :class:`Product` fields.
    """
    return Product(
        path=path,
        kind=kind,
        instrument="isgri",
        source=event.name,
        band=band,
        period=scw.utc_span(),
        position=(event.ra, event.dec),
        plot=path.with_suffix(".png"),
        title=f"{event.name} ISGRI {kind.replace('_', ' ')} of ScW {scw.scw_id}",
        identity={
            "notebook": "transient_followup",
            "event_name": event.name,
            "scw": scw.scw_id,
            "E1_keV": band[0],
            "E2_keV": band[1],
            **(identity or {}),
        },
        details={**details, "revolutions": [scw.revolution]},
        **fields,
    )


# -- the field sketch ------------------------------------------------------------------------------------------------


def plot_fields(attitude: Attitude, event: Event, *, path: str | Path | None = None, simulated: bool = False):
    """The instruments' fields in the spacecraft frame (Y, Z angles from the pointing) and the event's position.

    Parameters
    ----------
    attitude : Attitude
    event : Event
    path : path-like, optional
        Save the figure there.
    simulated : bool
        Mark the plot ``[SIMULATED DATA]``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, Rectangle

    figure, ax = plt.subplots(figsize=(6, 6), layout="constrained")
    colours = {"ISGRI": "tab:blue", "JEM-X": "tab:green", "SPI": "tab:purple"}
    for name, field in INSTRUMENT_FIELDS.items():
        for size, style in ((field.fully_coded_deg, "-"), (field.zero_response_deg, ":")):
            if field.shape == "square":
                patch = Rectangle((-size / 2, -size / 2), size, size, fill=False, ls=style, color=colours[name])
            else:
                patch = Circle((0, 0), size / 2, fill=False, ls=style, color=colours[name])
            ax.add_patch(patch)
        ax.plot([], [], color=colours[name], label=f"{name}: fully coded (—), zero response (···)")
    lim = 20.0
    if event.has_position:
        theta, y, z = (float(v[0]) for v in instrument_frame(attitude, [event.ra], [event.dec]))
        if theta < 90.0 and max(abs(y), abs(z)) < lim:
            ax.plot(y, z, "r*", markersize=14, label=f"{event.name} (θ = {theta:.1f}°)")
            if event.radius:
                ax.add_patch(Circle((y, z), event.radius, fill=False, color="r", lw=1))
        else:
            ax.text(0, -lim * 0.9, f"{event.name}: θ = {theta:.1f}° from the pointing", ha="center", color="r")
    else:
        ax.text(0, -lim * 0.9, f"{event.name}: no position", ha="center", color="r")
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("angle towards spacecraft Y (deg)")
    ax.set_ylabel("angle towards spacecraft Z (deg)")
    title = f"INTEGRAL fields at {attitude.utc}, pointing RA {attitude.x[0]:.2f}°, Dec {attitude.x[1]:.2f}°"
    ax.set_title(title + ("  [SIMULATED DATA]" if simulated else ""), fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    if path is not None:
        figure.savefig(path, dpi=110, bbox_inches="tight")
    return figure


# -- summary ---------------------------------------------------------------------------------------------------------


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def summary_record(
    event: Event,
    attitude: Attitude,
    where: Mapping[str, Any],
    scw: ActiveScw | None,
    spiacs_result: SpiAcsFollowUp,
    isgri: IsgriFollowUp,
    *,
    simulated: bool,
    backend: str = "",
) -> dict:
    """Everything the follow-up found, as one JSON-safe record (``transient_summary.json``).

    Parameters
    ----------
    event : Event
    attitude : Attitude
    where : mapping
        :func:`exposure`'s answer.
    scw : ActiveScw or None
    spiacs_result : SpiAcsFollowUp
    isgri : IsgriFollowUp
    simulated : bool
        The data come from the local MMODA's simulated sky.
    backend : str
        The dispatcher's identity (``Session.backend_id``).

    Returns
    -------
    dict
    """
    instruments = {
        name: {
            "coded_fraction": _finite(exposed.coded_fraction),
            "best_coded_fraction_in_error_circle": _finite(exposed.best_coded_fraction),
            "exposed": exposed.exposed if event.has_position else None,
            "verdict": exposed.verdict,
        }
        for name, exposed in where["instruments"].items()
    }
    spiacs_part: dict[str, Any] = {
        "data": spiacs_result.has_data,
        "no_data_reason": spiacs_result.no_data or None,
        "search_window_s": list(spiacs_result.window),
        "limits_direction": (
            f"theta = {spiacs_result.theta_deg:.1f} deg"
            if spiacs_result.theta_deg is not None
            else "range over every direction (no position)"
        ),
        "fluence_band_keV": list(spiacs.FLUENCE_BAND_KEV),
    }
    if spiacs_result.has_data:
        best, limits = spiacs_result.search.best, spiacs_result.limits
        spiacs_part.update(
            time_bin_s=spiacs_result.light_curve.bin_s,
            excess_variance=_finite(spiacs_result.background.excess_variance),
            best_excess={key: _finite(value) for key, value in best.as_dict().items()},
            detected=bool(spiacs_result.search.detected),
            detection_threshold_post_trials_sigma=_finite(spiacs_result.search.threshold_sigma),
            count_upper_limits_3sigma={
                f"{float(t):g}": _finite(v) for t, v in zip(limits["timescale_s"], limits["ul_counts"], strict=True)
            },
            fluence_upper_limits_3sigma_erg_cm2={
                spectrum: {f"{t:g}": [_finite(low), _finite(high)] for t, (low, high) in by_scale.items()}
                for spectrum, by_scale in spiacs_result.fluence_limits.items()
            },
        )
    return {
        "event": {
            "name": event.name,
            "kind": event.kind,
            "t0_utc": event.t0_utc,
            "ra_deg": event.ra,
            "dec_deg": event.dec,
            "error_radius_deg": event.radius,
        },
        "integral": {
            "time_utc": attitude.utc,
            "revolution": attitude.revolution,
            "pointing_ra_deg": attitude.x[0],
            "pointing_dec_deg": attitude.x[1],
            "z_axis_ra_deg": attitude.z[0],
            "z_axis_dec_deg": attitude.z[1],
            "geocentric_ra_deg": attitude.integral_ra,
            "geocentric_dec_deg": attitude.integral_dec,
            "distance_km": attitude.distance_km,
            "earth_angular_radius_deg": attitude.earth_angular_radius_deg,
        },
        "position_in_spacecraft_frame": {
            "theta_deg": _finite(where["theta_deg"]),
            "y_deg": _finite(where["y_deg"]),
            "z_deg": _finite(where["z_deg"]),
            "earth_occulted": where["occulted"],
        },
        "instruments": instruments,
        "scw": None
        if scw is None
        else {
            "scw_id": scw.scw_id,
            "data_level": scw.data_level,
            "start_utc": scw.utc_span()[0],
            "end_utc": scw.utc_span()[1],
            "pointing_ra_deg": scw.ra_x,
            "pointing_dec_deg": scw.dec_x,
            "good_isgri_s": _finite(scw.good_isgri),
            "revolution": scw.revolution,
            "obs_id": scw.obs_id,
        },
        "spiacs": spiacs_part,
        "isgri": {
            "made": isgri.made,
            "reason": isgri.reason or None,
            "rate_ct_s": _finite(isgri.rate),
            "rate_error_ct_s": _finite(isgri.rate_error),
            "significance": _finite(isgri.significance),
            "upper_limit_3sigma_ct_s": _finite(isgri.upper_limit_3sigma),
            "detected_sources": [str(name) for name in isgri.sources["name"]] if isgri.sources is not None else [],
        },
        "simulated": bool(simulated),
        "backend": backend,
    }


def _fmt(value: float | None, spec: str = ".2g") -> str:
    if value is None:
        return "n/a"
    text = f"{value:{spec}}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


def summary_text(record: Mapping[str, Any]) -> str:
    """A GCN-circular-style text of a :func:`summary_record`.

    Parameters
    ----------
    record : mapping
        From :func:`summary_record`.

    Returns
    -------
    str
        Title, subject and a few paragraphs: INTEGRAL's orientation and distance, the instruments' exposure, the
        ScW, the SPI-ACS result (excess or limits) and ISGRI's.
    """
    event, integral, frame = record["event"], record["integral"], record["position_in_spacecraft_frame"]
    spiacs_part, isgri = record["spiacs"], record["isgri"]
    lines = ["TITLE:   GCN CIRCULAR (draft)"]
    lines.append(f"SUBJECT: {event['name']}: INTEGRAL observation ({event['kind']})")
    if record["simulated"]:
        lines.append("NOTE:    SIMULATED DATA from the local MMODA; not INTEGRAL archive data.")
    lines.append("")
    if event["ra_deg"] is None:
        where = "The event has no position; INTEGRAL's orientation is given for reference."
    else:
        circle = f" (error radius {event['error_radius_deg']:g} deg)" if event["error_radius_deg"] else ""
        where = (
            f"At T0 the position RA = {event['ra_deg']:.3f}, Dec = {event['dec_deg']:.3f} deg{circle} was "
            f"{frame['theta_deg']:.1f} deg from INTEGRAL's pointing axis"
            + ("; it was hidden by the Earth." if frame["earth_occulted"] else ", not occulted by the Earth.")
        )
    lines.append(
        f"At T0 = {event['t0_utc']} UTC INTEGRAL (revolution {integral['revolution']}) was "
        f"{integral['distance_km']:.0f} km from the Earth's centre, pointing at RA = {integral['pointing_ra_deg']:.3f}, "
        f"Dec = {integral['pointing_dec_deg']:.3f} deg. {where}"
    )
    if event["ra_deg"] is None:
        lines.append("Field of view: unknown without a position.")
    else:
        exposures = ", ".join(f"{name} {facts['verdict']}" for name, facts in record["instruments"].items())
        lines.append(f"Field of view: {exposures}.")
    scw = record["scw"]
    if scw is None:
        lines.append("No pointing science window covers T0 (slew, perigee passage or gap).")
    else:
        lines.append(
            f"Science window {scw['scw_id']} ({scw['start_utc']} to {scw['end_utc']}) covers T0; its data are "
            f"{'consolidated (CONS)' if scw['data_level'] == 'CONS' else 'near-real-time (NRT)'}."
        )
    lines.append("")
    if not spiacs_part["data"]:
        lines.append(f"SPI-ACS has no usable data around T0 ({spiacs_part['no_data_reason']}).")
    else:
        window, best = spiacs_part["search_window_s"], spiacs_part["best_excess"]
        lines.append(
            f"We searched the INTEGRAL SPI-ACS light curve ({spiacs_part['time_bin_s']:g} s bins) from "
            f"T0{window[0]:+g} s to T0{window[1]:+g} s on timescales from {spiacs_part['time_bin_s']:g} to 10 s, "
            f"above a polynomial background fitted outside that interval (excess variance "
            f"{_fmt(spiacs_part['excess_variance'], '.2f')} times Poisson). The most significant excess is "
            f"{best['excess']:.0f} ± {best['sigma_counts']:.0f} counts on {best['timescale_s']:g} s from "
            f"T0{best['start_s']:+.2f} s: {best['significance']:.1f} sigma before trials, "
            f"{best['post_trial_significance']:.1f} sigma after trials."
        )
        threshold = spiacs_part["detection_threshold_post_trials_sigma"]
        lines.append(
            f"This is a detection (≥ {threshold:g} sigma after trials): a candidate counterpart in SPI-ACS."
            if spiacs_part["detected"]
            else f"No significant excess is found (threshold {threshold:g} sigma after trials)."
        )
        fluence, parts = spiacs_part["fluence_upper_limits_3sigma_erg_cm2"], []
        for spectrum, timescale in (("short-hard", "1"), ("long-soft", "8")):
            low, high = fluence.get(spectrum, {}).get(timescale, [None, None])
            if low is None:
                continue
            value = _fmt(low) if high is None or abs(high - low) <= 1e-3 * abs(low) else f"{_fmt(low)} to {_fmt(high)}"
            parts.append(f"{value} erg/cm2 for a {timescale} s burst with a {spectrum} spectrum")
        if parts:
            lines.append(
                f"3-sigma upper limits on the 75-2000 keV fluence of a burst starting at T0 "
                f"({spiacs_part['limits_direction']}): " + "; ".join(parts) + "."
            )
        counts = spiacs_part["count_upper_limits_3sigma"]
        lines.append(
            "3-sigma upper limits on the counts: "
            + ", ".join(f"{_fmt(value, '.0f')} on {scale} s" for scale, value in counts.items())
            + "."
        )
    lines.append("")
    if isgri["made"]:
        lines.append(
            f"IBIS/ISGRI: in science window {scw['scw_id']} the rate at the position is "
            f"{_fmt(isgri['rate_ct_s'], '.3f')} ± {_fmt(isgri['rate_error_ct_s'], '.3f')} ct/s "
            f"({_fmt(isgri['significance'], '.1f')} sigma); 3-sigma upper limit {_fmt(isgri['upper_limit_3sigma_ct_s'], '.3f')} ct/s."
        )
    else:
        lines.append(f"IBIS/ISGRI: no image or light curve ({isgri['reason']}).")
    lines.append(
        "Approximations: fields of view as squares (ISGRI) or circles (JEM-X, SPI) with linear coded fraction; "
        "SPI-ACS fluence limits from a typical response at the angle to the pointing axis (docs/transients.md)."
    )
    return "\n".join(lines) + "\n"


def write_summary(record: Mapping[str, Any], output_dir: str | Path) -> list[Product]:
    """Write ``transient_summary.txt`` (GCN-style text) and ``transient_summary.json`` (the record).

    Parameters
    ----------
    record : mapping
        From :func:`summary_record`.
    output_dir : path-like

    Returns
    -------
    list of Product
        The two files (kind ``table``).
    """
    out = Path(output_dir)
    text_path, json_path = out / "transient_summary.txt", out / "transient_summary.json"
    text_path.write_text(summary_text(record), encoding="utf-8")
    json_path.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return [Product(path=text_path, kind="table"), Product(path=json_path, kind="table")]
