"""Where a solar-system body is, as INTEGRAL sees it, at thousands of times at once.

Three ingredients, each replaceable:

1. **The body seen from the geocentre** (:func:`geocentric_positions`):
   astrometric ICRS direction and distance, i.e. the light-time corrected
   position of the body minus the position of the Earth, both from a JPL
   ephemeris through astropy (``get_body_barycentric``), vectorised over
   any number of times. "Astrometric" (no annual aberration) is what a
   sky image of INTEGRAL shows: its attitude is solved against catalogue
   star positions, so a planet lands at its astrometric place, as
   Horizons' ``RA``/``DEC`` columns give it (astropy's ``get_body`` returns
   the GCRS *apparent* place instead, which differs by the ~20″ annual
   aberration). Ephemerides (:func:`resolve_ephemeris`):

   * ``"de421"``: the JPL DE421 kernel (``de421.bsp``, 17 MB) shipped by the
     ``skyfield-data`` package, read by ``jplephem``; offline, precise to
     milli-arcseconds for the planets over 1900–2050 (science notes §6);
   * ``"builtin"``: astropy's built-in ERFA/VSOP-like series, offline too,
     good to ~41″ for Jupiter over 2003–2025;
   * ``"auto"`` (default): DE421 when the package is installed, else builtin;
   * ``"horizons"``: JPL Horizons through ``astroquery.jplhorizons`` (online
     only; :func:`horizons_request` builds the same request offline, with
     ``CENTER='500@399'``, the geocentre — *not* ``'@0'``, the solar-system
     barycentre, whose use put Jupiter ~10° off in the EPFL student project,
     science notes §1a).

2. **INTEGRAL seen from the geocentre** (:class:`SpacecraftService`): the
   MMODA spacecraft service ``<dispatcher>/gw/scsystem/api/v1.0/sc/<UTC>/0/0``
   answers ``ephs: {ra, dec, alt}``, INTEGRAL's geocentric direction and
   distance (km), on the production dispatcher and on the local one alike.
   It is asked once per distinct second of time (each ScW's mid-time),
   concurrently, and every answer is kept in memory and, when a cache
   folder is given, on disk: a full-mission body track (≈ 2000 ScWs) costs
   one request per ScW the first time and none afterwards. INTEGRAL moves
   at most ~9 km/s, so rounding times to the second changes the parallax by
   less than 10⁻⁴ arcsec.

3. **The parallax** (:func:`observer_centric`): the body's direction from
   INTEGRAL is the difference of the two geocentric vectors. INTEGRAL is at
   most ~166 000 km from the Earth's centre, so for Jupiter (≥ 3.9 AU) the
   shift is at most ~57″ (science notes §6): negligible against ISGRI's 12′
   PSF, a third of JEM-X's 3′ one.

:func:`body_track` puts the three together and returns a table with both
the geocentric and the INTEGRAL-centric positions.

Times are IJD (MJD − 51544, TT) as in the ScW tables, astropy ``Time``
objects, or ISOT UTC strings.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import importlib.resources
import importlib.util
import json
import logging
import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy import constants
from astropy import units as u
from astropy.table import Table
from astropy.time import Time

log = logging.getLogger(__name__)

__all__ = [
    "EPHEMERIDES",
    "HORIZONS_IDS",
    "IJD_MJD_OFFSET",
    "SpacecraftService",
    "SpacecraftServiceError",
    "canonical_body",
    "de421_path",
    "resolve_ephemeris",
    "to_time",
    "geocentric_positions",
    "barycentric_directions",
    "horizons_request",
    "horizons_positions",
    "observer_centric",
    "body_track",
    "separation_deg",
]

#: MJD of IJD 0 (2000-01-01T00:00:00 TT).
IJD_MJD_OFFSET = 51544.0
#: Ephemeris choices of :func:`resolve_ephemeris` (and of the ``ephemeris`` workflow parameter).
EPHEMERIDES = ("auto", "de421", "builtin", "horizons")
#: Horizons ids of the bodies (planet centres, not barycentres: 599 is Jupiter, 5 would be its system barycentre).
HORIZONS_IDS = {
    "sun": "10",
    "moon": "301",
    "mercury": "199",
    "venus": "299",
    "mars": "499",
    "jupiter": "599",
    "saturn": "699",
    "uranus": "799",
    "neptune": "899",
}
#: Horizons' code of the geocentre as observer (``500@399``: body centre of the Earth).
HORIZONS_GEOCENTRE = "500@399"
#: Path of the spacecraft service under a dispatcher URL.
SPACECRAFT_PATH = "gw/scsystem/api/v1.0/sc"
#: Largest number of epochs per Horizons request (its TLIST limit is a few thousand lines; stay well below).
HORIZONS_MAX_EPOCHS = 400
_LIGHT_TIME_ITERATIONS = 3
_C_KM_S = constants.c.to_value(u.km / u.s)
_AU_KM = u.au.to(u.km)


class SpacecraftServiceError(RuntimeError):
    """The spacecraft service did not give INTEGRAL's position."""


