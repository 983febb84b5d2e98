"""From a source name to sky coordinates.

MMODA's long-term INTEGRAL services take ``src_name``, ``RA`` and ``DEC``;
RA = DEC = 0 means "look the name up" (:func:`coordinates_for`). Names are
looked up in Simbad (astroquery) when the machine is online, else in a
catalogue shipped with the package: the names and positions of the public
ISDC INTEGRAL reference catalogue (version 43, the sources flagged for ISGRI,
JEM-X or SPI; provenance in the file's header).

Solar-system bodies have no fixed position: they are recognised and returned
as moving targets, whose ephemerides are computed elsewhere.

:func:`position_problems` stops a ``src_name`` whose known position (the
built-in catalogue's, or a body's track) is farther than ``radius`` from
non-zero RA/DEC: such a run would select one field and label it another.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import logging
import os
import re
import socket
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = [
    "Target",
    "TargetNotFoundError",
    "MovingTargetError",
    "resolve_name",
    "coordinates_for",
    "position_problems",
    "is_solar_system_body",
    "is_online",
    "builtin_catalogue_path",
    "write_builtin_catalogue",
    "SOLAR_SYSTEM_BODIES",
]

#: The bodies recognised as moving targets, spelled as they are reported.
SOLAR_SYSTEM_BODIES = ("Sun", "Moon", "Mercury", "Venus", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune")

#: Where an answer came from (:attr:`Target.source`).
SOURCE_SIMBAD = "simbad"
SOURCE_BUILTIN = "builtin"
SOURCE_PARAMETERS = "parameters"
SOURCE_SOLAR_SYSTEM = "solar_system"

#: Set to 1/true/yes to never try the network (e.g. on a laptop in a train with a flaky captive portal).
OFFLINE_ENV = "INTEGRAL_WORKFLOWS_OFFLINE"
#: The host probed to decide whether Simbad can be asked.
SIMBAD_HOST = ("simbad.cds.unistra.fr", 443)

BUILTIN_CATALOGUE_NAME = "integral_sources.ecsv"


class TargetNotFoundError(LookupError):
    """A name is neither a solar-system body nor known to Simbad or the built-in catalogue.

    Attributes
    ----------
    name : str
        The name looked up.
    suggestions : tuple of str
        Close names of the built-in catalogue.
    """

    def __init__(self, message: str, *, name: str, suggestions: tuple[str, ...] = ()):
        super().__init__(message)
        self.name = name
        self.suggestions = suggestions


class MovingTargetError(ValueError):
    """A fixed position was asked of a moving target (a solar-system body)."""


@dataclasses.dataclass(frozen=True)
class Target:
    """A target and where its position comes from.

    Attributes
    ----------
    name : str
        The name (the catalogue's spelling when found there).
    ra, dec : float or None
        J2000 position in degrees; None for a moving target.
    source : str
        ``'simbad'``, ``'builtin'`` (the shipped catalogue), ``'parameters'``
        (RA/DEC given by the user) or ``'solar_system'`` (a moving body).
    """

    name: str
    ra: float | None
    dec: float | None
    source: str

    @property
    def is_moving(self) -> bool:
        """True for a solar-system body, which has no fixed position."""
        return self.source == SOURCE_SOLAR_SYSTEM

    def position(self) -> tuple[float, float]:
        """Return ``(ra, dec)`` in degrees.

        Raises
        ------
        MovingTargetError
            For a solar-system body, whose position depends on time.
        """
        if self.ra is None or self.dec is None:
            raise MovingTargetError(
                f"{self.name} is a solar-system body: it has no fixed position, "
                "its ephemeris must be computed for the time of each ScW"
            )
        return self.ra, self.dec


def _normalise(name: str) -> str:
    """Key for matching names regardless of case, spaces and underscores ("1A_0535+262" = "1a 0535+262")."""
    return re.sub(r"[\s_]+", "", name).casefold()


def is_solar_system_body(name: str) -> bool:
    """Return True if ``name`` is the Sun, the Moon or a planet (Mercury to Neptune).

    Parameters
    ----------
    name : str
        A target name, in any case.
    """
    return _normalise(name) in {_normalise(body) for body in SOLAR_SYSTEM_BODIES}


def _solar_system_target(name: str) -> Target:
    canonical = next(body for body in SOLAR_SYSTEM_BODIES if _normalise(body) == _normalise(name))
    return Target(name=canonical, ra=None, dec=None, source=SOURCE_SOLAR_SYSTEM)


# -- online check --------------------------------------------------------------------------------------------------


def _probe_network(address: tuple[str, int], timeout_s: float) -> bool:
    """Try a TCP connection to ``address`` within ``timeout_s``, DNS included."""
    outcome = []

    def attempt():
        try:
            with socket.create_connection(address, timeout=timeout_s):
                outcome.append(True)
        except OSError:
            outcome.append(False)

    # getaddrinfo ignores socket timeouts and can hang for many seconds without a network: bound it with a thread.
    thread = threading.Thread(target=attempt, name="integral-workflows-online-probe", daemon=True)
    thread.start()
    thread.join(timeout_s)
    return bool(outcome and outcome[0])


def is_online(*, timeout_s: float = 2.0) -> bool:
    """Return True if Simbad looks reachable.

    Parameters
    ----------
    timeout_s : float
        Longest wait for the answer, seconds.

    Notes
    -----
    ``$INTEGRAL_WORKFLOWS_OFFLINE=1`` answers False without trying.
    """
    if os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes"}:
        return False
    online = _probe_network(SIMBAD_HOST, timeout_s)
    log.debug("online check (%s:%d): %s", *SIMBAD_HOST, online)
    return online


# -- the built-in catalogue ----------------------------------------------------------------------------------------


def builtin_catalogue_path() -> Path:
    """Path of the shipped catalogue of INTEGRAL sources (names and positions)."""
    return Path(__file__).parent / "data" / BUILTIN_CATALOGUE_NAME


@functools.lru_cache(maxsize=1)
def _builtin_index() -> dict[str, tuple[str, float, float]]:
    from astropy.table import Table

    table = Table.read(builtin_catalogue_path(), format="ascii.ecsv")
    index = {}
    for name, ra, dec in zip(table["NAME"], table["RA"], table["DEC"]):
        index[_normalise(str(name))] = (str(name), float(ra), float(dec))
    return index


def _suggestions(name: str, index: Mapping[str, tuple[str, float, float]]) -> tuple[str, ...]:
    close = difflib.get_close_matches(_normalise(name), list(index), n=5, cutoff=0.6)
    return tuple(index[key][0] for key in close)


def _lookup_builtin(name: str) -> Target | None:
    found = _builtin_index().get(_normalise(name))
    if found is None:
        return None
    catalogue_name, ra, dec = found
    return Target(name=catalogue_name, ra=ra, dec=dec, source=SOURCE_BUILTIN)


def write_builtin_catalogue(reference_catalogue: str | Path, *, destination: str | Path | None = None) -> Path:
    """Build the shipped name → position catalogue from the ISDC reference catalogue subset.

    Parameters
    ----------
    reference_catalogue : str or Path
        ``isdc_ref_cat_0043_subset.ecsv`` (columns NAME, RA_OBJ, DEC_OBJ).
    destination : str or Path, optional
        Output ECSV; the package's own file by default.

    Returns
    -------
    Path
        The file written.

    Notes
    -----
    The reference catalogue stores positions as float32; they are written
    with their shortest decimal form (e.g. 83.63321), which is what the
    catalogue means, rather than the float64 widening of the float32.
    """
    import numpy as np
    from astropy.table import Table

    reference_catalogue = Path(reference_catalogue)
    destination = Path(destination) if destination is not None else builtin_catalogue_path()
    source = Table.read(reference_catalogue, format="ascii.ecsv")
    table = Table()
    table["NAME"] = [str(name) for name in source["NAME"]]
    table["RA"] = [float(np.format_float_positional(np.float32(v), unique=True)) for v in source["RA_OBJ"]]
    table["DEC"] = [float(np.format_float_positional(np.float32(v), unique=True)) for v in source["DEC_OBJ"]]
    table["RA"].unit = "deg"
    table["DEC"].unit = "deg"
    table["RA"].description = "right ascension, J2000"
    table["DEC"].description = "declination, J2000"
    table.meta["description"] = (
        "Names and positions of the INTEGRAL sources used by integral_workflows.targets "
        "to resolve source names offline."
    )
    table.meta["source"] = (
        "ISDC INTEGRAL reference catalogue gnrl_refr_cat version 43 (2019-06-13), a public "
        "ISDC product; the subset of sources flagged for ISGRI, JEM-X or SPI, as committed in "
        "the public repository gbelanger/grid-processing-integral (refcat/) and copied to "
        f"shared/data/{reference_catalogue.name}. Columns kept: NAME, RA_OBJ -> RA, "
        "DEC_OBJ -> DEC."
    )
    table.meta["source_sha256"] = hashlib.sha256(reference_catalogue.read_bytes()).hexdigest()
    table.meta["built_by"] = "integral_workflows.targets.write_builtin_catalogue"
    table.sort("NAME")
    destination.parent.mkdir(parents=True, exist_ok=True)
    table.write(destination, format="ascii.ecsv", overwrite=True)
    _builtin_index.cache_clear()
    log.info("wrote %d sources to %s", len(table), destination)
    return destination


# -- Simbad --------------------------------------------------------------------------------------------------------


def _query_simbad(name: str) -> Target | None:
    """Ask Simbad for ``name``; None if Simbad does not know it."""
    import numpy as np
    from astroquery.simbad import Simbad

    table = Simbad.query_object(name)
    if table is None or len(table) == 0:
        return None
    columns = {column.lower(): column for column in table.colnames}
    ra, dec = table[columns["ra"]][0], table[columns["dec"]][0]
    if np.ma.is_masked(ra) or np.ma.is_masked(dec):
        return None
    if isinstance(ra, str):
        # astroquery < 0.4.8 returned sexagesimal strings (hours, degrees).
        from astropy import units as u
        from astropy.coordinates import SkyCoord

        coordinates = SkyCoord(ra, dec, unit=(u.hourangle, u.deg))
        ra, dec = coordinates.ra.deg, coordinates.dec.deg
    return Target(name=name, ra=float(ra), dec=float(dec), source=SOURCE_SIMBAD)


# -- public API ----------------------------------------------------------------------------------------------------


def resolve_name(name: str, *, online: bool | None = None) -> Target:
    """Return the position of a named target.

    Parameters
    ----------
    name : str
        Source name; case, spaces and underscores do not matter ("crab",
        "CRAB", "1A_0535+262").
    online : bool, optional
        Ask Simbad (True) or only the built-in catalogue (False); by default
        Simbad is asked if :func:`is_online` says it is reachable.

    Returns
    -------
    Target
        With ``source`` saying where the answer comes from. Solar-system
        bodies come back as moving targets (``ra``/``dec`` None).

    Raises
    ------
    TargetNotFoundError
        If the name is unknown; the message lists close names.
    """
    if not isinstance(name, str) or not name.strip():
        raise TargetNotFoundError(f"src_name must be a non-empty string, got {name!r}", name=str(name))
    name = name.strip()
    if is_solar_system_body(name):
        log.info("%s is a solar-system body: a moving target without fixed position", name)
        return _solar_system_target(name)
    if online is None:
        online = is_online()
    asked_simbad = False
    if online:
        try:
            found = _query_simbad(name)
            asked_simbad = True
        except Exception as error:  # noqa: BLE001 - any failure of the remote service falls back to the catalogue
            log.warning("Simbad lookup of %r failed (%s); using the built-in catalogue", name, error)
            found = None
        if found is not None:
            log.info("%s: RA %.5f, DEC %.5f (Simbad)", name, found.ra, found.dec)
            return found
    found = _lookup_builtin(name)
    if found is not None:
        log.info("%s: RA %.5f, DEC %.5f (built-in ISDC catalogue)", found.name, found.ra, found.dec)
        return found
    suggestions = _suggestions(name, _builtin_index())
    where = "Simbad nor the built-in catalogue" if asked_simbad else "the built-in catalogue (offline)"
    hint = f"; close names: {', '.join(suggestions)}" if suggestions else ""
    raise TargetNotFoundError(
        f"unknown source name {name!r}: neither {where} knows it{hint}. "
        "Give RA and DEC (deg) explicitly to use a position.",
        name=name,
        suggestions=suggestions,
    )


def coordinates_for(parameters: Mapping[str, Any], *, online: bool | None = None) -> Target:
    """Apply the MMODA rule: RA = DEC = 0 means "look src_name up", else use RA/DEC.

    Parameters
    ----------
    parameters : mapping
        With ``src_name``, ``RA`` and ``DEC`` (a parameter model works).
    online : bool, optional
        Passed to :func:`resolve_name`.

    Returns
    -------
    Target
        ``source='parameters'`` when RA/DEC were given.

    Raises
    ------
    TargetNotFoundError
        If the name must be looked up and is unknown.
    """
    name, ra, dec = parameters["src_name"], float(parameters["RA"]), float(parameters["DEC"])
    if ra == 0.0 and dec == 0.0:
        return resolve_name(name, online=online)
    if is_solar_system_body(name):
        log.warning("%s is a solar-system body but fixed RA/DEC were given: using RA %.5f, DEC %.5f", name, ra, dec)
    return Target(name=name, ra=ra, dec=dec, source=SOURCE_PARAMETERS)


# -- src_name against RA/DEC ---------------------------------------------------------------------------------------

#: Most points of a body's track over T1-T2 (at most one every 6 h); the sampling's gaps widen the margin instead.
_TRACK_POINTS = 2000
_TRACK_STEP_DAYS = 0.25
#: INTEGRAL's largest distance from the Earth's centre (apogee ~153 000 km, with room): bounds a body's parallax.
_INTEGRAL_MAX_DISTANCE_KM = 160_000.0


def _separation_deg(ra1, dec1, ra2, dec2):
    import numpy as np

    ra1, dec1, ra2, dec2 = (np.radians(np.asarray(value, dtype=float)) for value in (ra1, dec1, ra2, dec2))
    # Haversine: exact at small angles, where the cosine formula loses digits.
    half = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(half, 0.0, 1.0))))


@functools.lru_cache(maxsize=32)
def _body_track(body: str, t1: str, t2: str) -> tuple[Any, Any, float]:
    """A body's geocentric track over T1-T2 (UTC ISOT): RA, Dec (deg) and the margin (deg) the samples allow.

    The margin bounds how much closer than the nearest sample the body can come to any point: half the
    largest step between samples, plus the largest parallax between the Earth's centre and INTEGRAL.
    """
    import numpy as np
    from astropy import units as u
    from astropy.time import Time

    from . import ephemeris

    start, stop = Time(t1, scale="utc"), Time(t2, scale="utc")
    span = max((stop - start).to_value(u.day), 0.0)
    count = int(min(_TRACK_POINTS, np.ceil(span / _TRACK_STEP_DAYS) + 1))
    times = start + np.linspace(0.0, span, max(count, 2)) * u.day
    ra, dec, distance_km = ephemeris.geocentric_positions(body, times)
    steps = _separation_deg(ra[:-1], dec[:-1], ra[1:], dec[1:])
    parallax = np.degrees(np.arcsin(min(1.0, _INTEGRAL_MAX_DISTANCE_KM / float(np.min(distance_km)))))
    return ra, dec, float(np.max(steps)) / 2 + parallax


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _position_inputs(values: Mapping[str, Any]) -> tuple[str, float, float, float] | None:
    """``(src_name, RA, DEC, radius)`` when the check applies and the values are usable, else None."""
    from .parameters.blocks import INSTRUMENT_DEFAULTS

    if not all(name in values for name in ("src_name", "RA", "DEC")):
        return None
    name, ra, dec = values["src_name"], _number(values["RA"]), _number(values["DEC"])
    if not isinstance(name, str) or not name.strip() or ra is None or dec is None or (ra == 0.0 and dec == 0.0):
        return None
    radius = values.get("radius")
    if radius is None:
        instrument = values.get("instrument", "isgri")
        instrument = instrument.strip().casefold() if isinstance(instrument, str) else None
        radius = INSTRUMENT_DEFAULTS["radius"].get(instrument)
    radius = _number(radius)
    if radius is None or radius <= 0 or not (0.0 <= ra < 360.0 and -90.0 <= dec <= 90.0):
        return None  # the parameters' own validation reports these
    return name.strip(), ra, dec, radius


def position_problems(values: Mapping[str, Any]) -> list[tuple[tuple[str, ...], str]]:
    """Say whether ``src_name`` names something far from the non-zero RA/DEC given with it.

    A run with non-zero RA/DEC selects the field at RA/DEC and labels its products ``src_name``. When the
    name has a known position -- a source of the built-in catalogue, or a solar-system body (its geocentric
    track over T1-T2, DE421, with a margin for the sampling and INTEGRAL's parallax) -- farther than
    ``radius`` from RA/DEC, the products would carry the wrong name: that is almost always a mistake
    (``papermill ... -p src_name Saturn`` left the parameters cell's RA/DEC in place). Offline on purpose
    (no Simbad): it runs wherever parameters are validated, before any job.

    Parameters
    ----------
    values : mapping
        ``src_name``, ``RA``, ``DEC``, ``radius`` (None: the instrument's default), ``instrument``, ``T1``,
        ``T2``: a validated parameter model, or raw values (a value that is not usable skips the check; the
        parameters' validation reports it).

    Returns
    -------
    list of (tuple of str, str)
        ``(("src_name", "RA", "DEC"), problem)`` saying which to change, or an empty list.
    """
    inputs = _position_inputs(values)
    if inputs is None:
        return []
    name, ra, dec, radius = inputs
    given = f"RA = {ra}, DEC = {dec}"
    advice = (
        "set RA = 0 and DEC = 0 to use {what}, or change src_name to the name of the source at RA, DEC "
        "(a name the built-in catalogue does not know is a free label)"
    )
    if is_solar_system_body(name):
        from .parameters.types import parse_isot

        t1, t2 = values.get("T1"), values.get("T2")
        start = parse_isot(t1) if isinstance(t1, str) else None
        stop = parse_isot(t2) if isinstance(t2, str) else None
        if start is None or stop is None or start >= stop:
            return []
        body = _solar_system_target(name).name
        track_ra, track_dec, margin = _body_track(body.lower(), start.isoformat(), stop.isoformat())
        closest = float(_separation_deg(track_ra, track_dec, ra, dec).min())
        if closest - margin <= radius:
            return []
        return [
            (
                ("src_name", "RA", "DEC"),
                f"src_name = {name!r} is a solar-system body that stays {closest:.1f}° or more from {given} "
                f"between T1 and T2, farther than radius = {radius:g}°: "
                + advice.format(what=f"{body}'s track (its position at each ScW's time)"),
            )
        ]
    found = _lookup_builtin(name)
    if found is None:
        return []
    distance = float(_separation_deg(found.ra, found.dec, ra, dec))
    if distance <= radius:
        return []
    return [
        (
            ("src_name", "RA", "DEC"),
            f"src_name = {name!r} is at RA = {found.ra}, DEC = {found.dec} (built-in ISDC catalogue), "
            f"{distance:.1f}° from {given}, farther than radius = {radius:g}°: "
            + advice.format(what=f"{found.name}'s position"),
        )
    ]
