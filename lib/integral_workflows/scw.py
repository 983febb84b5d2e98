"""Science-window (ScW) selection: query, cuts, sampling, report, files and plots.

A long-term product starts with the list of ScWs whose pointing axis is close
enough to the target. This module builds that list in four steps::

    table = query_scws(ra=83.633, dec=22.0145, radius=10.5,
                       t1="2003-01-01T00:00:00", t2="2025-03-01T00:00:00", url=url)
    extents = revolution_extents(table, url=url)          # highest pointing of each revolution
    kept, report = apply_cuts(table, revolution_extents=extents)
    image_scws = sample(kept, -0.2, seed=0, report=report)  # e.g. 20 % for the catalog image

or in one call, :func:`select_scws`, from a parameter model or any
mapping. The result is an :class:`astropy.table.Table`, one row per ScW (see
:data:`SCW_COLUMNS`), and a :class:`CutReport` saying how many ScWs each cut
removed, which ones and why.

Where the list comes from
-------------------------
* ``source='mmoda'`` (default, works offline with the local MMODA): the
  ``gw/timesystem`` ScW-list service of the dispatcher,
  ``GET <url>/gw/timesystem/api/v1.0/scwlist/<cons|nrt>/<T1>/<T2>?ra=&dec=&radius=&return_columns=...``.
  The real service is known to return at least ``SWID, RA_SCX, DEC_SCX,
  TSTART, TSTOP, TELAPSE, IBISMODE`` (:data:`MINIMAL_RETURN_COLUMNS`); good
  times, revolution, observation and version (:data:`EXTRA_RETURN_COLUMNS`)
  are asked for too, and when the service refuses an unknown column (HTTP
  400) the query is repeated with the minimal set; the missing good times
  are then NaN and :func:`apply_cuts` falls back to TELAPSE.
* ``source='heasarc'`` (online only): HEASARC's TAP table ``intscw``
  (astroquery ``Heasarc.query_tap`` with explicit ADQL, see
  :func:`heasarc_adql`). There ``scw_id`` is an integer (leading zeros
  lost), ``scw_ver`` an integer and ``start_date``/``end_date`` UTC MJD
  floats; rows are converted to the same table. HEASARC holds consolidated
  data only and answers at most 100 000 rows per query, so a truncated
  answer is split in time and asked again.

Cuts (:func:`apply_cuts`), in this order, each switchable and counted
---------------------------------------------------------------------
1. ``pointings_only``: keep pointings (type digit F = 0 of ``RRRRPPPPSSSF``),
   not slews (1) or engineering windows (2).
2. ``bad_revolutions``: drop revolutions known to be bad;
   :data:`DEFAULT_BAD_REVOLUTIONS` is the list used by the EPFL student
   project (``interstellxr/jupiter-xray-analysis``).
3. ``radiation belts``: drop the first ``belt_first`` (PPPP ≤ 5) and the last
   ``belt_last`` (PPPP > highest − 10) pointings of each revolution, the
   highest pointing number being that of the **whole revolution**
   (:func:`revolution_extents` asks the same service without a cone), not of
   the ScWs that happen to be in the cone: the student's first version used
   the cone's, which keeps belt pointings of revolutions where the target
   was only observed early.
4. ``good time``: keep ScWs with more than ``min_good_time_s`` of good time
   for the instrument (``good_isgri``, or ``good_jemx1``/``good_jemx2``).

Times are IJD (MJD − 51544, TT) as INTEGRAL uses them; ``mjd_mid`` is the
ScW's middle in MJD (TT).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table, vstack
from astropy.time import Time

log = logging.getLogger(__name__)

__all__ = [
    "ScwQueryError",
    "CutStep",
    "CutReport",
    "query_scws",
    "revolution_extents",
    "apply_cuts",
    "sample",
    "select_scws",
    "heasarc_adql",
    "write_scw_table",
    "read_scw_table",
    "scw_ids",
    "cut_rows",
    "plot_scws_per_month",
    "plot_offaxis_vs_time",
    "plot_exposure_per_month",
    "plot_selection_summary",
    "DEFAULT_BAD_REVOLUTIONS",
    "SCW_COLUMNS",
    "MINIMAL_RETURN_COLUMNS",
    "EXTRA_RETURN_COLUMNS",
]

#: MJD of IJD 0 (2000-01-01T00:00:00 TT).
IJD_MJD_OFFSET = 51544.0
SECONDS_PER_DAY = 86400.0

#: Path of the ScW-list service under the dispatcher URL.
SCWLIST_PATH = "gw/timesystem/api/v1.0/scwlist"
#: Columns the real ScW-list service is known to return.
MINIMAL_RETURN_COLUMNS = ("SWID", "RA_SCX", "DEC_SCX", "TSTART", "TSTOP", "TELAPSE", "IBISMODE")
#: Columns asked for in addition; a service that does not know one answers 400 (then the minimal set is used).
EXTRA_RETURN_COLUMNS = ("REVOL", "GOOD_ISGRI", "GOOD_JEMX1", "GOOD_JEMX2", "OBS_ID", "SW_VER")

#: ScW version of each data version: near-real-time data are version 000, consolidated ones 001.
VERSION_OF_DATA = {"CONS": "001", "NRT": "000"}
_READINESS_OF_DATA = {"CONS": "cons", "NRT": "nrt"}
#: Meaning of the type digit F of ``RRRRPPPPSSSF``.
SCW_TYPES = {0: "pointing", 1: "slew", 2: "engineering"}
_TYPE_NAMES = np.array([SCW_TYPES[0], SCW_TYPES[1], SCW_TYPES[2], "unknown"])

#: Revolutions the EPFL student project (science notes §1a, ``jscws.ipynb``) drops as bad, "as per the ISDC
#: website": 4-digit strings, as revolutions are written in ScW ids and in the ``bad_revolutions`` parameter.
#: The same project also drops the single ScW 159800130010.
DEFAULT_BAD_REVOLUTIONS = (
    "0128",
    "0129",
    "0130",
    "0277",
    "0355",
    "0507",
    "0509",
    "1319",
    "1320",
    "1321",
    "1322",
    "1323",
    "1324",
    "1557",
    "1574",
    "1802",
    "1803",
)

#: The longest revolution lasts just under 3 days (2.99 d before 2015, 2.66 d after): a window padded by this
#: much on both sides of any ScW of a revolution contains the whole revolution.
REVOLUTION_PAD_DAYS = 3.1
#: Revolution windows closer than this are fetched in one request (fewer round trips, little extra data).
_MERGE_GAP_DAYS = 10.0
#: The real service reads UTC times as if they were TT (a 64-69 s shift): ask a little wider, then cut exactly.
_QUERY_PAD_DAYS = 300.0 / SECONDS_PER_DAY

#: HEASARC's TAP service answers at most this many rows per query.
HEASARC_MAX_ROWS = 100_000
HEASARC_TABLE = "intscw"
HEASARC_COLUMNS = (
    "scw_id",
    "scw_ver",
    "scw_type",
    "ra",
    "dec",
    "start_date",
    "end_date",
    "good_isgri",
    "good_jemx1",
    "good_jemx2",
    "obs_id",
)

DEFAULT_TIMEOUT_S = 120.0

#: Columns of a ScW table, with their meaning (``obs_id`` only when the source gives it).
SCW_COLUMNS = {
    "scw_id": "ScW id with version, RRRRPPPPSSSF.VVV (VVV 001 consolidated, 000 near-real-time)",
    "revolution": "revolution, 4 digits",
    "pointing": "pointing number PPPP in the revolution",
    "scw_type": "pointing, slew or engineering (type digit F of the id)",
    "tstart": "start, IJD (MJD - 51544, TT)",
    "tstop": "stop, IJD (MJD - 51544, TT)",
    "mjd_mid": "middle of the ScW, MJD (TT)",
    "telapse": "elapsed time, s",
    "ra_x": "pointing (spacecraft X axis) right ascension, deg",
    "dec_x": "pointing (spacecraft X axis) declination, deg",
    "offaxis_deg": "angle between the requested position and the pointing, deg",
    "good_isgri": "ISGRI good time, s (NaN when the source does not give it)",
    "good_jemx1": "JEM-X1 good time, s (NaN when the source does not give it)",
    "good_jemx2": "JEM-X2 good time, s (NaN when the source does not give it)",
    "ibismode": "IBIS mode (41 nominal; -1 when the source does not give it)",
    "obs_id": "observation id",
}
_UNITS = {
    "tstart": u.d,
    "tstop": u.d,
    "mjd_mid": u.d,
    "telapse": u.s,
    "ra_x": u.deg,
    "dec_x": u.deg,
    "offaxis_deg": u.deg,
    "good_isgri": u.s,
    "good_jemx1": u.s,
    "good_jemx2": u.s,
    "good_time_s": u.s,
}

_SCW_ID_PATTERN = re.compile(r"^\d{12}\.\d{3}$")


class ScwQueryError(RuntimeError):
    """The ScW list could not be obtained (service unreachable, failing, refusing, or answering nonsense).

    Parameters
    ----------
    message : str
        What went wrong, with the request.
    status : int, optional
        The HTTP status of a refusal (400 for an unknown column or a bad time).
    """

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


# -- small helpers ----------------------------------------------------------------------------------------------------


def _as_time(value: Any, name: str) -> Time:
    """A time argument as astropy Time: ISO/ISOT strings are UTC, numbers IJD (< 10000) or MJD (TT)."""
    if isinstance(value, Time):
        return value
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        number = float(value)
        mjd = number + IJD_MJD_OFFSET if number < 10000 else number
        return Time(mjd, format="mjd", scale="tt")
    if isinstance(value, str):
        try:
            return Time(value.strip(), scale="utc")
        except ValueError:
            pass
    raise ValueError(
        f"{name} = {value!r} is not a time: give an ISOT UTC string ('2003-01-01T00:00:00'), "
        "an astropy Time or an IJD number"
    )


def _ijd(moment: Time) -> float:
    return float(moment.tt.mjd - IJD_MJD_OFFSET)


def _utc_isot(ijd: float) -> str:
    """IJD (TT) → ISOT UTC with seconds, the form the real service's README uses."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ERFA "dubious year" beyond the leap-second table
        return Time(ijd + IJD_MJD_OFFSET, format="mjd", scale="tt").utc.strftime("%Y-%m-%dT%H:%M:%S")