def canonical_body(name: str) -> str:
    """Return the lower-case body name astropy and this module use (``'Jupiter'`` → ``'jupiter'``).

    Parameters
    ----------
    name : str
        Sun, Moon or a planet, in any case.

    Raises
    ------
    ValueError
        For anything else (the message lists the bodies).
    """
    key = str(name).strip().lower()
    if key not in HORIZONS_IDS:
        raise ValueError(f"{name!r} is not a solar-system body this module knows: {sorted(HORIZONS_IDS)}")
    return key


def de421_path() -> Path | None:
    """Path of the DE421 kernel shipped by ``skyfield-data``, or None when the package is absent.

    The file is located without calling ``skyfield_data.get_skyfield_data_path()``, which warns about
    the expiry of an Earth-orientation file this module does not use.
    """
    try:
        folder = importlib.resources.files("skyfield_data") / "data"
    except ModuleNotFoundError:
        return None
    path = Path(str(folder / "de421.bsp"))
    return path if path.is_file() else None


def resolve_ephemeris(ephemeris: str = "auto") -> str:
    """Return what astropy's ``ephemeris`` arguments take for an ephemeris choice.

    Parameters
    ----------
    ephemeris : {'auto', 'de421', 'builtin'} or str
        ``'auto'``: DE421 when ``skyfield-data`` (and ``jplephem``) are
        installed, else astropy's built-in one; a path to an SPK kernel
        (``.bsp``) is used as it is.

    Returns
    -------
    str
        ``'builtin'`` or the path of a kernel.

    Raises
    ------
    ValueError
        For ``'horizons'`` (not an astropy ephemeris), or ``'de421'`` when the kernel is not installed.
    """
    choice = str(ephemeris).strip()
    if choice.lower() == "builtin":
        return "builtin"
    if choice.lower() in ("auto", "de421"):
        path = de421_path()
        jplephem_present = importlib.util.find_spec("jplephem") is not None
        if path is not None and jplephem_present:
            return str(path)
        if choice.lower() == "de421":
            raise ValueError(
                "the DE421 kernel needs the packages skyfield-data and jplephem (pip install "
                "skyfield-data jplephem); use ephemeris='builtin' otherwise"
            )
        log.info("skyfield-data/jplephem not installed: astropy's built-in ephemeris is used (good to ~40″)")
        return "builtin"
    if choice.lower() == "horizons":
        raise ValueError("'horizons' is an online service, not an astropy ephemeris: use horizons_positions()")
    if choice.endswith(".bsp") and Path(choice).is_file():
        return choice
    raise ValueError(f"ephemeris = {ephemeris!r}: use one of {EPHEMERIDES} or the path of a .bsp kernel")


def to_time(times: Any) -> Time:
    """Times as an astropy ``Time``: numbers are IJD (< 20000) or MJD, TT; strings are UTC.

    Parameters
    ----------
    times : Time, float, array_like or str
        Times in any of those forms (all of one form).

    Returns
    -------
    astropy.time.Time
        Array-valued when ``times`` is.
    """
    if isinstance(times, Time):
        return times
    values = np.asarray(times)
    if values.dtype.kind in "US" or values.dtype == object:
        return Time(values if values.ndim else str(values), scale="utc")
    numbers = np.asarray(values, dtype=float)
    mjd = np.where(numbers < 20000.0, numbers + IJD_MJD_OFFSET, numbers)
    return Time(mjd, format="mjd", scale="tt")


