"""Revolution products: an INTEGRAL revolution's ScWs grouped by observation, one mosaic per observation and instrument.

INTEGRAL's orbit lasted 2.99 days until early 2015 and 2.66 days after; each
orbit is a *revolution*, numbered from launch, and its number is the first
four digits of every ScW id (``RRRRPPPPSSSF``, science notes §2). The MMODA
product gallery shows, for every revolution, the mosaics of each observation
(one per instrument), the sources they detect with their fluxes, and the light
curves and spectra of those sources (seed 003, "Generic Revolution Mosaics").
This module does the bookkeeping of that notebook; the science (mosaics,
sources, light curves, spectra) is the rest of ``integral_workflows``::

    revolution = resolve_revolution(p.rev_num, session=session, data_version=p.data_version)
    scws = revolution_scws(revolution, session=session, data_version=p.data_version)
    observations = group_observations(scws, revolution=revolution)
    kept, excluded = exclude_by_title(observations, p.to_exclude_from_title)
    for instrument in instruments_in_use(p):
        selected, report = select_for_instrument(scws, instrument, p)
        for observation in kept:
            part = observation.restricted_to(selected)
            result = make_mosaic(session, p, part, instrument)
            result.write(output_dir)

Where things come from
----------------------
* **Revolution ↔ time**: the ``converttime`` service of the dispatcher's
  ``gw/timesystem`` gateway (``REVNUM/<n>/IJD`` is the start of revolution
  ``n``; its end is the start of ``n + 1``).
* **The revolution's ScWs**: the ScW-list service of the same gateway, asked
  for the revolution's time span without restriction on the pointing (an
  all-sky cone of 180°), keeping the ScWs whose id names the revolution. Its
  ``OBS_ID`` column groups them into observations; ``GOOD_ISGRI`` and
  ``GOOD_JEMX1/2`` feed the per-instrument good-time cut.
* **The current revolution** (``rev_num`` ≤ 0): the latest revolution with
  ScWs in the archive at the time of the run. Science operations ended on
  2025-02-28, so it is the last revolution of the mission; while the mission
  ran it was the revolution in progress (its first near-real-time ScWs reach
  the archive about three hours after perigee).
* **Observation titles**: the real notebook reads them from ISDC's observation
  log, which MMODA does not serve. Here a title is made from the
  observation's pointing centre: ``Galactic Center`` near Sgr A*, else the
  nearest source of the ISDC reference catalogue within 2°, else
  ``Gal. Plane, l=<l>`` within 10° of the Galactic plane, else
  ``RA <ra> Dec <dec>`` (:func:`observation_title`). ``to_exclude_from_title``
  matches these titles.
* **Proposal ids**: the first seven digits of the observation id
  (``AATPPPPOOOO``: cycle, type, proposal, observation).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io.fits.verify import VerifyWarning
from astropy.table import Table, vstack
from astropy.time import Time

from . import catalog, mosaic, provenance, queries, scw
from .parameters.models import ObservationParameters, default_value
from .parameters.types import MISSION_END
from .products import Product

log = logging.getLogger(__name__)

__all__ = [
    "INSTRUMENTS",
    "INSTRUMENT_LABELS",
    "NOTEBOOK",
    "RevolutionError",
    "Observation",
    "ObservationMosaic",
    "SourceProducts",
    "instruments_in_use",
    "instrument_parameters",
    "make_mosaics",
    "extract_source_products",
    "describe_products",
    "convert_time",
    "revolution_span",
    "current_revolution",
    "resolve_revolution",
    "revolution_scws",
    "select_for_instrument",
    "observation_title",
    "group_observations",
    "exclude_by_title",
    "observations_table",
    "make_mosaic",
    "extract_light_curves",
    "extract_spectra",
    "summary_table",
    "sources_table",
    "jobs_table",
    "product_title",
]

#: Instruments of revolution products, as the gallery names them.
INSTRUMENTS = ("isgri", "jemx1", "jemx2")
INSTRUMENT_LABELS = {"isgri": "ISGRI", "jemx1": "JEM-X1", "jemx2": "JEM-X2"}
#: The notebook that makes revolution products (its step name is the file name without ``.ipynb``).
NOTEBOOK = "revolution_mosaics.ipynb"

CONVERTTIME_PATH = "gw/timesystem/api/v1.0/converttime"
#: A revolution lasts under 3 days: the last one (whose successor the service does not know) ends within this.
LONGEST_REVOLUTION_DAYS = 3.1
#: Windows searched, in turn, for the latest ScWs before "now" (days): a week, two months, a year.
_CURRENT_SEARCH_DAYS = (7.0, 60.0, 400.0)
#: Sgr A*, for the title of Galactic-Centre observations.
_GALACTIC_CENTRE = SkyCoord(266.41684 * u.deg, -29.00781 * u.deg)
_TITLE_MATCH_DEG = 2.0
_GALACTIC_CENTRE_MATCH_DEG = 3.0
_GALACTIC_PLANE_DEG = 10.0


class RevolutionError(RuntimeError):
    """A revolution cannot be found or listed (unknown number, service refusing, no ScW)."""


# -- instruments --------------------------------------------------------------------------------------------------


def instruments_in_use(parameters: Mapping[str, Any]) -> list[str]:
    """The instruments a revolution run makes products for, from ``use_isgri``, ``use_jemx1``, ``use_jemx2``.

    Parameters
    ----------
    parameters : parameter model
        The run's parameters.

    Returns
    -------
    list of str
        A subset of :data:`INSTRUMENTS`, in that order.
    """
    return [instrument for instrument in INSTRUMENTS if parameters[f"use_{instrument}"]]


def instrument_parameters(parameters: Mapping[str, Any], instrument: str, **changes: Any) -> ObservationParameters:
    """The run's parameters as one instrument's product queries need them.

    ISGRI keeps ``E1_keV``/``E2_keV``; a JEM-X unit takes ``instrument='jemx'``,
    its ``jemx_unit`` and the JEM-X band ``J_E1_keV``/``J_E2_keV``. Defaults
    that depend on the instrument (radius, systematic fraction) follow; the
    others (``integral_data_rights``...) are their blocks' defaults.

    Parameters
    ----------
    parameters : parameter model or mapping
        The run's parameters (``revolution_mosaics``).
    instrument : str
        One of :data:`INSTRUMENTS`.
    **changes
        Other values to set (``src_name``, ``RA``, ``DEC``...).

    Returns
    -------
    ObservationParameters
        Validated parameters for that instrument.

    Raises
    ------
    ParameterError
        If the values do not validate for the instrument.
    """
    from .parameters.validation import validate_model

    values = parameters.model_dump(mode="json") if hasattr(parameters, "model_dump") else dict(parameters)
    fields = ObservationParameters.model_fields
    if instrument == "isgri":
        chosen = {"instrument": "isgri"}
    elif instrument in ("jemx1", "jemx2"):
        chosen = {
            "instrument": "jemx",
            "jemx_unit": int(instrument[-1]),
            "E1_keV": values["J_E1_keV"],
            "E2_keV": values["J_E2_keV"],
        }
    else:
        raise ValueError(f"instrument {instrument!r}: use one of {', '.join(INSTRUMENTS)}")
    given = {name: value for name, value in values.items() if name in fields}
    return validate_model(
        ObservationParameters, {**given, **chosen, **changes}, where=f"the {instrument} jobs of a revolution"
    )


# -- revolution <-> time ------------------------------------------------------------------------------------------


def convert_time(
    value: Any, *, informat: str, outformat: str, url: str | None = None, session=None, timeout_s: float = 30.0
) -> Any:
    """Ask the dispatcher's ``converttime`` service to convert a time (or a revolution, or a ScW id).

    Parameters
    ----------
    value : str or number
        The value, e.g. ``300`` with ``informat='REVNUM'``.
    informat, outformat : str
        ``IJD``, ``UTC``, ``REVNUM``, ``SCWID``, ``MJD`` (``ANY`` for either).
    url : str, optional
        Dispatcher URL (joins the session open for it).
    session : integral_workflows.session.Session, optional
        The network seam; ``session`` or ``url`` is required.
    timeout_s : float
        Timeout of each attempt, s.

    Returns
    -------
    object
        The converted value: a number for IJD, MJD and REVNUM, a string for
        UTC and SCWID.

    Raises
    ------
    RevolutionError
        If the service refuses the conversion (the message is the
        service's) or keeps failing.
    integral_workflows.session.BackendUnavailable
        If the dispatcher is gone.
    """
    from .session import session_for

    session = session_for(session, url=url)
    path = f"{CONVERTTIME_PATH}/{informat}/{value}/{outformat}"
    # connection errors and crashes (5xx) are retried by the session; a refusal is the service's answer
    response = session.get(path, timeout_s=timeout_s, what="the converttime service", is_answer=_is_conversion_refusal)
    if response.status_code >= 500:
        problem = f"HTTP {response.status_code}: {response.text[:200]}"
        if _is_conversion_refusal(response):
            raise RevolutionError(f"converttime {informat} {value} -> {outformat} refused: {problem}")
        raise RevolutionError(f"the converttime service {session.url}/{path} kept failing: {problem}")
    if response.status_code != 200:
        raise RevolutionError(
            f"converttime {informat} {value} -> {outformat} refused (HTTP "
            f"{response.status_code}): {response.text[:300]}"
        )
    try:
        return response.json()
    except ValueError:
        return response.text.strip()


def _is_conversion_refusal(response) -> bool:
    """Whether an HTTP 500 of the timesystem service is its answer to an impossible conversion.

    The real service answers a conversion that fails with HTTP 500 and a JSON
    list of the problems met in each archive (NRT, then CONS); a crash of the
    service gives anything else.
    """
    try:
        body = response.json()
    except ValueError:
        return False
    return (
        isinstance(body, list)
        and bool(body)
        and all(
            isinstance(entry, dict) and any(key.startswith(("problem", "error from converttime")) for key in entry)
            for entry in body
        )
    )


def revolution_span(revolution: str | int, *, url: str | None = None, session=None) -> tuple[float, float]:
    """Start and end of a revolution, IJD (TT).

    Parameters
    ----------
    revolution : str or int
        The revolution (``'0300'`` or ``300``).
    url, session
        The dispatcher (see :func:`convert_time`).

    Returns
    -------
    (float, float)
        Its start (perigee passage) and the start of the next one; for the
        last revolution the service knows, the start plus
        :data:`LONGEST_REVOLUTION_DAYS`.

    Raises
    ------
    RevolutionError
        If the service does not know the revolution.
    """
    from .session import session_for

    session = session_for(session, url=url)
    number = int(revolution)
    answer = str(convert_time(number, informat="REVNUM", outformat="IJD", session=session)).split()
    if answer and answer[0] == "Boundary":
        # the real service's text for a revolution: "Boundary <start> <start of the next one>"
        return float(answer[1]), float(answer[2])
    start = float(answer[0])
    try:
        end = float(convert_time(number + 1, informat="REVNUM", outformat="IJD", session=session))
    except RevolutionError:
        # The last revolution of the archive has no successor to end it.
        end = start + LONGEST_REVOLUTION_DAYS
    return start, end


def _utc_now() -> Time:
    return Time(dt.datetime.now(dt.UTC).replace(tzinfo=None), scale="utc")


def current_revolution(
    *, url: str | None = None, session=None, data_version: str = "CONS", now: Any = None, scw_source: str = "mmoda"
) -> str:
    """The current revolution: the latest one with ScWs in the archive at ``now``.

    Science operations ended on 2025-02-28: after that date the current
    revolution is the last revolution of the mission. While the mission ran,
    it was the revolution in progress once its first (near-real-time) ScWs
    had reached the archive, a few hours after perigee.

    Parameters
    ----------
    url, session
        The dispatcher, whose ScW-list service is asked (see :func:`convert_time`).
    data_version : {'CONS', 'NRT'}
        Which archive to look at.
    now : str or astropy.time.Time, optional
        The moment (UTC) to look back from; the present by default, and never
        later than the end of the mission (``integral_workflows.parameters.types.MISSION_END``).
    scw_source : {'mmoda', 'heasarc'}
        The ScW list to ask.

    Returns
    -------
    str
        The revolution, 4 digits.

    Raises
    ------
    RevolutionError
        If no ScW exists in the year before ``now``.
    """
    moment = _utc_now() if now is None else (now if isinstance(now, Time) else Time(now, scale="utc"))
    mission_end = Time(MISSION_END, scale="utc")
    if moment > mission_end:
        moment = mission_end
    for days in _CURRENT_SEARCH_DAYS:
        table = scw.query_scws(
            ra=0.0,
            dec=0.0,
            radius=180.0,
            t1=moment - days * u.day,
            t2=moment,
            data_version=data_version,
            url=url,
            session=session,
            source=scw_source,
        )
        if len(table):
            latest = str(max(np.asarray(table["revolution"]).tolist()))
            log.info("current revolution at %s: %s (latest ScW %s)", moment.isot[:19], latest, table["scw_id"][-1])
            return latest
    raise RevolutionError(
        f"no {data_version} ScW in the {_CURRENT_SEARCH_DAYS[-1]:.0f} days before "
        f"{moment.isot[:19]}: cannot tell the current revolution"
    )


def resolve_revolution(
    rev_num: str | int,
    *,
    url: str | None = None,
    session=None,
    data_version: str = "CONS",
    now: Any = None,
    scw_source: str = "mmoda",
) -> str:
    """Turn the ``rev_num`` parameter into a revolution number.

    Parameters
    ----------
    rev_num : str or int
        ``'0300'`` (that revolution), or an integer ≤ 0: 0 the current
        revolution (:func:`current_revolution`), -N the N-th before it.
    url, session, data_version, now, scw_source
        As for :func:`current_revolution`.

    Returns
    -------
    str
        The revolution, 4 digits.

    Raises
    ------
    ValueError
        For a malformed ``rev_num`` (positive integers must be written as
        4-digit strings).
    RevolutionError
        If the current revolution cannot be found.
    """
    if isinstance(rev_num, str) and len(rev_num.strip()) == 4 and rev_num.strip().isdigit():
        return rev_num.strip()
    if isinstance(rev_num, bool) or not isinstance(rev_num, (int, np.integer)) or int(rev_num) > 0:
        raise ValueError(
            f"rev_num = {rev_num!r}: give a 4-digit revolution ('0300') or an integer <= 0 "
            f"(0 the current revolution, -1 the one before)"
        )
    current = int(
        current_revolution(url=url, session=session, data_version=data_version, now=now, scw_source=scw_source)
    )
    number = current + int(rev_num)
    if number < 1:
        raise RevolutionError(
            f"rev_num = {rev_num}: {-int(rev_num)} revolutions before {current:04d} is before the mission"
        )
    return f"{number:04d}"


def revolution_scws(
    revolution: str, *, url: str | None = None, session=None, data_version: str = "CONS", scw_source: str = "mmoda"
) -> Table:
    """Every ScW of a revolution, all over the sky, with its observation.

    Parameters
    ----------
    revolution : str
        4 digits.
    url, session
        The dispatcher (see :func:`convert_time`).
    data_version : {'CONS', 'NRT'}
        Consolidated or near-real-time ScWs.
    scw_source : {'mmoda', 'heasarc'}
        Where the list comes from (see :func:`integral_workflows.scw.query_scws`).

    Returns
    -------
    astropy.table.Table
        The ScW table of :mod:`integral_workflows.scw` (``scw_id``,
        ``revolution``, ``pointing``, times, pointing, good times,
        ``obs_id``), sorted by time, without the meaningless ``offaxis_deg``;
        ``meta['revolution']`` holds the revolution and its span. When the
        list does not give observation ids, ``obs_id`` is ``'unknown'``.

    Raises
    ------
    RevolutionError
        If the revolution is unknown or holds no ScW.
    """
    from .session import session_for

    session = session_for(session, url=url)
    start, end = revolution_span(revolution, session=session)
    # A cone of 180 deg around any point is the whole sky: the services take no "all-sky" flag.
    table = scw.query_scws(
        ra=0.0, dec=0.0, radius=180.0, t1=start, t2=end, data_version=data_version, session=session, source=scw_source
    )
    table = table[np.asarray(table["revolution"]) == revolution]
    if "offaxis_deg" in table.colnames:
        table.remove_column("offaxis_deg")
    if "obs_id" not in table.colnames:
        log.warning("the ScW list gives no observation ids: revolution %s is treated as one observation", revolution)
        table["obs_id"] = np.full(len(table), "unknown")
    if not len(table):
        raise RevolutionError(f"revolution {revolution} holds no {data_version} ScW in the archive")
    table.meta["revolution"] = {
        "revolution": revolution,
        "ijd_start": start,
        "ijd_end": end,
        "utc_start": _utc_isot(start),
        "utc_end": _utc_isot(end),
        "data_version": data_version,
    }
    log.info("revolution %s: %d ScWs in %d observations", revolution, len(table), len(set(table["obs_id"])))
    return table


def select_for_instrument(table: Table, instrument: str, parameters: Mapping[str, Any]) -> tuple[Table, Any]:
    """The ScWs of a revolution that one instrument can use, by the suite's selection cuts.

    Pointings only, no bad revolution (:data:`integral_workflows.scw.DEFAULT_BAD_REVOLUTIONS`
    and ``bad_revolutions``), no radiation-belt pointing (judged against the
    highest pointing of the revolution, known exactly here since the whole
    revolution is listed), more than ``min_good_time_s`` of the instrument's
    good time.

    Parameters
    ----------
    table : astropy.table.Table
        The whole revolution (:func:`revolution_scws`).
    instrument : str
        One of :data:`INSTRUMENTS`.
    parameters : mapping
        The run's parameters; ``pointings_only``, ``min_good_time_s``,
        ``exclude_radiation_belts`` and ``bad_revolutions`` take the ScW
        selection's defaults when absent (a revolution run declares none).

    Returns
    -------
    (astropy.table.Table, integral_workflows.scw.CutReport)
        The kept ScWs (column ``good_time_s`` added) and the cut report.
    """
    if instrument not in INSTRUMENTS:
        raise ValueError(f"instrument {instrument!r}: use one of {', '.join(INSTRUMENTS)}")
    pointing = np.asarray(table["pointing"], dtype=int)
    is_pointing = np.asarray(table["scw_type"]) == "pointing"
    extents = {}
    for revolution in sorted(set(np.asarray(table["revolution"]).tolist())):
        mine = (np.asarray(table["revolution"]) == revolution) & is_pointing
        if np.any(mine):
            extents[revolution] = int(pointing[mine].max())

    def value(name: str) -> Any:
        # A revolution run declares no ScW cuts of its own: the ScW selection's defaults apply.
        return parameters[name] if name in parameters else default_value(name)

    bad = set(scw.DEFAULT_BAD_REVOLUTIONS) | set(value("bad_revolutions"))
    return scw.apply_cuts(
        table,
        instrument="isgri" if instrument == "isgri" else "jemx",
        jemx_unit=2 if instrument == "jemx2" else 1,
        pointings_only=bool(value("pointings_only")),
        min_good_time_s=value("min_good_time_s"),
        exclude_radiation_belts=bool(value("exclude_radiation_belts")),
        revolution_extents=extents,
        bad_revolutions=sorted(bad),
    )


# -- observations -------------------------------------------------------------------------------------------------


def _utc_isot(ijd: float) -> str:
    """IJD (TT) → UTC ISOT with whole seconds (what the gallery client accepts)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ERFA "dubious year" beyond the leap-second table
        return Time(float(ijd) + scw.IJD_MJD_OFFSET, format="mjd", scale="tt").utc.strftime("%Y-%m-%dT%H:%M:%S")


def _centre(ra_deg: np.ndarray, dec_deg: np.ndarray) -> tuple[float, float]:
    """Mean direction of pointings (a vector mean: RA wraps at 0/360)."""
    coordinates = SkyCoord(np.asarray(ra_deg, float) * u.deg, np.asarray(dec_deg, float) * u.deg)
    mean = coordinates.cartesian.xyz.value.mean(axis=1)
    centre = SkyCoord(x=mean[0], y=mean[1], z=mean[2], representation_type="cartesian").spherical
    return float(centre.lon.deg) % 360.0, float(centre.lat.deg)


_REFERENCE_CATALOGUE: Table | None = None


def _reference_catalogue() -> Table:
    global _REFERENCE_CATALOGUE
    if _REFERENCE_CATALOGUE is None:
        from .targets import builtin_catalogue_path

        _REFERENCE_CATALOGUE = Table.read(builtin_catalogue_path(), format="ascii.ecsv")
    return _REFERENCE_CATALOGUE


def observation_title(ra: float, dec: float, *, reference: Table | None = None) -> str:
    """A title for an observation pointed around (ra, dec), like those of ISDC's observation log.

    Parameters
    ----------
    ra, dec : float
        The observation's pointing centre, deg.
    reference : astropy.table.Table, optional
        Catalogue with ``NAME``, ``RA``, ``DEC``; the shipped ISDC reference
        catalogue by default.

    Returns
    -------
    str
        ``Galactic Center`` within 3° of Sgr A*; else the nearest catalogue
        source within 2°; else ``Gal. Plane, l=<l>`` within 10° of the
        Galactic plane; else ``RA <ra> Dec <dec>``.
    """
    centre = SkyCoord(float(ra) * u.deg, float(dec) * u.deg)
    if centre.separation(_GALACTIC_CENTRE).deg <= _GALACTIC_CENTRE_MATCH_DEG:
        return "Galactic Center"
    reference = _reference_catalogue() if reference is None else reference
    if len(reference):
        known = SkyCoord(np.asarray(reference["RA"], float) * u.deg, np.asarray(reference["DEC"], float) * u.deg)
        separation = centre.separation(known).deg
        nearest = int(np.argmin(separation))
        if separation[nearest] <= _TITLE_MATCH_DEG:
            return str(reference["NAME"][nearest])
    galactic = centre.galactic
    if abs(galactic.b.deg) <= _GALACTIC_PLANE_DEG:
        return f"Gal. Plane, l={galactic.l.deg:.0f}"
    return f"RA {float(ra):.1f} Dec {float(dec):+.1f}"


@dataclasses.dataclass(eq=False)
class Observation:
    """The ScWs of one observation within one revolution.

    Attributes
    ----------
    obs_id : str
        Observation id, ``AATPPPPOOOO``.
    revolution : str
        The revolution, 4 digits.
    title : str
        Title (see :func:`observation_title`), computed from all the
        observation's ScWs in the revolution, so the same for every instrument.
    ra, dec : float
        Pointing centre of all its ScWs, deg.
    scws : astropy.table.Table
        Its ScWs (all of them, or one instrument's selection).
    """

    obs_id: str
    revolution: str
    title: str
    ra: float
    dec: float
    scws: Table

    @property
    def proposal_id(self) -> str:
        """The proposal: the first seven digits of the observation id (``AATPPPP``)."""
        return self.obs_id[:7] if len(self.obs_id) == 11 and self.obs_id.isdigit() else ""

    @property
    def scw_ids(self) -> list[str]:
        """ScW ids with version, as MMODA's ``scw_list`` wants them."""
        return scw.scw_ids(self.scws)

    @property
    def n_scw(self) -> int:
        """Number of ScWs."""
        return len(self.scws)

    @property
    def ijd_start(self) -> float:
        """Start of the first ScW, IJD."""
        return float(np.min(self.scws["tstart"])) if len(self.scws) else float("nan")

    @property
    def ijd_stop(self) -> float:
        """End of the last ScW, IJD."""
        return float(np.max(self.scws["tstop"])) if len(self.scws) else float("nan")

    @property
    def t1(self) -> str:
        """Start of the first ScW, UTC ISOT, whole seconds (rounded down)."""
        return _utc_isot(self.ijd_start)

    @property
    def t2(self) -> str:
        """End of the last ScW, UTC ISOT, whole seconds (rounded up, so the span holds all the data)."""
        return _utc_isot(self.ijd_stop + 0.999 / scw.SECONDS_PER_DAY)

    @property
    def good_time_s(self) -> float:
        """Summed good time of the instrument the ScWs were selected for (0 before a selection)."""
        if "good_time_s" not in self.scws.colnames:
            return 0.0
        return float(np.nansum(np.asarray(self.scws["good_time_s"], dtype=float)))

    def restricted_to(self, selected: Table) -> Observation:
        """The same observation with only its ScWs present in ``selected`` (an instrument's selection)."""
        mine = np.asarray(selected["obs_id"]) == self.obs_id
        return dataclasses.replace(self, scws=selected[mine])


def group_observations(table: Table, *, revolution: str, reference: Table | None = None) -> list[Observation]:
    """Group a revolution's ScWs by observation.

    Parameters
    ----------
    table : astropy.table.Table
        ScWs of the revolution (:func:`revolution_scws`), with ``obs_id``.
    revolution : str
        The revolution.
    reference : astropy.table.Table, optional
        Catalogue for the titles (see :func:`observation_title`).

    Returns
    -------
    list of Observation
        In time order of their first ScW.
    """
    observations = []
    obs_ids = np.asarray(table["obs_id"]).astype(str)
    for obs_id in dict.fromkeys(obs_ids.tolist()):  # time order of first appearance
        rows = table[obs_ids == obs_id]
        ra, dec = _centre(rows["ra_x"], rows["dec_x"])
        observations.append(
            Observation(
                obs_id=obs_id,
                revolution=revolution,
                title=observation_title(ra, dec, reference=reference),
                ra=ra,
                dec=dec,
                scws=rows,
            )
        )
    return observations


def exclude_by_title(observations: Sequence[Observation], text: str) -> tuple[list[Observation], list[Observation]]:
    """Split observations by whether their title contains ``text`` (``to_exclude_from_title``).

    Parameters
    ----------
    observations : sequence of Observation
    text : str
        Observations whose title contains it are excluded; '' excludes none.

    Returns
    -------
    (list of Observation, list of Observation)
        Kept, excluded.
    """
    if not text:
        return list(observations), []
    kept = [obs for obs in observations if text not in obs.title]
    excluded = [obs for obs in observations if text in obs.title]
    for obs in excluded:
        log.info("observation %s (%s) excluded: its title contains %r", obs.obs_id, obs.title, text)
    return kept, excluded


def observations_table(observations: Sequence[Observation], *, excluded: Sequence[Observation] = ()) -> Table:
    """The observations of a revolution as a table (one row each).

    Parameters
    ----------
    observations : sequence of Observation
        Those processed.
    excluded : sequence of Observation
        Those left out by title (listed with ``excluded`` True).

    Returns
    -------
    astropy.table.Table
        ``revolution, obs_id, proposal_id, title, n_scw, t1, t2, ra, dec, excluded``.
    """
    rows = [
        (o.revolution, o.obs_id, o.proposal_id, o.title, o.n_scw, o.t1, o.t2, o.ra, o.dec, flag)
        for flag, group in ((False, observations), (True, excluded))
        for o in group
    ]
    table = Table(
        rows=rows or None,
        names=("revolution", "obs_id", "proposal_id", "title", "n_scw", "t1", "t2", "ra", "dec", "excluded"),
        dtype=(str, str, str, str, int, str, str, float, float, bool),
    )
    table["ra"].unit = table["dec"].unit = u.deg
    return table


@contextlib.contextmanager
def _long_cards_allowed():
    """Let FITS writers shorten long card comments silently.

    The provenance card ``CREATOR`` names this notebook, whose long name
    leaves too little room for the card's comment: astropy shortens the
    comment, and would warn about it once per file.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)
        yield


# -- mosaics ------------------------------------------------------------------------------------------------------


def product_title(base: str, revolution: str, data_version: str) -> str:
    """A gallery title in the real gallery's style: ``<base> Rev. <revolution>``, `` (NRT)`` for NRT data."""
    return f"{base} Rev. {revolution}" + (" (NRT)" if str(data_version).upper() == "NRT" else "")


@dataclasses.dataclass(eq=False)
class ObservationMosaic:
    """The mosaic of one observation by one instrument, and the sources it shows.

    Attributes
    ----------
    observation : Observation
        The observation, restricted to the ScWs used.
    instrument : str
        One of :data:`INSTRUMENTS`.
    parameters : parameter model
        The instrument's parameters (band, position, title as ``src_name``).
    record : integral_workflows.jobs.RunRecord
        The MMODA jobs and the fate of every ScW.
    sky : integral_workflows.mosaic.SkyMosaic or None
        The combined mosaic; None if no ScW was analysed.
    sources : astropy.table.Table
        Detected sources (:func:`integral_workflows.mosaic.find_sources`).
    files : dict
        What :meth:`write` wrote: ``fits``, ``png``, ``sources``, ``region``
        → file name in the output folder.
    """

    observation: Observation
    instrument: str
    parameters: ObservationParameters
    record: Any
    sky: mosaic.SkyMosaic | None
    sources: Table
    files: dict = dataclasses.field(default_factory=dict)

    @property
    def stem(self) -> str:
        """``<obs_id>_<instrument>``, the prefix of the products' file names."""
        return f"{self.observation.obs_id}_{self.instrument}"

    @property
    def label(self) -> str:
        """``<obs_id>_<instrument>_mosaic``: names its jobs in records and tables."""
        return f"{self.stem}_mosaic"

    @property
    def named_sources(self) -> Table:
        """The detected sources that have a catalogue name (not ``NEW_n``)."""
        if not len(self.sources):
            return self.sources
        return self.sources[~np.asarray(self.sources["new_source"], dtype=bool)]

    def write(self, output_dir: str | Path, *, notebook: str = NOTEBOOK) -> dict:
        """Write the FITS mosaic, its PNG, the source table and the DS9 region file.

        Parameters
        ----------
        output_dir : path-like
            The run folder.
        notebook : str
            The notebook named in the FITS provenance keywords.

        Returns
        -------
        dict
            ``fits``, ``png``, ``sources``, ``region`` → file names (relative
            to ``output_dir``); empty when there is no mosaic.
        """
        import matplotlib.pyplot as plt

        if self.sky is None:
            return {}
        out = Path(output_dir)
        observation, p = self.observation, self.parameters
        stamp = provenance.fits_provenance(
            notebook=notebook, parameters=p, src_name=observation.title, ra_deg=observation.ra, dec_deg=observation.dec
        )
        files = {
            "fits": f"{self.stem}_mosaic.fits",
            "png": f"{self.stem}_mosaic.png",
            "sources": f"{self.stem}_sources.ecsv",
            "region": f"{self.stem}_sources.reg",
        }
        with _long_cards_allowed():
            self.sky.write(out / files["fits"], provenance=stamp, overwrite=True)
        title = (
            f"{product_title(observation.title, observation.revolution, p.data_version)}, "
            f"{INSTRUMENT_LABELS[self.instrument]} {p.E1_keV:g}-{p.E2_keV:g} keV, obs {observation.obs_id}"
        )
        figure = mosaic.plot(self.sky, sources=self.sources, title=title)
        figure.savefig(out / files["png"], dpi=100, bbox_inches="tight")
        plt.close(figure)
        self.sources.write(out / files["sources"], overwrite=True)
        mosaic.write_region_file(self.sources, out / files["region"])
        self.files = files
        return files


def make_mosaic(session, parameters: Mapping[str, Any], observation: Observation, instrument: str) -> ObservationMosaic:
    """Mosaic one observation with one instrument (chunked MMODA jobs) and find its sources.

    Parameters
    ----------
    session : integral_workflows.session.Session
        Where the jobs go.
    parameters : parameter model
        The run's parameters (``s_max``, bands, ``detection_threshold``,
        ``include_new_sources``...).
    observation : Observation
        The observation, restricted to the instrument's ScWs.
    instrument : str
        One of :data:`INSTRUMENTS`.

    Returns
    -------
    ObservationMosaic
        With ``sky`` None when no ScW could be analysed (the record says why).
    """
    p = instrument_parameters(
        parameters, instrument, src_name=observation.title, RA=observation.ra, DEC=observation.dec
    )
    request = queries.image_request(p, ra=observation.ra, dec=observation.dec)
    record = session.fetch(
        request, observation.scw_ids, s_max=parameters["s_max"], description=f"{observation.obs_id} {instrument} mosaic"
    )
    if not record.pieces:
        log.warning("observation %s, %s: no ScW analysed (%s)", observation.obs_id, instrument, record.summary())
        return ObservationMosaic(observation, instrument, p, record, None, _empty_sources())
    sky = mosaic.combine(mosaic.SkyMosaic.from_data_collection(piece.data_collection()) for piece in record.pieces)
    field_catalog = catalog.default_catalog(observation.ra, observation.dec, p.radius + 15.0)
    sources = mosaic.find_sources(
        sky,
        threshold=p.detection_threshold,
        catalog=field_catalog,
        include_new_sources=p.include_new_sources,
        n_images=len(record.scws("done")),
    )
    return ObservationMosaic(observation, instrument, p, record, sky, sources)


def _empty_sources() -> Table:
    table = Table(
        {
            "name": np.zeros(0, str),
            "ra": np.zeros(0),
            "dec": np.zeros(0),
            "significance": np.zeros(0),
            "rate": np.zeros(0),
            "rate_error": np.zeros(0),
            "x": np.zeros(0),
            "y": np.zeros(0),
            "new_source": np.zeros(0, bool),
        }
    )
    return table


# -- light curves and spectra of the detected sources -------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class SourceProducts:
    """Light curves or spectra of the sources of one observation's mosaic.

    Attributes
    ----------
    mosaic : ObservationMosaic
        The mosaic whose sources were extracted.
    kind : str
        ``lc`` or ``spectrum``.
    record : integral_workflows.jobs.RunRecord
        The MMODA jobs.
    files : dict
        Source name → list of file names written (FITS first, PNG last).
    summary : astropy.table.Table
        One row per source (mean rate and variability, or power-law fit).
    """

    mosaic: ObservationMosaic
    kind: str
    record: Any
    files: dict
    summary: Table

    @property
    def label(self) -> str:
        """``<obs_id>_<instrument>_<kind>``: names its jobs in records and tables."""
        return f"{self.mosaic.stem}_{self.kind}"


def _fetch_for_detected_sources(session, result: ObservationMosaic, request_for, what: str):
    """Run ``request_for`` (a ``queries`` builder) over the observation for the sources its mosaic named.

    Returns ``(record, source names)``, or None when the mosaic named no catalogue source.
    """
    named = result.named_sources
    if not len(named):
        return None
    extraction = catalog.sources_table(named["name"], named["ra"], named["dec"], significance=named["significance"])
    p, observation = result.parameters, result.observation
    request = request_for(
        p, ra=observation.ra, dec=observation.dec, selected_catalog=catalog.to_api_catalog(extraction)
    )
    record = session.fetch(
        request, observation.scw_ids, s_max=p.s_max, description=f"{observation.obs_id} {result.instrument} {what}"
    )
    return record, list(extraction["name"])


def extract_light_curves(
    session, result: ObservationMosaic, output_dir: str | Path, *, notebook: str = NOTEBOOK
) -> SourceProducts | None:
    """Light curves (one bin per ``lc_time_bin``) of the catalogue sources a mosaic detected.

    Parameters
    ----------
    session : integral_workflows.session.Session
    result : ObservationMosaic
        A mosaic with detected catalogue sources.
    output_dir : path-like
        Where ``<stem>_lc_<source>.fits`` and ``.png`` go.
    notebook : str
        Named in the FITS provenance keywords.

    Returns
    -------
    SourceProducts or None
        None when the mosaic detected no catalogue source.
    """
    from . import lightcurve

    fetched = _fetch_for_detected_sources(session, result, queries.light_curve_request, "light curves")
    if fetched is None:
        return None
    record, names = fetched
    p, observation = result.parameters, result.observation
    curves = lightcurve.light_curves_from_pieces(record.pieces, names)
    out = Path(output_dir)
    files, rows = {}, []
    for name, curve in curves.items():
        curve = lightcurve.rebin(lightcurve.add_systematics(curve, p.systematic_fraction), p.lc_time_bin)
        stem = f"{result.stem}_lc_{provenance.file_stem(name)}"
        stamp = provenance.fits_provenance(notebook=notebook, parameters=p, src_name=name)
        with _long_cards_allowed():
            curve.write(out / f"{stem}.fits", provenance=stamp, overwrite=True)
        figure = lightcurve.plot(
            curve,
            path=out / f"{stem}.png",
            time_axis="mjd",
            title=f"{name}, {INSTRUMENT_LABELS[result.instrument]} {p.E1_keV:g}-{p.E2_keV:g} keV, "
            f"Rev. {observation.revolution}",
        )
        _close(figure)
        files[name] = [f"{stem}.fits", f"{stem}.png"]
        stats = lightcurve.variability(curve)
        rows.append(
            (
                observation.obs_id,
                result.instrument,
                name,
                len(curve.time),
                stats.weighted_mean,
                stats.weighted_mean_error,
                stats.chi2,
                stats.dof,
                stats.p_value,
            )
        )
    summary = Table(
        rows=rows or None,
        names=("obs_id", "instrument", "source", "bins", "mean_rate", "mean_rate_error", "chi2", "dof", "p_constant"),
        dtype=(str, str, str, int, float, float, float, int, float),
    )
    return SourceProducts(result, "lc", record, files, summary)


def extract_spectra(
    session, result: ObservationMosaic, output_dir: str | Path, *, notebook: str = NOTEBOOK
) -> SourceProducts | None:
    """Spectra (with ARF, RMF and a power-law fit) of the catalogue sources a mosaic detected.

    Parameters
    ----------
    session : integral_workflows.session.Session
    result : ObservationMosaic
        A mosaic with detected catalogue sources.
    output_dir : path-like
        Where ``<stem>_spectrum_<source>.fits`` (``_arf``, ``_rmf``) and ``.png`` go.
    notebook : str
        Named in the FITS provenance keywords.

    Returns
    -------
    SourceProducts or None
        None when the mosaic detected no catalogue source.
    """
    from . import spectrum

    fetched = _fetch_for_detected_sources(session, result, queries.spectrum_request, "spectra")
    if fetched is None:
        return None
    record, names = fetched
    p, observation = result.parameters, result.observation
    combined = spectrum.spectra_from_pieces(record.pieces, names, instrument=p.instrument)
    out = Path(output_dir)
    files, rows = {}, []
    for name, (source_spectrum, response) in combined.items():
        source_spectrum = spectrum.add_systematics(source_spectrum, p.systematic_fraction)
        if p.instrument == "isgri":
            source_spectrum = spectrum.group(
                source_spectrum,
                min_energy=p.isgri_grouping_min_energy,
                max_energy=p.isgri_grouping_max_energy,
                factor=p.isgri_grouping_factor,
                response=response,
            )
        try:
            fit = spectrum.fit_power_law(source_spectrum, response)
        except (ValueError, RuntimeError) as problem:
            log.info("%s %s %s: no power-law fit (%s)", observation.obs_id, result.instrument, name, problem)
            fit = None
        stem = f"{result.stem}_spectrum_{provenance.file_stem(name)}"
        stamp = provenance.fits_provenance(notebook=notebook, parameters=p, src_name=name)
        with _long_cards_allowed():
            written = spectrum.write(source_spectrum, response, out / f"{stem}.fits", provenance=stamp, overwrite=True)
        figure = spectrum.plot(source_spectrum, response, fit, path=out / f"{stem}.png")
        _close(figure)
        files[name] = [Path(path).name for path in written] + [f"{stem}.png"]
        if fit is not None:
            flux, flux_error = fit.band_flux(p.E1_keV, p.E2_keV)
            rows.append(
                (
                    observation.obs_id,
                    result.instrument,
                    name,
                    source_spectrum.exposure,
                    fit.gamma,
                    fit.gamma_error,
                    fit.chi2,
                    fit.dof,
                    flux,
                    flux_error,
                )
            )
    summary = Table(
        rows=rows or None,
        names=(
            "obs_id",
            "instrument",
            "source",
            "exposure_s",
            "gamma",
            "gamma_error",
            "chi2",
            "dof",
            "flux_erg_cm2_s",
            "flux_error",
        ),
        dtype=(str, str, str, float, float, float, float, int, float, float),
    )
    return SourceProducts(result, "spectrum", record, files, summary)


def _close(figure) -> None:
    import matplotlib.pyplot as plt

    plt.close(figure)


# -- tables ---------------------------------------------------------------------------------------------------------


def summary_table(results: Iterable[ObservationMosaic]) -> Table:
    """One row per observation and instrument: what was analysed and what the mosaic shows.

    Parameters
    ----------
    results : iterable of ObservationMosaic

    Returns
    -------
    astropy.table.Table
        ``revolution, obs_id, proposal_id, title, instrument, e1_kev, e2_kev,
        t1, t2, n_scw, n_done, exposure_ks, n_sources, brightest, brightest_rate,
        mosaic`` (the FITS file, '' when no mosaic was made).
    """
    rows = []
    for result in results:
        observation, counts = result.observation, result.record.counts()
        named = result.named_sources
        brightest = named[np.argmax(named["rate"])] if len(named) else None
        rows.append(
            (
                observation.revolution,
                observation.obs_id,
                observation.proposal_id,
                observation.title,
                result.instrument,
                result.parameters.E1_keV,
                result.parameters.E2_keV,
                observation.t1,
                observation.t2,
                observation.n_scw,
                counts["done"],
                observation.good_time_s / 1e3,
                len(result.sources),
                "" if brightest is None else str(brightest["name"]),
                float("nan") if brightest is None else float(brightest["rate"]),
                result.files.get("fits", ""),
            )
        )
    table = Table(
        rows=rows or None,
        names=(
            "revolution",
            "obs_id",
            "proposal_id",
            "title",
            "instrument",
            "e1_kev",
            "e2_kev",
            "t1",
            "t2",
            "n_scw",
            "n_done",
            "exposure_ks",
            "n_sources",
            "brightest",
            "brightest_rate",
            "mosaic",
        ),
        dtype=(str, str, str, str, str, float, float, str, str, int, int, float, int, str, float, str),
    )
    table["exposure_ks"].unit = u.ks
    table["brightest_rate"].unit = u.ct / u.s
    return table


def sources_table(results: Iterable[ObservationMosaic]) -> Table:
    """Every source detected in the revolution's mosaics, with its count rate (the gallery's flux).

    Parameters
    ----------
    results : iterable of ObservationMosaic

    Returns
    -------
    astropy.table.Table
        ``obs_id, title, instrument, name, ra, dec, significance, rate,
        rate_error, new_source``, by observation, instrument and decreasing
        significance.
    """
    pieces = []
    for result in results:
        if not len(result.sources):
            continue
        piece = result.sources["name", "ra", "dec", "significance", "rate", "rate_error", "new_source"].copy()
        piece.add_column(np.full(len(piece), result.observation.obs_id), name="obs_id", index=0)
        piece.add_column(np.full(len(piece), result.observation.title), name="title", index=1)
        piece.add_column(np.full(len(piece), result.instrument), name="instrument", index=2)
        pieces.append(piece)
    if not pieces:
        return Table(
            names=(
                "obs_id",
                "title",
                "instrument",
                "name",
                "ra",
                "dec",
                "significance",
                "rate",
                "rate_error",
                "new_source",
            ),
            dtype=(str, str, str, str, float, float, float, float, float, bool),
        )
    return vstack(pieces, metadata_conflicts="silent")


def jobs_table(jobs: Iterable[ObservationMosaic | SourceProducts]) -> Table:
    """The fate of every ScW in every job of the revolution, one row per ScW and product.

    Parameters
    ----------
    jobs : iterable of ObservationMosaic or SourceProducts

    Returns
    -------
    astropy.table.Table
        ``product`` (e.g. ``02201140001_isgri_mosaic``) then the columns of
        :meth:`integral_workflows.jobs.RunRecord.outcome_table`.
    """
    tables = []
    for job in jobs:
        table = job.record.outcome_table()
        table.add_column(np.full(len(table), job.label), name="product", index=0)
        tables.append(table)
    if not tables:
        return Table(
            names=("product", "scw_id", "status", "reason", "chunk", "job_id", "attempts"),
            dtype=(str, str, str, str, str, str, int),
        )
    return vstack(tables, metadata_conflicts="silent")


# -- the whole run ----------------------------------------------------------------------------------------------


def make_mosaics(
    session,
    parameters: Mapping[str, Any],
    observations: Sequence[Observation],
    selections: Mapping[str, Table],
    output_dir: str | Path,
) -> list[ObservationMosaic]:
    """One mosaic per observation and instrument (written as it is made), in instrument order.

    Parameters
    ----------
    session : integral_workflows.session.Session
    parameters : parameter model
        The run's parameters.
    observations : sequence of Observation
        The revolution's observations.
    selections : mapping
        Instrument → its usable ScWs (:func:`select_for_instrument`).
    output_dir : path-like
        Where each mosaic's files go (:meth:`ObservationMosaic.write`).

    Returns
    -------
    list of ObservationMosaic
        Observations without a usable ScW for an instrument are left out (logged).
    """
    mosaics = []
    for instrument, selected in selections.items():
        for observation in observations:
            part = observation.restricted_to(selected)
            if not part.n_scw:
                log.warning("%s (%s), %s: no usable ScW", observation.obs_id, observation.title, instrument)
                continue
            result = make_mosaic(session, parameters, part, instrument)
            result.write(output_dir)
            mosaics.append(result)
            log.info(
                "%s (%s), %s: %s; %d sources",
                observation.obs_id,
                observation.title,
                instrument,
                result.record.summary(),
                len(result.sources),
            )
    return mosaics


def extract_source_products(
    session, mosaics: Iterable[ObservationMosaic], output_dir: str | Path
) -> list[SourceProducts]:
    """Light curves and spectra of the catalogue sources each mosaic detected.

    Returns
    -------
    list of SourceProducts
        Mosaics without a detected catalogue source give none.
    """
    extracted = []
    for result in mosaics:
        for products in (
            extract_light_curves(session, result, output_dir),
            extract_spectra(session, result, output_dir),
        ):
            if products is not None:
                extracted.append(products)
    return extracted


def describe_products(
    revolution: str,
    results: Iterable[ObservationMosaic],
    source_products: Iterable[SourceProducts] = (),
    *,
    output_dir: str | Path,
) -> list[Product]:
    """Describe the revolution's mosaics, light curves and spectra (what the gallery shows of them).

    Identities follow the real revolution notebooks: revolution,
    observation, instrument and the analysis settings, but not
    ``data_version``, so that the consolidated (CONS) products of a
    revolution replace its near-real-time (NRT) ones in the gallery.

    Parameters
    ----------
    revolution : str
        The revolution.
    results : iterable of ObservationMosaic
        The mosaics (written, see :meth:`ObservationMosaic.write`).
    source_products : iterable of SourceProducts
        Light curves and spectra, if extracted.
    output_dir : path-like
        The folder the files are in.

    Returns
    -------
    list of integral_workflows.products.Product
        ``image`` (with plot, regions and sources table), ``light_curve`` and ``spectrum`` descriptors.
    """
    out = Path(output_dir)
    products = []
    for result in results:
        if not result.files:
            continue
        observation, p = result.observation, result.parameters
        identity = {
            "rev_num": revolution,
            "obsid": observation.obs_id,
            "instrument": result.instrument,
            "E1_keV": f"{p.E1_keV:.1f}",
            "E2_keV": f"{p.E2_keV:.1f}",
            "osa_version": p.osa_version,
            "detection_threshold": p.detection_threshold,
        }
        products.append(
            Product(
                path=out / result.files["fits"],
                kind="image",
                instrument=result.instrument,
                source=observation.title,
                band=(p.E1_keV, p.E2_keV),
                period=(observation.t1, observation.t2),
                position=(observation.ra, observation.dec),
                plot=out / result.files["png"],
                region=out / result.files["region"],
                sources=out / result.files["sources"],
                title=product_title(observation.title, revolution, p.data_version),
                identity=identity,
                details={
                    "src_names": [str(name) for name in result.named_sources["name"]],
                    "obsids": [observation.obs_id],
                    "revolutions": [revolution],
                },
            )
        )
    for extracted in source_products:
        result = extracted.mosaic
        observation, p = result.observation, result.parameters
        positions = {str(row["name"]): (float(row["ra"]), float(row["dec"])) for row in result.named_sources}
        kind = "light_curve" if extracted.kind == "lc" else "spectrum"
        for name, files in extracted.files.items():
            identity = {
                "source_name": name,
                "obsid": observation.obs_id,
                "instrument": result.instrument,
                "rev_num": revolution,
            }
            details = {"obsids": [observation.obs_id], "revolutions": [revolution]}
            if kind == "light_curve":
                identity.update(time_bin=p.lc_time_bin, E1_keV=f"{p.E1_keV:.1f}", E2_keV=f"{p.E2_keV:.1f}")
                details["time_bin"] = p.lc_time_bin
            label = "light curve" if kind == "light_curve" else "spectrum"
            products.append(
                Product(
                    path=out / files[0],
                    kind=kind,
                    instrument=result.instrument,
                    source=name,
                    band=(p.E1_keV, p.E2_keV),
                    period=(observation.t1, observation.t2),
                    position=positions.get(name),
                    companions=tuple(out / f for f in files[1:-1]),
                    plot=out / files[-1],
                    title=product_title(f"{name} {result.instrument} {label}", revolution, p.data_version),
                    identity=identity,
                    details=details,
                )
            )
    return products