def _mmoda_session(session, url: str | None):
    """The network seam for the ScW-list service: ``session``, or the one of dispatcher ``url``."""
    from .session import session_for

    if session is None and not url:
        raise ValueError(
            "url is required with source='mmoda' (or session=): the dispatcher URL, e.g. "
            "integral_workflows.hosts.dispatcher_url(host_type), or an integral_workflows.session.Session"
        )
    return session_for(session, url=url)


def _normalise_revolutions(revolutions: Iterable[Any] | None) -> tuple[str, ...]:
    """Revolutions as sorted 4-digit strings (ints accepted, e.g. 128 → '0128')."""
    if revolutions is None:
        return ()
    if isinstance(revolutions, (str, int, np.integer)):
        revolutions = [revolutions]
    out = set()
    for rev in revolutions:
        text = str(int(rev)) if isinstance(rev, (int, np.integer)) else str(rev).strip()
        if not text.isdigit() or len(text) > 4:
            raise ValueError(f"revolution {rev!r} is not a revolution number (4 digits, e.g. '0128')")
        out.add(text.zfill(4))
    return tuple(sorted(out))


# -- the ScW table ----------------------------------------------------------------------------------------------------


def _build_scw_table(
    *,
    swid: np.ndarray,
    version: np.ndarray,
    tstart: np.ndarray,
    tstop: np.ndarray,
    telapse: np.ndarray | None,
    ra_x: np.ndarray,
    dec_x: np.ndarray,
    ra: float,
    dec: float,
    good: Mapping[str, np.ndarray | None],
    ibismode: np.ndarray | None,
    obs_id: np.ndarray | None,
) -> Table:
    """Assemble the ScW table (vectorised) from the columns of either source; sorted by time, deduplicated."""
    swid = np.asarray(swid).astype("U12")
    n = len(swid)
    well_formed = (np.char.str_len(swid) == 12) & np.char.isdigit(swid)
    if not np.all(well_formed):
        bad = swid[~well_formed][:5].tolist()
        raise ScwQueryError(f"the ScW list holds ids that are not RRRRPPPPSSSF: {bad}")
    number = swid.astype(np.int64) if n else np.zeros(0, np.int64)
    revolution_number = number // 10**8
    pointing = (number // 10**4) % 10**4
    type_digit = number % 10
    version = np.broadcast_to(np.asarray(version).astype("U3"), (n,))
    tstart = np.asarray(tstart, dtype=float)
    tstop = np.asarray(tstop, dtype=float)
    telapse = (tstop - tstart) * SECONDS_PER_DAY if telapse is None else np.asarray(telapse, dtype=float)
    ra_x = np.asarray(ra_x, dtype=float)
    dec_x = np.asarray(dec_x, dtype=float)
    offaxis = SkyCoord(ra_x, dec_x, unit="deg").separation(SkyCoord(ra, dec, unit="deg")).deg if n else np.zeros(0)

    columns = {
        "scw_id": np.char.add(np.char.add(swid, "."), version),
        "revolution": np.char.zfill(revolution_number.astype("U4"), 4) if n else np.zeros(0, "U4"),
        "pointing": pointing.astype(np.int32),
        "scw_type": _TYPE_NAMES[np.minimum(type_digit, len(_TYPE_NAMES) - 1)],
        "tstart": tstart,
        "tstop": tstop,
        "mjd_mid": 0.5 * (tstart + tstop) + IJD_MJD_OFFSET,
        "telapse": telapse,
        "ra_x": ra_x,
        "dec_x": dec_x,
        "offaxis_deg": offaxis,
    }
    for name in ("good_isgri", "good_jemx1", "good_jemx2"):
        values = good.get(name)
        columns[name] = np.full(n, np.nan) if values is None else np.asarray(values, dtype=float)
    columns["ibismode"] = (
        np.full(n, -1, np.int16) if ibismode is None else np.asarray(ibismode, dtype=float).astype(np.int16)
    )
    if obs_id is not None:
        columns["obs_id"] = np.asarray(obs_id).astype(str)

    table = Table(columns)
    for name, column in table.columns.items():
        column.description = SCW_COLUMNS.get(name, "")
        if name in _UNITS:
            column.unit = _UNITS[name]
    if n:
        # A ScW may come twice (several versions in HEASARC): keep its highest version, then order by time.
        order = np.lexsort((version, swid))
        last_of_each = np.append(swid[order][1:] != swid[order][:-1], True)
        if not np.all(last_of_each):
            log.info(
                "%d ScWs were listed in several versions: the highest version of each is kept",
                int((~last_of_each).sum()),
            )
        table = table[order[last_of_each]]
        table = table[np.argsort(np.asarray(table["tstart"]), kind="stable")]
    return table


def _columns_from_body(body: Any) -> dict:
    """The ScW-list answer as a dict column → list, whatever shape the service used."""
    if isinstance(body, dict) and "scwlist" in body:  # return_index_version=yes wraps the answer
        body = body["scwlist"]
    if isinstance(body, list):  # without return_columns the service answers the sorted SWIDs only
        return {"SWID": body}
    if not isinstance(body, dict) or "SWID" not in body:
        raise ScwQueryError(
            f"the ScW-list service answered neither a list of ScWs nor a dict of columns: {str(body)[:300]}"
        )
    lengths = {name: len(values) for name, values in body.items() if isinstance(values, list)}
    if len(set(lengths.values())) > 1:
        raise ScwQueryError(f"the ScW-list service answered columns of different lengths: {lengths}")
    return body


def _mmoda_scwlist(
    session,
    *,
    readiness: str,
    t1_ijd: float,
    t2_ijd: float,
    cone: tuple[float, float, float] | None,
    columns: Sequence[str],
    timeout_s: float,
) -> dict:
    """One ScW-list request; raises :class:`ScwQueryError` (with ``status`` 400 attribute) on refusal."""
    path = f"{SCWLIST_PATH}/{readiness}/{_utc_isot(t1_ijd)}/{_utc_isot(t2_ijd)}"
    params = {"return_columns": ",".join(columns)}
    if cone is not None:
        params.update(ra=repr(float(cone[0])), dec=repr(float(cone[1])), radius=repr(float(cone[2])))
    # connection errors and 5xx are retried by the session within its budget
    response = session.get(path, params=params, timeout_s=timeout_s, what="the ScW-list service")
    if response.status_code >= 500:
        raise ScwQueryError(
            f"the ScW-list service {session.url}/{SCWLIST_PATH} kept failing: HTTP "
            f"{response.status_code}: {response.text[:300]}",
            status=response.status_code,
        )
    if response.status_code != 200:
        raise ScwQueryError(
            f"the ScW-list service refused {response.url} (HTTP {response.status_code}): {response.text[:500]}",
            status=response.status_code,
        )
    try:
        body = response.json()
    except ValueError:
        raise ScwQueryError(
            f"the ScW-list service answered something that is not JSON: {response.text[:300]}"
        ) from None
    return _columns_from_body(body)


def _query_mmoda(
    *, session, readiness: str, t1_ijd: float, t2_ijd: float, cone: tuple[float, float, float], timeout_s: float
) -> tuple[dict, list[str], bool]:
    """The cone query with the extra columns, falling back to the minimal set on a 400."""
    wanted = list(MINIMAL_RETURN_COLUMNS + EXTRA_RETURN_COLUMNS)
    try:
        return (
            _mmoda_scwlist(
                session,
                readiness=readiness,
                t1_ijd=t1_ijd,
                t2_ijd=t2_ijd,
                cone=cone,
                columns=wanted,
                timeout_s=timeout_s,
            ),
            wanted,
            False,
        )
    except ScwQueryError as error:
        if error.status != 400:
            raise
        log.info(
            "the ScW-list service refused the extra columns %s (%s): asking for the minimal set %s; "
            "good times will be missing (TELAPSE is used instead)",
            ",".join(EXTRA_RETURN_COLUMNS),
            str(error)[:200],
            ",".join(MINIMAL_RETURN_COLUMNS),
        )
    minimal = list(MINIMAL_RETURN_COLUMNS)
    return (
        _mmoda_scwlist(
            session, readiness=readiness, t1_ijd=t1_ijd, t2_ijd=t2_ijd, cone=cone, columns=minimal, timeout_s=timeout_s
        ),
        minimal,
        True,
    )


def _table_from_mmoda(body: dict, *, data_version: str, ra: float, dec: float) -> Table:
    def column(name):
        return np.asarray(body[name]) if name in body else None

    missing = [name for name in ("RA_SCX", "DEC_SCX", "TSTART", "TSTOP") if name not in body]
    if missing:
        raise ScwQueryError(f"the ScW-list service did not return the columns {missing}; it returned {list(body)}")
    version = column("SW_VER")
    if version is None:
        version = np.asarray(VERSION_OF_DATA[data_version])
    elif version.size:
        version = np.char.zfill(version.astype(str), 3)
    else:
        # numpy's zfill fails on an empty array: an empty answer is simply no ScW
        version = version.astype("U3")
    return _build_scw_table(
        swid=column("SWID"),
        version=version,
        tstart=column("TSTART"),
        tstop=column("TSTOP"),
        telapse=column("TELAPSE"),
        ra_x=column("RA_SCX"),
        dec_x=column("DEC_SCX"),
        ra=ra,
        dec=dec,
        good={
            "good_isgri": column("GOOD_ISGRI"),
            "good_jemx1": column("GOOD_JEMX1"),
            "good_jemx2": column("GOOD_JEMX2"),
        },
        ibismode=column("IBISMODE"),
        obs_id=column("OBS_ID"),
    )


# -- HEASARC ----------------------------------------------------------------------------------------------------------


def heasarc_adql(
    *,
    mjd_start: float,
    mjd_stop: float,
    ra: float | None = None,
    dec: float | None = None,
    radius: float | None = None,
    columns: Sequence[str] = HEASARC_COLUMNS,
    table: str = HEASARC_TABLE,
) -> str:
    """ADQL for the ScWs of HEASARC's ``intscw`` overlapping a time range, optionally in a cone.

    Parameters
    ----------
    mjd_start, mjd_stop : float
        Time range, UTC MJD (``start_date``/``end_date`` are UTC MJD floats in
        ``intscw``); a ScW is selected if ``end_date > mjd_start`` and
        ``start_date < mjd_stop``.
    ra, dec, radius : float, optional
        Cone on the pointing (``ra``, ``dec`` columns), deg; no cone unless all
        three are given (or when ``radius`` ≥ 180).
    columns : sequence of str
        Columns to select (explicit: with ``columns=None`` astroquery would
        first ask the TAP metadata service).
    table : str
        The TAP table.

    Returns
    -------
    str
        The ADQL query.
    """
    conditions = []
    if ra is not None and dec is not None and radius is not None and radius < 180:
        conditions.append(
            f"CONTAINS(POINT('ICRS',ra,dec),CIRCLE('ICRS',{float(ra):.6f},{float(dec):.6f},{float(radius):.6f}))=1"
        )
    conditions.append(f"end_date > {float(mjd_start):.8f} AND start_date < {float(mjd_stop):.8f}")
    return f"SELECT {','.join(columns)} FROM {table} WHERE " + " AND ".join(conditions)


def _heasarc_rows(
    *,
    mjd_start: float,
    mjd_stop: float,
    cone: tuple[float, float, float] | None,
    columns: Sequence[str],
    max_rows: int,
    depth: int = 0,
) -> Table:
    """Rows of ``intscw`` for a time range; a truncated answer (``max_rows`` rows) is split in two and re-asked."""
    from astroquery.heasarc import Heasarc

    ra, dec, radius = cone if cone is not None else (None, None, None)
    adql = heasarc_adql(mjd_start=mjd_start, mjd_stop=mjd_stop, ra=ra, dec=dec, radius=radius, columns=columns)
    log.debug("HEASARC TAP: %s", adql)
    try:
        result = Heasarc.query_tap(adql, maxrec=max_rows)
    except Exception as error:  # pyvo/requests raise many kinds; all mean "no list from HEASARC"
        raise ScwQueryError(
            f"HEASARC TAP query failed ({type(error).__name__}: {error}); the query was: {adql}"
        ) from error
    rows = result.to_table() if hasattr(result, "to_table") else Table(result)
    rows = Table(rows, copy=False)
    rows.rename_columns(list(rows.colnames), [name.lower() for name in rows.colnames])
    if len(rows) < max_rows:
        return rows
    if depth >= 20 or mjd_stop - mjd_start < 1.0 / 24:
        raise ScwQueryError(f"HEASARC answered {len(rows)} rows (its limit) even for {mjd_start}-{mjd_stop}")
    middle = 0.5 * (mjd_start + mjd_stop)
    log.info("HEASARC answer truncated at %d rows: splitting %.3f-%.3f at %.3f", max_rows, mjd_start, mjd_stop, middle)
    halves = [
        _heasarc_rows(mjd_start=lo, mjd_stop=hi, cone=cone, columns=columns, max_rows=max_rows, depth=depth + 1)
        for lo, hi in ((mjd_start, middle), (middle, mjd_stop))
    ]
    return vstack(halves)  # ScWs spanning the middle come twice: deduplicated by the table builder


def _masked_to_float(column) -> np.ndarray:
    return np.ma.filled(np.ma.asarray(column, dtype=float), np.nan)


def _table_from_heasarc(rows: Table, *, ra: float, dec: float) -> Table:
    required = ("scw_id", "scw_ver", "ra", "dec", "start_date", "end_date")
    missing = [name for name in required if name not in rows.colnames]
    if missing:
        raise ScwQueryError(f"HEASARC answered without the columns {missing}: {rows.colnames}")
    n = len(rows)
    # scw_id is an integer there: its leading zeros are lost (26700060010 is 026700060010).
    ids = np.asarray(np.ma.filled(np.ma.asarray(rows["scw_id"]), -1)).astype(np.int64) if n else np.zeros(0, int)
    versions = np.asarray(np.ma.filled(np.ma.asarray(rows["scw_ver"]), 1)).astype(np.int64) if n else ids
    swid = np.char.zfill(ids.astype(str), 12) if n else np.zeros(0, "U12")
    version = np.char.zfill(versions.astype(str), 3) if n else np.zeros(0, "U3")
    start_mjd_utc = _masked_to_float(rows["start_date"])
    stop_mjd_utc = _masked_to_float(rows["end_date"])
    if n:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ERFA "dubious year"
            tstart = Time(start_mjd_utc, format="mjd", scale="utc").tt.mjd - IJD_MJD_OFFSET
            tstop = Time(stop_mjd_utc, format="mjd", scale="utc").tt.mjd - IJD_MJD_OFFSET
    else:
        tstart = tstop = np.zeros(0)
    good = {
        name: (_masked_to_float(rows[name]) if name in rows.colnames else None)
        for name in ("good_isgri", "good_jemx1", "good_jemx2")
    }
    obs_id = (
        np.asarray(np.ma.filled(np.ma.asarray(rows["obs_id"]).astype(str), "")) if "obs_id" in rows.colnames else None
    )
    return _build_scw_table(
        swid=swid,
        version=version,
        tstart=tstart,
        tstop=tstop,
        telapse=None,
        ra_x=_masked_to_float(rows["ra"]),
        dec_x=_masked_to_float(rows["dec"]),
        ra=ra,
        dec=dec,
        good=good,
        ibismode=None,
        obs_id=obs_id,
    )


# -- the query --------------------------------------------------------------------------------------------------------


def _check_source_and_version(source: str, data_version: str) -> tuple[str, str]:
    source = str(source).lower()
    data_version = str(data_version).upper()
    if source not in ("mmoda", "heasarc"):
        raise ValueError(f"source = {source!r}: use 'mmoda' (the dispatcher's ScW-list service) or 'heasarc'")
    if data_version not in VERSION_OF_DATA:
        raise ValueError(f"data_version = {data_version!r}: use 'CONS' or 'NRT'")
    if source == "heasarc" and data_version == "NRT":
        raise ValueError(
            "HEASARC's intscw holds consolidated ScWs only: use data_version='CONS', or "
            "source='mmoda' for near-real-time data"
        )
    return source, data_version


def query_scws(
    *,
    ra: float,
    dec: float,
    radius: float,
    t1: Any,
    t2: Any,
    data_version: str = "CONS",
    url: str | None = None,
    session=None,
    source: str = "mmoda",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    heasarc_max_rows: int = HEASARC_MAX_ROWS,
) -> Table:
    """List the ScWs overlapping [t1, t2] whose pointing is within ``radius`` of (ra, dec).

    Parameters
    ----------
    ra, dec : float
        Target position (ICRS), deg.
    radius : float
        Largest angle between the target and the pointing axis, deg
        (exclusive, as the services apply it).
    t1, t2 : str, astropy.time.Time or float
        Period: ISOT strings are UTC; numbers are IJD (< 10000) or MJD, TT.
        A ScW is listed if it starts before t2 and ends after t1.
    data_version : {'CONS', 'NRT'}
        Consolidated (ids ``.001``) or near-real-time (``.000``) data.
    url : str, optional
        Dispatcher URL (:func:`integral_workflows.hosts.dispatcher_url`);
        joins the session open for it (see
        :func:`integral_workflows.session.session_for`).
    session : integral_workflows.session.Session, optional
        The network seam; ``session`` or ``url`` is required for ``source='mmoda'``.
    source : {'mmoda', 'heasarc'}
        The dispatcher's ``gw/timesystem`` ScW-list service, or HEASARC's
        ``intscw`` through astroquery TAP (online only).
    timeout_s : float
        Timeout of each HTTP request, s.
    heasarc_max_rows : int
        Rows per HEASARC query (its limit is 100 000); a full answer is split
        in time and asked again.

    Returns
    -------
    astropy.table.Table
        One row per ScW, sorted by time, with the columns of
        :data:`SCW_COLUMNS`; ``meta['query']`` describes the query (source,
        position, period, columns obtained, elapsed time).

    Raises
    ------
    ValueError
        For a bad argument (no URL, unknown source or data version, radius
        out of range, t2 before t1).
    ScwQueryError
        If the service refuses the query or keeps failing.
    integral_workflows.session.BackendUnavailable
        If the dispatcher is gone.
    """
    source, data_version = _check_source_and_version(source, data_version)
    ra, dec, radius = float(ra), float(dec), float(radius)
    if not (math.isfinite(ra) and -90.0 <= dec <= 90.0):
        raise ValueError(f"position ra={ra}, dec={dec} is not a sky position (deg)")
    if not 0.0 < radius <= 180.0:
        raise ValueError(f"radius = {radius} deg: must be in (0, 180]")
    start, stop = _as_time(t1, "t1"), _as_time(t2, "t2")
    t1_ijd, t2_ijd = _ijd(start), _ijd(stop)
    if t2_ijd <= t1_ijd:
        raise ValueError(f"t2 ({t2}) must be later than t1 ({t1})")
    started = time.perf_counter()
    columns_used: list[str]
    fallback = False
    if source == "mmoda":
        session = _mmoda_session(session, url)
        url = session.url
        body, columns_used, fallback = _query_mmoda(
            session=session,
            readiness=_READINESS_OF_DATA[data_version],
            t1_ijd=t1_ijd - _QUERY_PAD_DAYS,
            t2_ijd=t2_ijd + _QUERY_PAD_DAYS,
            cone=(ra, dec, radius),
            timeout_s=timeout_s,
        )
        table = _table_from_mmoda(body, data_version=data_version, ra=ra, dec=dec)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mjd_start, mjd_stop = float(start.utc.mjd), float(stop.utc.mjd)
        rows = _heasarc_rows(
            mjd_start=mjd_start,
            mjd_stop=mjd_stop,
            cone=(ra, dec, radius),
            columns=HEASARC_COLUMNS,
            max_rows=heasarc_max_rows,
        )
        columns_used = [name for name in HEASARC_COLUMNS if name in rows.colnames]
        table = _table_from_heasarc(rows, ra=ra, dec=dec)
    returned = len(table)
    # The services were asked a slightly wider period (see _QUERY_PAD_DAYS) and may round the cone: cut exactly here.
    exact = (
        (np.asarray(table["tstart"]) < t2_ijd)
        & (np.asarray(table["tstop"]) > t1_ijd)
        & (np.asarray(table["offaxis_deg"]) < radius)
    )
    if not np.all(exact):
        log.debug("%d ScWs of the answer fall outside the exact period or cone", int((~exact).sum()))
        table = table[exact]
    elapsed = time.perf_counter() - started
    table.meta["query"] = {
        "source": source,
        "url": url if source == "mmoda" else "HEASARC TAP " + HEASARC_TABLE,
        "ra": ra,
        "dec": dec,
        "radius": radius,
        "t1": start.utc.isot,
        "t2": stop.utc.isot,
        "t1_ijd": t1_ijd,
        "t2_ijd": t2_ijd,
        "data_version": data_version,
        "columns": list(columns_used),
        "minimal_columns_fallback": bool(fallback),
        "n_returned": int(returned),
        "n_scw": len(table),
        "elapsed_s": round(elapsed, 3),
        "queried_at": Time.now().utc.isot,
    }
    log.info(
        "%d ScWs within %.2f deg of (%.4f, %.4f) from %s to %s (%s, %s) in %.2f s",
        len(table),
        radius,
        ra,
        dec,
        start.utc.isot,
        stop.utc.isot,
        source,
        data_version,
        elapsed,
    )
    return table


def _revolution_windows(table: Table, revolutions: Sequence[str]) -> list[tuple[float, float]]:
    """Merged time windows (IJD) that contain the whole of each revolution in ``revolutions``."""
    rev = np.asarray(table["revolution"])
    tstart = np.asarray(table["tstart"], dtype=float)
    tstop = np.asarray(table["tstop"], dtype=float)
    windows = []
    for revolution in revolutions:
        mask = rev == revolution
        windows.append((tstart[mask].min() - REVOLUTION_PAD_DAYS, tstop[mask].max() + REVOLUTION_PAD_DAYS))
    windows.sort()
    merged: list[list[float]] = []
    for lo, hi in windows:
        if merged and lo <= merged[-1][1] + _MERGE_GAP_DAYS:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return [(lo, hi) for lo, hi in merged]


def revolution_extents(
    table: Table,
    *,
    url: str | None = None,
    session=None,
    data_version: str = "CONS",
    source: str = "mmoda",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    cache: dict[str, int] | None = None,
    heasarc_max_rows: int = HEASARC_MAX_ROWS,
) -> dict[str, int]:
    """Highest pointing number of each revolution of ``table``, over the whole revolution.

    The radiation-belt rule needs the last pointing of each revolution, which
    a cone query usually misses. The same service is asked again without a
    cone, for time windows padded by :data:`REVOLUTION_PAD_DAYS` around the
    revolutions' ScWs (a revolution lasts under 3 days), neighbouring windows
    merged so that each part of the period is fetched once.

    Parameters
    ----------
    table : astropy.table.Table
        ScWs from :func:`query_scws` (columns ``revolution``, ``tstart``,
        ``tstop``).
    url, session, data_version, source, timeout_s, heasarc_max_rows
        As for :func:`query_scws`.
    cache : dict, optional
        Revolution → highest pointing, filled and reused across calls (e.g.
        one per notebook); revolutions already in it are not asked again.

    Returns
    -------
    dict of str to int
        Revolution (4 digits) → highest pointing number (PPPP) among its
        pointing ScWs. A revolution the service does not list (should not
        happen) takes the highest pointing of ``table``, with a warning.
    """
    source, data_version = _check_source_and_version(source, data_version)
    cache = {} if cache is None else cache
    wanted = sorted(set(np.asarray(table["revolution"]).tolist()))
    missing = [rev for rev in wanted if rev not in cache]
    if missing:
        session = _mmoda_session(session, url) if source == "mmoda" else None
        windows = _revolution_windows(table, missing)
        started = time.perf_counter()
        ids: list[np.ndarray] = []
        for lo, hi in windows:
            if source == "mmoda":
                body = _mmoda_scwlist(
                    session,
                    readiness=_READINESS_OF_DATA[data_version],
                    t1_ijd=lo,
                    t2_ijd=hi,
                    cone=None,
                    columns=["SWID"],
                    timeout_s=timeout_s,
                )
                ids.append(np.asarray(body["SWID"]).astype("U12"))
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    mjd_lo, mjd_hi = Time(np.array([lo, hi]) + IJD_MJD_OFFSET, format="mjd", scale="tt").utc.mjd
                rows = _heasarc_rows(
                    mjd_start=mjd_lo, mjd_stop=mjd_hi, cone=None, columns=("scw_id",), max_rows=heasarc_max_rows
                )
                numbers = np.asarray(np.ma.filled(np.ma.asarray(rows["scw_id"]), -1)).astype(np.int64)
                ids.append(np.char.zfill(numbers[numbers >= 0].astype(str), 12))
        every = np.concatenate(ids) if ids else np.zeros(0, "U12")
        number = every.astype(np.int64) if len(every) else np.zeros(0, np.int64)
        pointings = number[number % 10 == 0]  # type digit 0: pointings; slews carry their target's number
        revolution_number = pointings // 10**8
        pointing = (pointings // 10**4) % 10**4
        found: dict[str, int] = {}
        if len(pointings):
            order = np.lexsort((pointing, revolution_number))
            revs_sorted, points_sorted = revolution_number[order], pointing[order]
            last = np.append(revs_sorted[1:] != revs_sorted[:-1], True)
            found = {f"{r:04d}": int(p) for r, p in zip(revs_sorted[last], points_sorted[last])}
        for rev in missing:
            if rev in found:
                cache[rev] = found[rev]
            else:
                in_cone = int(np.asarray(table["pointing"])[np.asarray(table["revolution"]) == rev].max())
                log.warning(
                    "revolution %s is not in the service's full ScW list: its highest pointing is taken "
                    "from the cone query (%04d), which may be too low",
                    rev,
                    in_cone,
                )
                cache[rev] = in_cone
        log.info(
            "highest pointing of %d revolutions from %d ScW-list requests (%d ScWs) in %.2f s",
            len(missing),
            len(windows),
            len(every),
            time.perf_counter() - started,
        )
    return {rev: cache[rev] for rev in wanted}


# -- cuts -------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class CutStep:
    """One cut of a selection: what it does and what it removed.

    Attributes
    ----------
    name : str
        Short name (``pointings only``, ``bad revolutions``, ``radiation belts``,
        ``good time``, ``sample``).
    rule : str
        The rule in words, with its settings.
    enabled : bool
        False when the cut was switched off (it then removes nothing).
    removed : int
        ScWs removed by this cut (not by an earlier one).
    remaining : int
        ScWs left after it.
    scw_ids : list of str
        The removed ScWs.
    reasons : list of str
        Why each was removed (same order as ``scw_ids``).
    """

    name: str
    rule: str
    enabled: bool
    removed: int
    remaining: int
    scw_ids: list = dataclasses.field(default_factory=list)
    reasons: list = dataclasses.field(default_factory=list)

    def as_dict(self, *, include_removed: bool = True) -> dict:
        """JSON-safe dict; without the per-ScW lists if ``include_removed`` is False."""
        out = {
            "name": self.name,
            "rule": self.rule,
            "enabled": bool(self.enabled),
            "removed": int(self.removed),
            "remaining": int(self.remaining),
        }
        if include_removed:
            out["scw_ids"] = [str(s) for s in self.scw_ids]
            out["reasons"] = [str(r) for r in self.reasons]
        return out


@dataclasses.dataclass
class CutReport:
    """What a ScW selection did: counts before, per cut and after, and the good exposure kept.

    Attributes
    ----------
    initial : int
        ScWs returned by the query.
    steps : list of CutStep
        The cuts in the order they were applied.
    final : int
        ScWs kept.
    good_exposure_s : float
        Sum of the instrument's good time of the kept ScWs, s.
    instrument : str
        ``isgri``, ``jemx1`` or ``jemx2``: whose good time was used.
    notes : list of str
        Anything worth knowing (fallbacks used).
    removed_rows : astropy.table.Table or None
        The rows removed by :func:`apply_cuts`, with columns ``cut`` and
        ``cut_reason`` (for plots; ScWs left out by :func:`sample` are not
        added); not part of :meth:`as_dict`.
    """

    initial: int
    steps: list = dataclasses.field(default_factory=list)
    final: int = 0
    good_exposure_s: float = 0.0
    instrument: str = "isgri"
    notes: list = dataclasses.field(default_factory=list)
    removed_rows: Table | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def removed_by_cut(self) -> dict[str, int]:
        """Cut name → ScWs it removed."""
        return {step.name: step.removed for step in self.steps}

    def reason_of(self, scw_id: str) -> str | None:
        """Why ``scw_id`` was removed, or None if it was not."""
        for step in self.steps:
            if scw_id in step.scw_ids:
                return f"{step.name}: {step.reasons[step.scw_ids.index(scw_id)]}"
        return None

    def as_table(self) -> Table:
        """One row per cut: name, enabled, removed, remaining, rule (plus a first row for the query)."""
        rows = [("query", True, 0, self.initial, "ScWs listed by the query")]
        rows += [(s.name, s.enabled, s.removed, s.remaining, s.rule) for s in self.steps]
        return Table(
            rows=rows, names=("cut", "enabled", "removed", "remaining", "rule"), dtype=("U32", bool, "i8", "i8", "U200")
        )

    def removed_table(self) -> Table:
        """One row per removed ScW: ``scw_id``, ``cut``, ``reason``."""
        ids = [s for step in self.steps for s in step.scw_ids]
        cuts = [step.name for step in self.steps for _ in step.scw_ids]
        reasons = [r for step in self.steps for r in step.reasons]
        return Table(
            {
                "scw_id": np.asarray(ids, dtype="U16"),
                "cut": np.asarray(cuts, dtype="U32"),
                "reason": np.asarray(reasons, dtype=str) if reasons else np.zeros(0, "U1"),
            }
        )

    def to_markdown(self, *, list_removed: int = 0) -> str:
        """The report as Markdown: a summary line, the table of cuts, notes.

        Parameters
        ----------
        list_removed : int
            Also list up to this many removed ScWs per cut, with their reason.

        Returns
        -------
        str
        """
        label = {"isgri": "ISGRI", "jemx1": "JEM-X1", "jemx2": "JEM-X2"}.get(self.instrument, self.instrument)
        lines = [
            f"**ScW selection ({label})**: {self.initial} ScWs listed, {self.final} kept, "
            f"good exposure {self.good_exposure_s / 1e6:.3f} Ms ({self.good_exposure_s / 1e3:.1f} ks).",
            "",
            "| cut | removed | remaining | rule |",
            "|---|---:|---:|---|",
            f"| query | | {self.initial} | ScWs listed by the query |",
        ]
        for step in self.steps:
            rule = step.rule if step.enabled else f"(off) {step.rule}"
            lines.append(f"| {step.name} | {step.removed} | {step.remaining} | {rule.replace('|', '/')} |")
        if self.notes:
            lines += ["", "Notes:"] + [f"- {note}" for note in self.notes]
        if list_removed > 0:
            for step in self.steps:
                if step.scw_ids:
                    lines += ["", f"Removed by *{step.name}* ({step.removed}):"]
                    lines += [f"- `{s}`: {r}" for s, r in list(zip(step.scw_ids, step.reasons))[:list_removed]]
                    if step.removed > list_removed:
                        lines.append(f"- ... and {step.removed - list_removed} more")
        return "\n".join(lines) + "\n"

    def as_dict(self, *, include_removed: bool = True) -> dict:
        """JSON-safe dict (see :meth:`from_dict`); per-ScW lists only if ``include_removed``."""
        return {
            "initial": int(self.initial),
            "final": int(self.final),
            "good_exposure_s": float(self.good_exposure_s),
            "instrument": str(self.instrument),
            "removed_by_cut": {k: int(v) for k, v in self.removed_by_cut.items()},
            "steps": [step.as_dict(include_removed=include_removed) for step in self.steps],
            "notes": [str(n) for n in self.notes],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CutReport:
        """Rebuild a report from :meth:`as_dict` (``removed_rows`` is not kept)."""
        steps = [
            CutStep(
                name=s["name"],
                rule=s["rule"],
                enabled=s["enabled"],
                removed=s["removed"],
                remaining=s["remaining"],
                scw_ids=list(s.get("scw_ids", [])),
                reasons=list(s.get("reasons", [])),
            )
            for s in data.get("steps", [])
        ]
        return cls(
            initial=int(data["initial"]),
            steps=steps,
            final=int(data["final"]),
            good_exposure_s=float(data["good_exposure_s"]),
            instrument=str(data.get("instrument", "isgri")),
            notes=list(data.get("notes", [])),
        )


def _good_time_column(instrument: str, jemx_unit: int) -> tuple[str, str]:
    instrument = str(instrument).lower()
    if instrument == "isgri":
        return "good_isgri", "isgri"
    if instrument == "jemx":
        if int(jemx_unit) not in (1, 2):
            raise ValueError(f"jemx_unit = {jemx_unit!r}: use 1 or 2")
        return f"good_jemx{int(jemx_unit)}", f"jemx{int(jemx_unit)}"
    raise ValueError(f"instrument = {instrument!r}: use 'isgri' or 'jemx'")


def _good_exposure(table: Table) -> float:
    if len(table) == 0 or "good_time_s" not in table.colnames:
        return 0.0
    return float(np.nansum(np.asarray(table["good_time_s"], dtype=float)))


def apply_cuts(
    table: Table,
    *,
    instrument: str = "isgri",
    jemx_unit: int = 1,
    pointings_only: bool = True,
    min_good_time_s: float | None = 1000.0,
    exclude_radiation_belts: bool = True,
    revolution_extents: Mapping[str, int] | None = None,
    bad_revolutions: Iterable[str] | None = DEFAULT_BAD_REVOLUTIONS,
    belt_first: int = 5,
    belt_last: int = 10,
) -> tuple[Table, CutReport]:
    """Apply the selection cuts in order, counting what each removes.

    Each ScW is attributed to the first cut that removes it. The kept table
    gains a column ``good_time_s``: the instrument's good time (TELAPSE where
    the source gave none).

    Parameters
    ----------
    table : astropy.table.Table
        ScWs from :func:`query_scws`.
    instrument : {'isgri', 'jemx'}
        Whose good time counts.
    jemx_unit : {1, 2}
        JEM-X unit (JEM-X only).
    pointings_only : bool
        Drop slews and engineering windows.
    min_good_time_s : float or None
        Keep ScWs with good time **above** this (s), as ``good_isgri > 1000``
        in the student's selection and ``min_good_isgri`` in the ScW-list
        service; 0 still drops ScWs without any good time; None switches the
        cut off.
    exclude_radiation_belts : bool
        Drop pointings with PPPP ≤ ``belt_first`` or PPPP > highest −
        ``belt_last`` of their revolution.
    revolution_extents : mapping of str to int, optional
        Revolution → highest pointing number of the whole revolution, from
        :func:`revolution_extents`. Without it the highest pointing in
        ``table`` is used, with a warning (a cone query misses the end of
        most revolutions, so belt pointings would be kept).
    bad_revolutions : iterable of str or None
        Revolutions to drop (4-digit strings; ints are accepted);
        :data:`DEFAULT_BAD_REVOLUTIONS` by default; None or empty: no cut.
    belt_first, belt_last : int
        How many pointings at the start and end of a revolution are taken as
        in the radiation belts.

    Returns
    -------
    (astropy.table.Table, CutReport)
        The kept ScWs (time order, ``meta['cut_report']`` set) and the report.
    """
    good_column, instrument_label = _good_time_column(instrument, jemx_unit)
    n = len(table)
    report = CutReport(initial=n, instrument=instrument_label)
    work = table.copy(copy_data=True)

    good = np.asarray(work[good_column], dtype=float) if good_column in work.colnames else np.full(n, np.nan)
    missing_good = ~np.isfinite(good)
    if np.any(missing_good):
        note = (
            f"{int(missing_good.sum())} of {n} ScWs have no {good_column} from the ScW source: their TELAPSE is "
            f"used as good time instead"
        )
        log.info(note)
        report.notes.append(note)
        good = np.where(missing_good, np.asarray(work["telapse"], dtype=float), good)
    work["good_time_s"] = good
    work["good_time_s"].unit = u.s
    work["good_time_s"].description = f"good time of {instrument_label} used by the cuts, s"

    keep = np.ones(n, dtype=bool)
    scw_id = np.asarray(work["scw_id"])
    revolution = np.asarray(work["revolution"])
    pointing = np.asarray(work["pointing"], dtype=int)
    cut_name = np.zeros(n, dtype="U32")
    cut_reason = np.zeros(n, dtype=object)

    def record(name: str, rule: str, enabled: bool, remove: np.ndarray | None, reasons_for) -> None:
        if not enabled or remove is None:
            report.steps.append(CutStep(name, rule, False, 0, int(keep.sum())))
            return
        remove = remove & keep
        index = np.flatnonzero(remove)
        reasons = reasons_for(index) if len(index) else []
        keep[index] = False
        cut_name[index] = name
        cut_reason[index] = reasons
        report.steps.append(
            CutStep(
                name, rule, True, len(index), int(keep.sum()), scw_ids=scw_id[index].tolist(), reasons=list(reasons)
            )
        )
        log.info("cut %-16s removed %6d ScWs, %6d remain", name, len(index), int(keep.sum()))

    # 1. Pointings only: slews and engineering windows have no fixed attitude to image.
    scw_type = np.asarray(work["scw_type"])
    record(
        "pointings only",
        "keep pointing ScWs (type digit 0), drop slews and engineering windows",
        pointings_only,
        scw_type != "pointing",
        lambda index: [f"{scw_type[i]} ScW, not a pointing" for i in index],
    )

    # 2. Bad revolutions.
    bad = _normalise_revolutions(bad_revolutions)
    shown = ", ".join(bad) if len(bad) <= 20 else ", ".join(bad[:20]) + f", ... ({len(bad)} in all)"
    record(
        "bad revolutions",
        f"drop revolutions {shown}",
        bool(bad),
        np.isin(revolution, bad),
        lambda index: [f"revolution {revolution[i]} is in the bad-revolution list" for i in index],
    )

    # 3. Radiation belts, by the highest pointing number of the whole revolution.
    highest = np.zeros(n, dtype=int)
    if exclude_radiation_belts and n:
        # Keys as 4-digit strings whatever the caller used (128 or '0128').
        extents = {str(rev).strip().zfill(4): int(top) for rev, top in (revolution_extents or {}).items()}
        unknown = sorted(set(revolution.tolist()) - set(extents))
        if unknown:
            note = (
                f"no full-revolution extent for {len(unknown)} revolutions ({', '.join(unknown[:10])}"
                f"{', ...' if len(unknown) > 10 else ''}): their highest pointing is taken from the queried "
                "ScWs, which can miss the end of the revolution (use revolution_extents())"
            )
            log.warning(note)
            report.notes.append(note)
            for rev in unknown:
                extents[rev] = int(pointing[revolution == rev].max())
        highest = np.array([extents[rev] for rev in revolution.tolist()], dtype=int)
    in_belts = (pointing <= belt_first) | (pointing > highest - belt_last)
    record(
        "radiation belts",
        f"drop pointings PPPP <= {belt_first} or PPPP > highest - {belt_last} of their "
        "revolution (highest over the whole revolution)",
        exclude_radiation_belts,
        in_belts,
        lambda index: [
            f"pointing {pointing[i]:04d} of revolution {revolution[i]} is among the first "
            f"{belt_first} or last {belt_last} (highest {highest[i]:04d})"
            for i in index
        ],
    )

    # 4. Good time of the instrument.
    enabled = min_good_time_s is not None
    threshold = float(min_good_time_s) if enabled else 0.0
    record(
        "good time",
        f"keep {good_column} > {threshold:.0f} s",
        enabled,
        ~(good > threshold),
        lambda index: [f"{good_column} {good[i]:.0f} s <= {threshold:.0f} s" for i in index],
    )

    kept = work[keep]
    removed = work[~keep]
    removed["cut"] = cut_name[~keep]
    removed["cut_reason"] = np.asarray(cut_reason[~keep].tolist(), dtype=str) if len(removed) else np.zeros(0, "U1")
    report.removed_rows = removed
    report.final = len(kept)
    report.good_exposure_s = _good_exposure(kept)
    kept.meta["cut_report"] = report.as_dict()
    log.info("ScW selection: %d listed, %d kept, good exposure %.3f Ms", n, len(kept), report.good_exposure_s / 1e6)
    return kept, report


def sample(table: Table, n_scw_image: float, *, seed: int | None, report: CutReport | None = None) -> Table:
    """Draw ScWs at random (seeded), e.g. those that make the catalog image.

    Parameters
    ----------
    table : astropy.table.Table
        ScWs to draw from.
    n_scw_image : int or float
        ``-1``: all; between -1 and 0: that fraction (``-0.2`` = 20 %, at
        least one ScW); ``> 0``: that many (all if there are fewer).
    seed : int or None
        Seed of the ``numpy.random.Generator``: the same seed and table give
        the same draw.
    report : CutReport, optional
        Record the draw as a step ``sample`` (final count and exposure updated).

    Returns
    -------
    astropy.table.Table
        The drawn ScWs, sorted by time.

    Raises
    ------
    ValueError
        For 0, values below -1, or a positive value that is not whole.
    """
    value = float(n_scw_image)
    n = len(table)
    if value == -1:
        count, rule = n, "all ScWs (n_scw_image = -1)"
    elif -1 < value < 0:
        count = min(n, max(1, int(round(-value * n)))) if n else 0
        rule = f"draw {-value:.0%} of the ScWs at random (seed {seed})"
    elif value > 0 and value.is_integer():
        count = min(n, int(value))
        if value > n:
            log.info("n_scw_image = %d but only %d ScWs are selected: all are used", int(value), n)
        rule = f"draw {int(value)} ScWs at random (seed {seed})"
    else:
        raise ValueError(
            f"n_scw_image = {n_scw_image!r}: use -1 (all), a fraction between -1 and 0, or a whole number > 0"
        )
    generator = np.random.default_rng(seed)
    chosen = np.sort(generator.choice(n, size=count, replace=False)) if count < n else np.arange(n)
    drawn = table[chosen]
    drawn = drawn[np.argsort(np.asarray(drawn["tstart"]), kind="stable")] if len(drawn) else drawn
    if report is not None:
        left_out = np.setdiff1d(np.arange(n), chosen)
        ids = np.asarray(table["scw_id"])[left_out].tolist()
        report.steps.append(
            CutStep("sample", rule, value != -1, len(ids), len(drawn), scw_ids=ids, reasons=["not drawn"] * len(ids))
        )
        report.final = len(drawn)
        report.good_exposure_s = _good_exposure(drawn)
        drawn.meta["cut_report"] = report.as_dict()
    log.info("sample: %d of %d ScWs (n_scw_image = %s, seed %s)", len(drawn), n, n_scw_image, seed)
    return drawn


def _parameter(parameters: Mapping[str, Any], name: str) -> Any:
    """A parameter's value, or its block's default when the mapping lacks it."""
    from .parameters.models import default_value

    if name in parameters:
        return parameters[name]
    return default_value(name)


def select_scws(
    parameters: Mapping[str, Any],
    *,
    url: str | None = None,
    session=None,
    draw_sample: bool = False,
    use_default_bad_revolutions: bool = True,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    extents_cache: dict[str, int] | None = None,
) -> tuple[Table, CutReport]:
    """The whole selection for a set of workflow parameters: query, revolution extents, cuts, (sample).

    Parameters
    ----------
    parameters : mapping
        A parameter model (:mod:`integral_workflows.parameters`) or any mapping
        with its names: ``T1``, ``T2``, ``RA``, ``DEC`` (already resolved:
        RA = DEC = 0, the "look the name up" convention, is refused),
        ``radius`` (None: the instrument default), ``instrument``,
        ``jemx_unit``, ``data_version``, ``scw_source``, ``min_good_time_s``,
        ``exclude_radiation_belts``, ``bad_revolutions``, ``pointings_only``,
        ``n_scw_image``, ``random_seed``. Missing names take their block's default
        (:func:`integral_workflows.parameters.models.default_value`).
    url : str, optional
        Dispatcher URL (``url`` or ``session`` is required for ``scw_source='mmoda'``).
    session : integral_workflows.session.Session, optional
        The network seam.
    draw_sample : bool
        Also draw ``n_scw_image`` ScWs with ``random_seed`` (:func:`sample`).
        Off by default: ``n_scw_image`` sizes the catalog image, while light
        curves and spectra use every selected ScW.
    use_default_bad_revolutions : bool
        Drop :data:`DEFAULT_BAD_REVOLUTIONS` as well as the parameter
        ``bad_revolutions``.
    timeout_s : float
        Timeout of each HTTP request, s.
    extents_cache : dict, optional
        Shared cache of revolution extents (see :func:`revolution_extents`).

    Returns
    -------
    (astropy.table.Table, CutReport)
        The selected ScWs (``meta['query']`` and ``meta['cut_report']`` set)
        and the report.
    """
    from .parameters.blocks import INSTRUMENT_DEFAULTS

    ra, dec = _parameter(parameters, "RA"), _parameter(parameters, "DEC")
    if ra == 0 and dec == 0:
        raise ValueError(
            "RA = DEC = 0 means 'look src_name up': resolve the coordinates first "
            "(integral_workflows.targets.coordinates_for(parameters)) and pass RA and DEC"
        )
    instrument = str(_parameter(parameters, "instrument")).lower()
    radius = _parameter(parameters, "radius")
    if radius is None:
        radius = INSTRUMENT_DEFAULTS["radius"][instrument]
    source = _parameter(parameters, "scw_source")
    data_version = _parameter(parameters, "data_version")
    if str(source).lower() == "mmoda":
        session = _mmoda_session(session, url)
    table = query_scws(
        ra=ra,
        dec=dec,
        radius=radius,
        t1=_parameter(parameters, "T1"),
        t2=_parameter(parameters, "T2"),
        data_version=data_version,
        session=session,
        source=source,
        timeout_s=timeout_s,
    )
    exclude_belts = bool(_parameter(parameters, "exclude_radiation_belts"))
    extents = (
        revolution_extents(
            table, session=session, data_version=data_version, source=source, timeout_s=timeout_s, cache=extents_cache
        )
        if exclude_belts and len(table)
        else None
    )
    bad = set(_normalise_revolutions(_parameter(parameters, "bad_revolutions")))
    if use_default_bad_revolutions:
        bad |= set(DEFAULT_BAD_REVOLUTIONS)
    kept, report = apply_cuts(
        table,
        instrument=instrument,
        jemx_unit=int(_parameter(parameters, "jemx_unit")),
        pointings_only=bool(_parameter(parameters, "pointings_only")),
        min_good_time_s=_parameter(parameters, "min_good_time_s"),
        exclude_radiation_belts=exclude_belts,
        revolution_extents=extents,
        bad_revolutions=sorted(bad),
    )
    if draw_sample:
        kept = sample(
            kept, _parameter(parameters, "n_scw_image"), seed=_parameter(parameters, "random_seed"), report=report
        )
    kept.meta["query"] = dict(table.meta.get("query", {}))
    kept.meta["cut_report"] = report.as_dict()
    return kept, report


def scw_ids(table: Table) -> list[str]:
    """The ScW ids (``RRRRPPPPSSSF.VVV``) of ``table``, in its order, as MMODA's ``scw_list`` wants them."""
    ids = [str(s) for s in np.asarray(table["scw_id"]).tolist()]
    bad = [s for s in ids if not _SCW_ID_PATTERN.match(s)]
    if bad:
        raise ValueError(f"ScW ids must look like RRRRPPPPSSSF.VVV, got {bad[:5]}")
    return ids


def cut_rows(initial: Table, kept: Table) -> Table:
    """Rows of ``initial`` that are not in ``kept`` (by ``scw_id``): the ScWs a selection removed."""
    return initial[~np.isin(np.asarray(initial["scw_id"]), np.asarray(kept["scw_id"]))]


# -- files ------------------------------------------------------------------------------------------------------------

_FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz")
_META_EXTNAME = "SELECTION"
_SCW_EXTNAME = "SCWS"
_JSON_CHUNK = 2000
#: Header keywords of the SCWS extension (8 characters at most, standard FITS) → key of ``meta['query']``.
_FITS_KEYWORDS = {
    "RA_OBJ": "ra",
    "DEC_OBJ": "dec",
    "RADIUS": "radius",
    "DATE-BEG": "t1",
    "DATE-END": "t2",
    "DATAVERS": "data_version",
    "SCWSRC": "source",
}


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


def write_scw_table(table: Table, path: str | Path, *, report: CutReport | None = None, overwrite: bool = True) -> Path:
    """Write a ScW table with its query and cut report: ECSV or FITS by the file's extension.

    Parameters
    ----------
    table : astropy.table.Table
        ScWs (from :func:`select_scws`, :func:`apply_cuts`, :func:`query_scws`).
    path : str or Path
        ``.ecsv``: the report and query go to the YAML header. ``.fits``
        (``.fit``, ``.fits.gz``): the ScWs go to extension ``SCWS`` and the
        report and query, as JSON, to extension ``SELECTION``.
    report : CutReport, optional
        Replaces ``table.meta['cut_report']`` (e.g. after :func:`sample`).
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path
    """
    path = Path(path)
    meta = _json_safe({key: value for key, value in table.meta.items()})
    if report is not None:
        meta["cut_report"] = report.as_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    out = table.copy(copy_data=False)  # the caller's meta stays as it is
    name = path.name.lower()
    if name.endswith(".ecsv"):
        out.meta = meta
        out.write(path, format="ascii.ecsv", overwrite=overwrite)
    elif name.endswith(_FITS_SUFFIXES):
        # FITS headers take scalars only: the nested query and report go to their own extension as JSON text.
        query = meta.get("query", {})
        out.meta = {keyword: query[key] for keyword, key in _FITS_KEYWORDS.items() if key in query}
        scws = fits.table_to_hdu(out)
        scws.name = _SCW_EXTNAME
        text = json.dumps(meta)
        chunks = [text[i : i + _JSON_CHUNK] for i in range(0, len(text), _JSON_CHUNK)] or [""]
        selection = fits.BinTableHDU(Table({"json": np.asarray(chunks, dtype=f"U{_JSON_CHUNK}")}), name=_META_EXTNAME)
        selection.header["COMMENT"] = "JSON of the ScW query and cut report, split in rows: join them"
        fits.HDUList([fits.PrimaryHDU(), scws, selection]).writeto(path, overwrite=overwrite)
    else:
        raise ValueError(f"{path}: use a .ecsv or .fits file name")
    log.info("%d ScWs written to %s", len(table), path)
    return path


def read_scw_table(path: str | Path) -> Table:
    """Read a table written by :func:`write_scw_table`.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    astropy.table.Table
        With ``meta['query']`` and ``meta['cut_report']`` as written
        (:meth:`CutReport.from_dict` rebuilds the report).
    """
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".ecsv"):
        return Table.read(path, format="ascii.ecsv")
    if name.endswith(_FITS_SUFFIXES):
        table = Table.read(path, hdu=_SCW_EXTNAME)
        table.convert_bytestring_to_unicode()  # FITS strings come back as bytes
        with fits.open(path) as hdus:
            if _META_EXTNAME in hdus:
                chunks = hdus[_META_EXTNAME].data["json"]
                meta = json.loads("".join(str(c) for c in chunks))
            else:
                meta = {}
        table.meta = meta
        return table
    raise ValueError(f"{path}: use a .ecsv or .fits file name")


# -- plots ------------------------------------------------------------------------------------------------------------


def _mjd_to_plot_dates(mjd: np.ndarray) -> np.ndarray:
    """MJD → matplotlib date numbers (days since matplotlib's epoch), vectorised."""
    import matplotlib.dates as mdates

    epoch_mjd = Time(mdates.get_epoch().replace("T", " "), scale="utc").mjd
    return np.asarray(mjd, dtype=float) - epoch_mjd


def _month_keys(mjd: np.ndarray) -> np.ndarray:
    """Year × 12 + month − 1 of each MJD (UTC calendar)."""
    if len(mjd) == 0:
        return np.zeros(0, dtype=int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ymdhms = Time(np.asarray(mjd, dtype=float), format="mjd", scale="tt").utc.ymdhms
    return np.asarray(ymdhms["year"], dtype=int) * 12 + np.asarray(ymdhms["month"], dtype=int) - 1


def _month_range(*tables: Table | None) -> np.ndarray:
    keys = np.concatenate(
        [_month_keys(np.asarray(t["mjd_mid"])) for t in tables if t is not None and len(t)] or [np.zeros(0, int)]
    )
    if len(keys) == 0:
        return np.zeros(0, dtype=int)
    return np.arange(keys.min(), keys.max() + 1)


def _month_dates(keys: np.ndarray) -> np.ndarray:
    """Matplotlib dates of the first day of each month key."""
    import datetime as dt

    import matplotlib.dates as mdates

    return mdates.date2num([dt.datetime(int(k // 12), int(k % 12) + 1, 1) for k in keys])


def _per_month(table: Table | None, months: np.ndarray, weights: str | None = None) -> np.ndarray:
    if table is None or len(table) == 0 or len(months) == 0:
        return np.zeros(len(months))
    keys = _month_keys(np.asarray(table["mjd_mid"]))
    values = None if weights is None else np.nan_to_num(np.asarray(table[weights], dtype=float))
    return np.bincount(keys - months[0], weights=values, minlength=len(months))[: len(months)]


def _new_figure(*, nrows: int = 1, height: float = 3.5):
    from matplotlib.figure import Figure

    # A bare Figure (no pyplot): no global state, no duplicate display in notebooks, no leak in loops.
    figure = Figure(figsize=(10, height), layout="constrained")
    axes = figure.subplots(nrows, 1, sharex=True, squeeze=False)[:, 0]
    return figure, axes


def _finish(figure, path: str | Path | None):
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=120)
        log.info("figure saved to %s", path)
    return figure


def _date_axis(ax) -> None:
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def _good_time_name(table: Table) -> str:
    return "good_time_s" if "good_time_s" in table.colnames else "good_isgri"


def plot_scws_per_month(
    kept: Table, *, cut: Table | None = None, ax=None, path: str | Path | None = None, title: str | None = None
):
    """Bar chart of ScWs per month; stacked kept + cut when ``cut`` is given.

    Parameters
    ----------
    kept : astropy.table.Table
        Selected ScWs (column ``mjd_mid``).
    cut : astropy.table.Table, optional
        Removed ScWs (``report.removed_rows`` or :func:`cut_rows`).
    ax : matplotlib.axes.Axes, optional
        Draw there instead of on a new figure.
    path : str or Path, optional
        Save the figure as PNG.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    figure, axes = (ax.figure, [ax]) if ax is not None else _new_figure()
    ax = axes[0]
    months = _month_range(kept, cut)
    dates = _month_dates(months)
    n_kept = _per_month(kept, months)
    ax.bar(dates, n_kept, width=27, align="edge", color="tab:blue", label=f"kept ({len(kept)})")
    if cut is not None:
        ax.bar(
            dates,
            _per_month(cut, months),
            width=27,
            align="edge",
            bottom=n_kept,
            color="tab:gray",
            alpha=0.6,
            label=f"cut ({len(cut)})",
        )
        ax.legend(loc="upper right")
    ax.set_ylabel("ScWs per month")
    _date_axis(ax)
    if title:
        ax.set_title(title)
    return _finish(figure, path)


def plot_offaxis_vs_time(
    kept: Table,
    *,
    cut: Table | None = None,
    radius: float | None = None,
    ax=None,
    path: str | Path | None = None,
    title: str | None = None,
):
    """Off-axis angle of the target (from the pointing axis) against time.

    Parameters
    ----------
    kept : astropy.table.Table
        Selected ScWs (``mjd_mid``, ``offaxis_deg``).
    cut : astropy.table.Table, optional
        Removed ScWs, drawn in grey.
    radius : float, optional
        Selection radius, drawn as a line (``meta['query']['radius']`` if not given).
    ax, path, title
        As for :func:`plot_scws_per_month`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    figure, axes = (ax.figure, [ax]) if ax is not None else _new_figure()
    ax = axes[0]
    if cut is not None and len(cut):
        ax.plot(
            _mjd_to_plot_dates(cut["mjd_mid"]), cut["offaxis_deg"], ".", ms=2, color="tab:gray", alpha=0.5, label="cut"
        )
    ax.plot(_mjd_to_plot_dates(kept["mjd_mid"]), kept["offaxis_deg"], ".", ms=2, color="tab:blue", label="kept")
    radius = radius if radius is not None else kept.meta.get("query", {}).get("radius")
    if radius is not None:
        ax.axhline(radius, color="tab:red", lw=0.8, ls="--", label=f"radius {radius:g}°")
    ax.set_ylabel("off-axis angle (deg)")
    # Head room above the radius line for the legend, which would otherwise hide the outermost pointings.
    top = max(
        [float(radius) if radius is not None else 0.0]
        + [float(np.max(t["offaxis_deg"])) for t in (kept, cut) if t is not None and len(t)]
        + [1.0]
    )
    ax.set_ylim(0, 1.3 * top)
    ax.legend(loc="upper right", markerscale=4, ncols=3)
    _date_axis(ax)
    if title:
        ax.set_title(title)
    return _finish(figure, path)


def plot_exposure_per_month(
    kept: Table,
    *,
    good_time_column: str | None = None,
    ax=None,
    path: str | Path | None = None,
    title: str | None = None,
):
    """Good exposure per month (bars, ks) and cumulative exposure (line, Ms, right axis).

    Parameters
    ----------
    kept : astropy.table.Table
        Selected ScWs.
    good_time_column : str, optional
        Column of good time (s); ``good_time_s`` (set by :func:`apply_cuts`)
        if present, else ``good_isgri``.
    ax, path, title
        As for :func:`plot_scws_per_month`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    figure, axes = (ax.figure, [ax]) if ax is not None else _new_figure()
    ax = axes[0]
    column = good_time_column or _good_time_name(kept)
    months = _month_range(kept)
    dates = _month_dates(months)
    exposure = _per_month(kept, months, weights=column)
    ax.bar(dates, exposure / 1e3, width=27, align="edge", color="tab:green", label="per month")
    ax.set_ylabel("good exposure per month (ks)")
    twin = ax.twinx()
    if len(months):
        # Cumulative at the end of each month: a step after each bar.
        twin.step(
            np.append(dates, _month_dates(months[-1:] + 1)),
            np.append(0, np.cumsum(exposure)) / 1e6,
            where="pre",
            color="black",
            lw=1.2,
            label="cumulative",
        )
    twin.set_ylabel("cumulative (Ms)")
    twin.set_ylim(bottom=0)
    _date_axis(ax)
    if title:
        ax.set_title(title)
    return _finish(figure, path)


def plot_selection_summary(
    kept: Table,
    *,
    cut: Table | None = None,
    report: CutReport | None = None,
    radius: float | None = None,
    path: str | Path | None = None,
    title: str | None = None,
):
    """Three panels sharing the time axis: ScWs per month, off-axis angle, good exposure.

    Parameters
    ----------
    kept : astropy.table.Table
        Selected ScWs.
    cut : astropy.table.Table, optional
        Removed ScWs; ``report.removed_rows`` when a report is given.
    report : CutReport, optional
        Its counts go to the title.
    radius : float, optional
        Selection radius for the off-axis panel.
    path : str or Path, optional
        Save the figure as PNG.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    if cut is None and report is not None:
        cut = report.removed_rows
    figure, axes = _new_figure(nrows=3, height=9.0)
    plot_scws_per_month(kept, cut=cut, ax=axes[0])
    plot_offaxis_vs_time(kept, cut=cut, radius=radius, ax=axes[1])
    plot_exposure_per_month(kept, ax=axes[2])
    heading = title or "ScW selection"
    if report is not None:
        heading += (
            f": {report.final} of {report.initial} ScWs kept, {report.good_exposure_s / 1e6:.2f} Ms good exposure"
        )
    figure.suptitle(heading)
    return _finish(figure, path)


def write_products(table: Table, report: CutReport, output_dir: str | Path, *, figure=None) -> list:
    """Write a ScW selection's products and describe them.

    Writes ``scws.ecsv`` (:func:`write_scw_table`), ``scws_removed.ecsv`` (every ScW a cut removed, with
    the reason) and, with ``figure``, ``selection.png``.

    Parameters
    ----------
    table : astropy.table.Table
        The selected ScWs.
    report : CutReport
        The cuts' report.
    output_dir : path-like
        Where the files go.
    figure : matplotlib.figure.Figure, optional
        The selection's plot (:func:`plot_selection_summary`).

    Returns
    -------
    list of integral_workflows.products.Product
        The ScW table, the removed ScWs and the plot.
    """
    from .products import Product

    out = Path(output_dir)
    products = [Product(path=write_scw_table(table, out / "scws.ecsv", report=report), kind="scw_table")]
    removed = out / "scws_removed.ecsv"
    report.removed_table().write(removed, overwrite=True)
    products.append(Product(path=removed, kind="table"))
    if figure is not None:
        figure.savefig(out / "selection.png", dpi=110, bbox_inches="tight")
        products.append(Product(path=out / "selection.png", kind="plot"))
    return products
