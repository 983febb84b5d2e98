"""INTEGRAL at T0: the spacecraft attitude, the event in the instruments' frame, Earth occultation, exposure."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from astropy.time import Time

from .event import Event, TransientError
from .geometry import INSTRUMENT_FIELDS, _angle_deg, _radec, _unit

__all__ = [
    "SPACECRAFT_PATH",
    "Attitude",
    "InstrumentExposure",
    "earth_occulted",
    "exposure",
    "instrument_frame",
    "spacecraft_attitude",
]


#: The MMODA spacecraft service (attitude and orbit at a time): ``<dispatcher>/gw/scsystem/api/v1.0/sc/<UTC>/<ra>/<dec>``.
SPACECRAFT_PATH = "gw/scsystem/api/v1.0/sc"
#: Earth's equatorial radius plus the height below which the atmosphere stops hard X-rays and gamma-rays, km.
EARTH_OCCULTATION_RADIUS_KM = 6378.137 + 100.0


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
