"""The MMODA ``gw`` helper services over the simulated archive: ScW lists, time conversion, spacecraft.

Pure functions returning ``(http_status, json_body)``; :mod:`mmoda_local.app`
serves them under the real paths:

* ``gw/timesystem/api/v1.0/scwlist/<readiness>/<t1>/<t2>`` with the query
  arguments ``ra``, ``dec``, ``radius``, ``min_good_isgri``,
  ``return_columns``, ``return_index_version`` → :func:`scwlist`
* ``gw/timesystem/api/v1.0/converttime/<informat>/<value>/<outformat>`` → :func:`converttime`
* ``gw/scsystem/api/v1.0/sc/<time>/<ra>/<dec>`` → :func:`spacecraft`

The ScW-list semantics follow the real ``integral-timesystem`` service
(its Flask code): readiness ``cons``/``nrt``/``any``; ScWs with TSTART < t2
and TSTOP > t1; a cone (separation < radius) on the pointing axis when
``ra``, ``dec`` and ``radius`` are all given; ``min_good_isgri`` keeps
TELAPSE > value **and** IBISMODE == 41 (the real service does not look at
GOOD_ISGRI, so radiation-belt pointings stay in the list); without
``return_columns`` the answer is the sorted unique SWIDs, with it a dict
column → list, ``any`` concatenating the NRT then the CONS answers.
Arguments that are not numbers are ignored, as ``request.args.get(...,
type=float)`` does. Here the NRT and CONS indices hold the same ScWs,
versions ``000`` and ``001``. Times given as ISO/ISOT strings are UTC,
converted to IJD in TT (the real service's ``Time(t).mjd - 51544`` skips
the TT conversion, a 64–69 s difference).

The spacecraft service answers for times within the archive's
revolutions (39–2885) only. ``converttime`` to SCWID answers the pointing
covering the time, or 400 ("conversion impossible") in a slew or gap: the
simulated archive has no slew ScWs.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping

import numpy as np

from . import archive as _archive
from . import orbit as _orbit

log = logging.getLogger(__name__)

#: Columns the ScW-list service can return (``SW_VER``/``SW_TYPE`` are per readiness / constant).
SCWLIST_COLUMNS = ("SWID", "SW_TYPE", "SW_VER", "REVOL", "TSTART", "TSTOP", "TELAPSE", "RA_SCX", "DEC_SCX",
                   "RA_SCZ", "DEC_SCZ", "POSANGLE", "GOOD_ISGRI", "GOOD_JEMX1", "GOOD_JEMX2", "IBISMODE",
                   "OBS_ID", "FILLED")
_SW_VER = {"NRT": "000", "CONS": "001"}
#: Time formats of ``converttime``.
TIME_FORMATS = ("IJD", "UTC", "REVNUM", "SCWID", "MJD")


def _bad(message: str) -> tuple[int, dict]:
    return 400, {"bad request": message}


def _arg_float(args: Mapping, name: str):
    """``request.args.get(name, default=None, type=float)``: None when absent or not a number."""
    value = args.get(name) if args is not None else None
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _plain(values, name: str) -> list:
    """Column values as plain JSON-ready Python values (no NaN)."""
    arr = np.asarray(values)
    if arr.dtype.kind in "US":
        return [str(v) for v in arr.tolist()]
    if arr.dtype.kind == "b":
        return [bool(v) for v in arr.tolist()]
    if arr.dtype.kind in "iu":
        return [int(v) for v in arr.tolist()]
    out = [float(v) for v in arr.astype(float).tolist()]
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"non-finite value in column {name}")
    return out


def _scwlist_one(archive, source: str, t1: float, t2: float, ra, dec, radius, min_good_isgri,
                 return_columns: str | None) -> dict:
    """The answer of one index (NRT or CONS): column → list. Raises ValueError on an unknown column."""
    table = archive.table
    rows = archive.select(t1, t2, ra=ra, dec=dec, radius=radius)
    if min_good_isgri is not None:
        rows = rows[(np.asarray(table["TELAPSE"])[rows] > min_good_isgri)
                    & (np.asarray(table["IBISMODE"])[rows] == 41)]
    names = (return_columns or "SWID").split(",")
    out = {}
    for name in names:
        if name not in SCWLIST_COLUMNS:
            raise ValueError(f"undefined column name {name}, have: {', '.join(SCWLIST_COLUMNS)}")
        if name == "SW_VER":
            out[name] = [_SW_VER[source]] * len(rows)
        elif name == "SW_TYPE":
            out[name] = ["POINTING"] * len(rows)
        else:
            out[name] = _plain(np.asarray(table[name])[rows], name)
    return out


def scwlist(archive, readiness: str, t1: str, t2: str, args: Mapping | None = None) -> tuple[int, object]:
    """``GET gw/timesystem/api/v1.0/scwlist/<readiness>/<t1>/<t2>``.

    Parameters
    ----------
    archive : ScwArchive
    readiness : str
        ``cons``, ``nrt`` or ``any`` (case-insensitive).
    t1, t2 : str
        Times: IJD (< 10000), MJD, or ISO/ISOT UTC.
    args : Mapping, optional
        Query arguments: ``ra``, ``dec``, ``radius`` (deg), ``min_good_isgri``,
        ``return_columns`` (comma-separated), ``return_index_version``
        (``yes``), ``index_version`` (digits; only with ``cons``/``nrt``),
        ``debug``.

    Returns
    -------
    (int, object)
        HTTP status and JSON body: a sorted list of unique SWIDs; or a dict
        column → list with ``return_columns``; wrapped as ``{"scwlist": …,
        "index_version": …}`` with ``return_index_version=yes``. 400 bodies:
        ``{"bad request": …}`` or a list of problems.
    """
    args = args if args is not None else {}
    ra, dec, radius = _arg_float(args, "ra"), _arg_float(args, "dec"), _arg_float(args, "radius")
    min_good_isgri = _arg_float(args, "min_good_isgri")
    return_columns = args.get("return_columns")
    kind = str(readiness).lower()
    sources = {"any": ["NRT", "CONS"], "nrt": ["NRT"], "cons": ["CONS"]}.get(kind)
    if sources is None:
        return _bad("readiness undefined")

    index_version = args.get("index_version")
    if index_version is not None:
        if len(sources) > 1:
            return _bad('index version can only be set with "cons" or "nrt" source, not "any"')
        if not re.match(r"\d+", str(index_version)):
            return _bad("non-conforming index version")
        if str(index_version) != _archive.INDEX_VERSION and int(re.match(r"\d+", str(index_version)).group(0)) \
                > int(_archive.INDEX_VERSION):
            return 400, [{f"problem in {sources[0]}": f"no index with requested version: {index_version}; "
                                                      f"have: {_archive.INDEX_VERSION} - {_archive.INDEX_VERSION}"}]

    try:
        t1_ijd = _archive.parse_time_to_ijd(t1)
        t2_ijd = _archive.parse_time_to_ijd(t2)
    except ValueError as exc:
        return _bad("failed to interpret time: " + repr(exc))

    output: dict = {}
    problems = []
    for source in sources:
        try:
            for key, values in _scwlist_one(archive, source, t1_ijd, t2_ijd, ra, dec, radius, min_good_isgri,
                                            return_columns).items():
                output.setdefault(key, []).extend(values)
        except ValueError as exc:
            problems.append({f"problem in {source}": str(exc)})
    if problems:
        return 400, problems

    result = sorted(set(output["SWID"])) if return_columns is None else output
    if "debug" in args:
        last = str(archive.table["SWID"][-1]) if len(archive.table) else ""
        return 200, {"output": result, "t1_ijd": float(t1_ijd), "t2_ijd": float(t2_ijd),
                     "readiness": sources[-1], "lastscw": last, "index_version": _archive.INDEX_VERSION}
    if args.get("return_index_version", "no") == "yes":
        return 200, {"scwlist": result, "index_version": _archive.INDEX_VERSION}
    return 200, result


def spacecraft(archive, time_str: str, ra, dec) -> tuple[int, dict]:
    """``GET gw/scsystem/api/v1.0/sc/<time>/<ra>/<dec>``.

    Parameters
    ----------
    archive : ScwArchive
    time_str : str
        ISOT UTC or IJD (MJD accepted too).
    ra, dec : str or float
        Source direction for ``barytime`` (deg).

    Returns
    -------
    (int, dict)
        200 and :func:`mmoda_local.orbit.spacecraft_state`, or 400 and
        ``{"bad request": …}`` (bad time, bad coordinates, or a time outside
        the archive's revolutions 39–2885).
    """
    try:
        ijd = _archive.parse_time_to_ijd(time_str)
    except ValueError as exc:
        return _bad("failed to interpret time: " + repr(exc))
    try:
        ra_f, dec_f = float(ra), float(dec)
    except (TypeError, ValueError):
        return _bad(f"failed to interpret coordinates: ra={ra!r}, dec={dec!r}")
    if not (math.isfinite(ra_f) and math.isfinite(dec_f)) or not -90.0 <= dec_f <= 90.0:
        return _bad(f"coordinates out of range: ra={ra!r}, dec={dec!r}")
    lo, hi = archive.time_range
    if not lo <= ijd <= hi:
        return _bad(f"no spacecraft data at IJD {ijd:.6f}: the archive covers IJD {lo:.3f} to {hi:.3f} "
                    f"({_archive.ijd_to_utc_isot(lo)} to {_archive.ijd_to_utc_isot(hi)})")
    return 200, _orbit.spacecraft_state(archive, ijd, ra=ra_f, dec=dec_f)


def _detect_format(value: str) -> str:
    """Guess the format of a time (``ANY``): SCWID, IJD (< 20000), MJD, UTC."""
    text = str(value).strip()
    if re.fullmatch(r"\d{12}(\.\d{3})?", text):
        return "SCWID"
    try:
        return "MJD" if float(text) > 20000 else "IJD"
    except ValueError:
        pass
    _archive.parse_time_to_ijd(text)  # raises ValueError if not a date
    return "UTC"


def _to_ijd(archive, informat: str, value: str) -> float:
    text = str(value).strip()
    if informat == "IJD":
        return float(text)
    if informat == "MJD":
        return float(text) - _archive.IJD_MJD_OFFSET
    if informat == "UTC":
        try:
            float(text)
        except ValueError:
            return _archive.parse_time_to_ijd(text)
        raise ValueError(f"not a UTC date: {text!r}")
    if informat == "REVNUM":
        rev = int(text)
        if not _archive.FIRST_REV <= rev <= _archive.LAST_REV:
            raise ValueError(f"revolution {rev} outside the archive ({_archive.FIRST_REV}-{_archive.LAST_REV})")
        return float(archive.revolution_start(rev))
    if informat == "SCWID":
        try:
            row = archive.index_of([text])[0]
        except KeyError as exc:
            raise ValueError(str(exc.args[0])) from None
        return float(archive.table["TSTART"][row])
    raise ValueError(f"unknown input format {informat}")


def _from_ijd(archive, ijd: float, outformat: str):
    if outformat == "IJD":
        return float(ijd)
    if outformat == "MJD":
        return float(ijd + _archive.IJD_MJD_OFFSET)
    if outformat == "UTC":
        return _archive.ijd_to_utc_isot(ijd)
    lo, hi = archive.time_range
    if outformat == "REVNUM":
        if not lo <= ijd < hi:
            raise ValueError(f"conversion impossible: IJD {ijd} outside revolutions "
                             f"{_archive.FIRST_REV}-{_archive.LAST_REV}")
        return int(archive.revolution_of(ijd))
    if outformat == "SCWID":
        row = archive.pointing_at(ijd)
        if row < 0:
            raise ValueError(f"conversion impossible: no pointing ScW at IJD {ijd} (slew, gap or outside "
                             f"the archive)")
        return str(archive.table["SWID"][row])
    raise ValueError(f"unknown output format {outformat}")


def converttime(archive, informat: str, value: str, outformat: str) -> tuple[int, object]:
    """``GET gw/timesystem/api/v1.0/converttime/<informat>/<value>/<outformat>``.

    Parameters
    ----------
    archive : ScwArchive
    informat : str
        ``IJD``, ``UTC``, ``REVNUM`` (→ the revolution's start), ``SCWID``
        (→ the ScW's start), ``MJD`` or ``ANY`` (guessed: a 12-digit id is
        SCWID, a number < 20000 IJD, a larger one MJD, else UTC).
    value : str
    outformat : str
        ``IJD``, ``UTC``, ``REVNUM``, ``SCWID`` (the pointing covering the
        time), ``MJD``, or ``ANY`` (all of them, as a dict).

    Returns
    -------
    (int, object)
        200 and the converted value as a plain JSON body: a number for IJD,
        MJD and REVNUM, a string for UTC (``2005-06-22T23:58:55.816``) and
        SCWID (``032800550010``); with ``ANY``, a dict of the formats (SCWID
        ``None`` when no pointing covers the time). 400 and a list of
        problems (``[{"problem": …}]``) otherwise.
    """
    informat = str(informat).upper()
    outformat = str(outformat).upper()
    if informat not in TIME_FORMATS + ("ANY",):
        return 400, [{"problem": f"unknown input format {informat}; have: {', '.join(TIME_FORMATS)}, ANY"}]
    if outformat not in TIME_FORMATS + ("ANY",):
        return 400, [{"problem": f"unknown output format {outformat}; have: {', '.join(TIME_FORMATS)}, ANY"}]
    try:
        if informat == "ANY":
            informat = _detect_format(value)
        ijd = _to_ijd(archive, informat, value)
        if not math.isfinite(ijd):
            raise ValueError(f"time is not finite: {value!r}")
        if outformat != "ANY":
            return 200, _from_ijd(archive, ijd, outformat)
        out = {}
        for name in ("IJD", "UTC", "REVNUM", "SCWID"):
            try:
                out[name] = _from_ijd(archive, ijd, name)
            except ValueError:
                out[name] = None
        return 200, out
    except (ValueError, OverflowError) as exc:
        return 400, [{"problem": str(exc)}]