@contextlib.contextmanager
def _offline():
    """Never download IERS tables (no network, ever), and keep ERFA's "dubious year" warnings quiet."""
    from astropy.utils import iers

    with iers.conf.set_temp("auto_download", False), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*dubious year.*")
        yield


def _barycentric_km(body: str, times: Time, ephemeris: str) -> np.ndarray:
    # The ephemeris is passed explicitly, never through astropy's global solar_system_ephemeris: setting that
    # state closes the kernel any other thread is reading (an in-process server, a second notebook thread),
    # which crashes the process. An explicit kernel is opened and closed by astropy for this call alone.
    from astropy.coordinates import get_body_barycentric

    return get_body_barycentric(body, times, ephemeris=ephemeris).xyz.to_value(u.km).T.reshape(-1, 3)


def geocentric_positions(
    body: str, times: Any, *, ephemeris: str = "auto"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Astrometric geocentric RA, Dec (deg, ICRS axes) and distance (km) of a body at many times.

    The body's barycentric position is taken at the time its light left it
    (light-time iterated three times: converged to < 1 µs for the planets)
    and the Earth's at the time of observation; their difference is the
    astrometric geocentric vector.

    Parameters
    ----------
    body : str
        Sun, Moon or a planet (any case).
    times : Time, float or array_like
        Times (see :func:`to_time`): IJD numbers in TT, as in the ScW tables.
    ephemeris : str
        See :func:`resolve_ephemeris`.

    Returns
    -------
    ra, dec, distance_km : numpy.ndarray
        1-D arrays, one value per time.

    Examples
    --------
    >>> ra, dec, d = geocentric_positions("jupiter", [3000.0, 3001.0], ephemeris="builtin")  # doctest: +SKIP
    """
    body = canonical_body(body)
    moments = to_time(times)
    flat = moments.reshape(-1) if moments.ndim else moments.reshape(1)
    kernel = resolve_ephemeris(ephemeris)
    with _offline():
        earth = _barycentric_km("earth", flat, kernel)
        vector = _barycentric_km(body, flat, kernel) - earth
        for _ in range(_LIGHT_TIME_ITERATIONS):
            delay = np.linalg.norm(vector, axis=-1) / _C_KM_S
            vector = _barycentric_km(body, flat - delay * u.s, kernel) - earth
    distance = np.linalg.norm(vector, axis=-1)
    ra, dec = _vector_to_radec(vector)
    return ra, dec, distance


def barycentric_directions(body: str, times: Any, *, ephemeris: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """RA, Dec (deg) of a body as seen from the solar-system barycentre: **not** where a telescope sees it.

    Kept to show (and test) the mistake of the EPFL student project, whose
    Horizons query used ``location='@0'``: Jupiter then lands up to ~12°
    from its geocentric position.

    Parameters
    ----------
    body : str
        A body name.
    times : Time, float or array_like
        Times (see :func:`to_time`).
    ephemeris : str
        See :func:`resolve_ephemeris`.

    Returns
    -------
    ra, dec : numpy.ndarray
    """
    body = canonical_body(body)
    flat = to_time(times).reshape(-1)
    with _offline():
        vector = _barycentric_km(body, flat, resolve_ephemeris(ephemeris))
    return _vector_to_radec(vector)


def _vector_to_radec(vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    vector = np.atleast_2d(np.asarray(vector, dtype=float))
    norm = np.linalg.norm(vector, axis=-1)
    ra = np.degrees(np.arctan2(vector[:, 1], vector[:, 0])) % 360.0
    dec = np.degrees(np.arcsin(np.clip(vector[:, 2] / norm, -1.0, 1.0)))
    return ra, dec


def _radec_to_vector(ra, dec, distance) -> np.ndarray:
    ra, dec = np.radians(np.asarray(ra, dtype=float)), np.radians(np.asarray(dec, dtype=float))
    distance = np.asarray(distance, dtype=float)
    return np.stack(
        [distance * np.cos(dec) * np.cos(ra), distance * np.cos(dec) * np.sin(ra), distance * np.sin(dec)], axis=-1
    )


def separation_deg(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Angular separation (deg) of pairs of positions (deg), vectorised and accurate at all angles."""
    a = _radec_to_vector(ra1, dec1, 1.0)
    b = _radec_to_vector(ra2, dec2, 1.0)
    cross = np.linalg.norm(np.cross(a, b), axis=-1)
    return np.degrees(np.arctan2(cross, np.sum(a * b, axis=-1)))


# -- Horizons (online option) ----------------------------------------------------------------------------------


def _horizons_epochs(times: Any) -> list[float]:
    """Julian dates in UTC, which is what Horizons reads for observer ephemerides (TLIST)."""
    moments = to_time(times).reshape(-1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*dubious year.*")
        return [float(f"{jd:.9f}") for jd in moments.utc.jd]


def horizons_request(body: str, times: Any, *, location: str = HORIZONS_GEOCENTRE):
    """The ``astroquery.jplhorizons.Horizons`` object of a body's geocentric ephemeris (built offline).

    Parameters
    ----------
    body : str
        A body name.
    times : Time, float or array_like
        At most :data:`HORIZONS_MAX_EPOCHS` times (see :func:`to_time`).
    location : str
        Observer; ``'500@399'`` (the geocentre) by default. ``'@0'`` is the
        solar-system barycentre, which is wrong for any telescope.

    Returns
    -------
    astroquery.jplhorizons.Horizons
        ``.ephemerides(get_query_payload=True)`` shows the request without
        sending it; ``.ephemerides()`` sends it (online only).
    """
    from astroquery.jplhorizons import Horizons

    epochs = _horizons_epochs(times)
    if len(epochs) > HORIZONS_MAX_EPOCHS:
        raise ValueError(
            f"{len(epochs)} epochs in one Horizons request: at most {HORIZONS_MAX_EPOCHS} "
            "(horizons_positions splits longer lists)"
        )
    return Horizons(id=HORIZONS_IDS[canonical_body(body)], location=location, epochs=epochs)


def horizons_positions(
    body: str, times: Any, *, location: str = HORIZONS_GEOCENTRE
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Astrometric RA, Dec (deg) and distance (km) of a body from JPL Horizons (online only).

    Parameters
    ----------
    body : str
        A body name.
    times : Time, float or array_like
        Times (see :func:`to_time`); sent in requests of at most
        :data:`HORIZONS_MAX_EPOCHS` epochs.
    location : str
        Observer (the geocentre by default).

    Returns
    -------
    ra, dec, distance_km : numpy.ndarray
        In the order of ``times`` (Horizons' ``RA``, ``DEC`` astrometric ICRF
        columns and ``delta``).
    """
    moments = to_time(times).reshape(-1)
    ra, dec, distance = [], [], []
    for start in range(0, len(moments), HORIZONS_MAX_EPOCHS):
        table = horizons_request(body, moments[start : start + HORIZONS_MAX_EPOCHS], location=location).ephemerides(
            quantities="1,20"
        )
        ra.append(np.asarray(table["RA"], dtype=float))
        dec.append(np.asarray(table["DEC"], dtype=float))
        distance.append(np.asarray(table["delta"], dtype=float) * _AU_KM)
    return np.concatenate(ra), np.concatenate(dec), np.concatenate(distance)


# -- INTEGRAL's position ----------------------------------------------------------------------------------------


class SpacecraftService:
    """INTEGRAL's geocentric position from the MMODA spacecraft service, batched and cached.

    Parameters
    ----------
    session : integral_workflows.session.Session or str
        The network seam (or a dispatcher URL, which joins the session open
        for it: :func:`integral_workflows.session.session_for`).
    cache_dir : str or Path, optional
        Folder of a JSON cache of answers, one file per ``backend_id``;
        in memory only when None.
    backend_id : str, optional
        Identity of the backend for the cache file; the session's by default
        (for the local MMODA the fingerprint of its simulation, whose port
        changes).
    max_workers : int
        Requests in flight at once.
    timeout_s : float
        Timeout of one request.

    Notes
    -----
    One request per distinct second of the times asked: for ScW mid-times
    that is one per ScW. The service answers ``ephs: {ra, dec, alt}`` where
    ``alt`` is the geocentric distance in km (science notes §1c; even if it
    were an altitude, the 6378 km difference changes Jupiter's parallax by
    less than 2″).
    """

    def __init__(
        self,
        session,
        *,
        cache_dir: str | Path | None = None,
        backend_id: str | None = None,
        max_workers: int = 8,
        timeout_s: float = 30.0,
    ):
        from .session import session_for

        self.session = session_for(url=session) if isinstance(session, str) else session
        self.max_workers = max(1, int(max_workers))
        self.timeout_s = float(timeout_s)
        self._memory: dict[int, tuple[float, float, float]] = {}
        self._lock = threading.Lock()
        self._file = None
        if cache_dir is not None:
            key = hashlib.sha256((backend_id or self.session.backend_id).encode()).hexdigest()[:16]
            self._file = Path(cache_dir).expanduser() / f"spacecraft_{key}.json"
            self._load()
        self.requests_sent = 0

    def _load(self) -> None:
        try:
            stored = json.loads(self._file.read_text())
        except (OSError, ValueError):
            return
        self._memory.update({int(k): tuple(v) for k, v in stored.items()})

    def _save(self) -> None:
        if self._file is None:
            return
        self._file.parent.mkdir(parents=True, exist_ok=True)
        temporary = self._file.with_name(f".{self._file.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with self._lock:
            content = {str(k): list(v) for k, v in self._memory.items()}
        temporary.write_text(json.dumps(content))
        temporary.replace(self._file)

    @staticmethod
    def _second_of(moments: Time) -> np.ndarray:
        """Whole UTC seconds since IJD 0 of each time: the cache key and the time sent."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*dubious year.*")
            utc_mjd = moments.utc.mjd
        return np.rint((np.asarray(utc_mjd, dtype=float) - IJD_MJD_OFFSET) * 86400.0).astype(np.int64)

    @property
    def url(self) -> str:
        """The dispatcher asked."""
        return self.session.url

    def _ask(self, second: int) -> tuple[float, float, float]:
        moment = Time(IJD_MJD_OFFSET + second / 86400.0, format="mjd", scale="utc")
        path = f"{SPACECRAFT_PATH}/{moment.strftime('%Y-%m-%dT%H:%M:%S')}/0/0"
        address = f"{self.session.url}/{path}"
        # connection errors and 5xx are retried by the session within its budget
        response = self.session.get(path, timeout_s=self.timeout_s, what="the spacecraft service")
        if response.status_code >= 500:
            raise SpacecraftServiceError(
                f"the spacecraft service {address} kept failing: HTTP {response.status_code}: {response.text[:300]}"
            )
        if response.status_code != 200:
            raise SpacecraftServiceError(
                f"the spacecraft service refused {address} (HTTP {response.status_code}): {response.text[:300]}"
            )
        try:
            ephs = response.json()["ephs"]
            value = (float(ephs["ra"]), float(ephs["dec"]), float(ephs["alt"]))
        except (ValueError, KeyError, TypeError) as error:
            raise SpacecraftServiceError(
                f"the spacecraft service answered without ephs ra/dec/alt at {address}: {response.text[:300]}"
            ) from error
        with self._lock:
            self.requests_sent += 1
        return value

    def positions_km(self, times: Any) -> np.ndarray:
        """INTEGRAL's geocentric position (km, ICRS/GCRS axes) at each time.

        Parameters
        ----------
        times : Time, float or array_like
            Times (see :func:`to_time`).

        Returns
        -------
        numpy.ndarray
            Shape (N, 3).

        Raises
        ------
        SpacecraftServiceError
            If a position cannot be had (e.g. a time outside the mission).
        """
        seconds = self._second_of(to_time(times).reshape(-1))
        missing = sorted(set(seconds.tolist()) - set(self._memory))
        if missing:
            log.info("asking the spacecraft service for %d positions of INTEGRAL", len(missing))
            with concurrent.futures.ThreadPoolExecutor(self.max_workers, thread_name_prefix="spacecraft") as pool:
                for second, value in zip(missing, pool.map(self._ask, missing)):
                    with self._lock:
                        self._memory[second] = value
            self._save()
        values = np.array([self._memory[int(s)] for s in seconds], dtype=float).reshape(-1, 3)
        return _radec_to_vector(values[:, 0], values[:, 1], values[:, 2])


def observer_centric(ra, dec, distance_km, observer_km) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Direction of a body seen from an observer displaced from the geocentre (parallax).

    Parameters
    ----------
    ra, dec : array_like
        Geocentric direction of the body (deg).
    distance_km : array_like
        Geocentric distance of the body (km).
    observer_km : array_like
        Geocentric position of the observer (N, 3), km, same axes.

    Returns
    -------
    ra, dec : numpy.ndarray
        The body's direction from the observer (deg).
    shift_arcsec : numpy.ndarray
        Angle between the geocentric and the observer-centric directions.
    """
    body = _radec_to_vector(ra, dec, distance_km).reshape(-1, 3)
    seen = body - np.asarray(observer_km, dtype=float).reshape(-1, 3)
    new_ra, new_dec = _vector_to_radec(seen)
    shift = separation_deg(np.atleast_1d(ra), np.atleast_1d(dec), new_ra, new_dec) * 3600.0
    return new_ra, new_dec, shift


def body_track(
    body: str,
    times: Any,
    *,
    ephemeris: str = "auto",
    spacecraft: SpacecraftService | None = None,
    scw_ids: Sequence[str] | None = None,
) -> Table:
    """The body's position at each time, from the geocentre and (with ``spacecraft``) from INTEGRAL.

    Parameters
    ----------
    body : str
        A body name (``Jupiter``...).
    times : Time, float or array_like
        Times (see :func:`to_time`), typically the ScWs' mid-times (IJD).
    ephemeris : str
        See :func:`resolve_ephemeris`; ``'horizons'`` asks JPL Horizons (online).
    spacecraft : SpacecraftService, optional
        INTEGRAL's positions; without it the INTEGRAL-centric columns equal
        the geocentric ones and ``parallax_arcsec`` is 0.
    scw_ids : sequence of str, optional
        Added as the first column.

    Returns
    -------
    astropy.table.Table
        ``ijd`` (TT), ``ra_geo``, ``dec_geo`` (deg), ``distance_au``,
        ``ra``, ``dec`` (deg, from INTEGRAL: use these), ``parallax_arcsec``;
        ``meta`` says which ephemeris and whether parallax was applied.
    """
    moments = to_time(times).reshape(-1)
    if str(ephemeris).lower() == "horizons":
        ra_geo, dec_geo, distance = horizons_positions(body, moments)
        used = "JPL Horizons (online), CENTER=500@399"
    else:
        resolved = resolve_ephemeris(ephemeris)
        ra_geo, dec_geo, distance = geocentric_positions(body, moments, ephemeris=resolved)
        used = (
            "astropy builtin" if resolved == "builtin" else f"JPL {Path(resolved).stem.upper()} ({Path(resolved).name})"
        )
    if spacecraft is not None and len(moments):
        ra, dec, shift = observer_centric(ra_geo, dec_geo, distance, spacecraft.positions_km(moments))
    else:
        ra, dec, shift = ra_geo.copy(), dec_geo.copy(), np.zeros(len(ra_geo))
    table = Table()
    if scw_ids is not None:
        table["scw_id"] = np.asarray(list(scw_ids), dtype=str)
    table["ijd"] = np.asarray(moments.tt.mjd, dtype=float) - IJD_MJD_OFFSET
    table["ra_geo"], table["dec_geo"] = ra_geo, dec_geo
    table["distance_au"] = distance / _AU_KM
    table["ra"], table["dec"] = ra, dec
    table["parallax_arcsec"] = shift
    for name, unit in (
        ("ijd", u.d),
        ("ra_geo", u.deg),
        ("dec_geo", u.deg),
        ("distance_au", u.au),
        ("ra", u.deg),
        ("dec", u.deg),
        ("parallax_arcsec", u.arcsec),
    ):
        table[name].unit = unit
    table["ra_geo"].description = "astrometric geocentric right ascension (ICRS axes)"
    table["ra"].description = "right ascension seen from INTEGRAL (parallax applied when known)"
    table.meta.update(
        {
            "body": canonical_body(body).capitalize(),
            "ephemeris": used,
            "parallax": "INTEGRAL position from the spacecraft service"
            if spacecraft is not None
            else "not applied (geocentric)",
        }
    )
    return table
